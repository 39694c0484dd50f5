"""What rendering a system prompt costs a turn, and what checking one costs a save.

Times, `--runs` times each after a warm-up, in this process (no database, no network):

  plain    — a prompt without `{`: returned as it is (every agent without templates);
  render   — a templated prompt with two includes, a loop and `now`, as a turn renders it
             (its sandbox compiled once per set of sources, then cached);
  cold     — the same with its compiled sandbox cache cleared first (a worker's first turn
             on a version);
  check    — what a save runs on it: the static checks, the include walk and a trial render.

Prints p50/p95 in microseconds.

    uv run python -m bench.prompt_render [--runs 2000]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime

from api.services.prompt_checks import check_prompt
from schemas import prompts

PROMPT = (
    "You are the concierge of {{ company }}. You speak with {{ user.name }} on {{ channel.type }}.\n"
    "It is {{ now.strftime('%A %H:%M') }} where we are.\n"
    '{% include "tone" %}\n'
    "{% for rule in rules.split(';') %}- {{ rule }}\n{% endfor %}"
    '{% include "signature" %}'
)
TEMPLATES = {
    "tone": "Be brief{% if conversation.metadata.plan == 'gold' %}, thank gold members{% endif %}.",
    "signature": "Sign as the {{ company }} team.",
}
VARIABLES = {"company": "ACME", "rules": "no refunds over 100;escalate complaints;never share phone numbers"}


def _time(runs: int, step: Callable[[], object]) -> list[float]:
    for _ in range(min(50, runs)):
        step()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        samples.append((time.perf_counter() - started) * 1e6)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000)
    args = parser.parse_args()
    values = prompts.context(
        user_name="Ana",
        conversation_id="c1",
        metadata={"plan": "gold"},
        channel_type="telegram",
        now=prompts.now_in("Europe/Berlin", datetime.now(UTC)),
        variables=VARIABLES,
    )

    def cold() -> object:
        prompts._cached.cache_clear()
        return prompts.render(prompts.SYSTEM_PROMPT, PROMPT, TEMPLATES, values)

    cases: dict[str, Callable[[], object]] = {
        "plain": lambda: prompts.render(prompts.SYSTEM_PROMPT, "You are the concierge.", {}, values),
        "render": lambda: prompts.render(prompts.SYSTEM_PROMPT, PROMPT, TEMPLATES, values),
        "cold": cold,
        "check": lambda: check_prompt(PROMPT, "Europe/Berlin", VARIABLES, TEMPLATES, None),
    }
    print(prompts.render(prompts.SYSTEM_PROMPT, PROMPT, TEMPLATES, values))
    print(f"{'case':<8} {'p50 µs':>10} {'p95 µs':>10}")
    for name, step in cases.items():
        samples = sorted(_time(args.runs if name != "cold" else max(1, args.runs // 10), step))
        p95 = samples[int(len(samples) * 0.95) - 1]
        print(f"{name:<8} {statistics.median(samples):>10.1f} {p95:>10.1f}")


if __name__ == "__main__":
    main()
