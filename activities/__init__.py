"""Every side effect Steward has, as Temporal activities with stable names (`llm.complete`, `tools.run`).

- conversations: `llm` (the model; `demo_model` offline), `tools`, `store` and `transcript`
  (turns and messages), `events` (the event log streams are tailed from).
- approvals: `approvals` (record, notify), `webhooks` (signed POSTs).
- channels: `channels/` (Telegram and Slack clients, delivery, ops chats).
- schedules: `ambient` (a run's bookkeeping, prompt, delivery, schedule).
- shared: `heartbeat`, `metrics`, and `infra/`, the machinery every layer uses.
"""
