"""Worker-side Prometheus metrics, recorded by activities (never by workflow code)."""

from prometheus_client import Counter, Histogram

TURNS_STARTED = Counter("steward_turns_started_total", "Turns started")
TURNS_FINISHED = Counter("steward_turns_finished_total", "Turns finished, by outcome", ["status"])
TURN_DURATION = Histogram(
    "steward_turn_duration_seconds",
    "Turn duration from first persist to outcome",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
LLM_LATENCY = Histogram(
    "steward_llm_request_seconds",
    "LLM request latency, by model and outcome",
    ["model", "outcome"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
LLM_TOKENS = Counter("steward_llm_tokens_total", "LLM tokens used", ["model", "kind"])
TOOL_CALLS = Counter("steward_tool_calls_total", "Tool calls, by tool and outcome", ["tool", "outcome"])
APPROVAL_EVENTS = Counter(
    "steward_approval_events_total", "Approval events (requested, reminded, escalated, decisions)", ["event"]
)
NOTIFICATIONS = Counter("steward_notifications_total", "Notifications delivered, by event", ["event"])
CHANNEL_SENDS = Counter(
    "steward_channel_sends_total",
    "Channel message sends, by channel type and outcome",
    ["channel", "outcome"],
)
LLM_COST = Counter("steward_llm_cost_usd_total", "LLM cost in US dollars at the team's prices", ["model"])
BUDGET_REACHED = Counter(
    "steward_budget_reached_total",
    "Model calls held by a reached budget, by scope and action",
    ["scope", "action"],
)
GUARDRAIL_TRIPS = Counter(
    "steward_guardrail_trips_total",
    "Guardrail checks that tripped, by agent, rail, check and action",
    ["agent", "rail", "check", "action"],
)
