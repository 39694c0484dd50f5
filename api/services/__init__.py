"""The service layer: the domain operations that routers, web pages, channel hooks and the CLI share.

Each module holds one capability's operations (find, list, create, decide, send,
describe). A service takes a session, the Temporal client and settings as arguments,
talks to workflows only through `workflows.contract`, and raises `ApiError` with the
status and code a caller should see; routers only parse, authorise, call and shape.
Nothing here imports a router.

- `agents`: find an agent, create, update, delete, and the public view of one.
- `approvals`: find, list and describe inbox items; decide one (API, web, channels) or many.
- `keys`: teams and API keys (bootstrap key, dev key, `steward keys create`).
- `conversations`: find, open, list and read conversations; send a message; hand back.
- `recent_conversations`: a team's conversations with one agent, newest activity first, with their openings.
- `operators`: a person takes over, claims, releases a conversation, and speaks in it.
- `console`: the overview's figures and the conversations list (filters, transcript search, keyset pages).
- `conversation_view`: one conversation as its page shows it (transcript, approvals, timeline, channel user).
- `chat`: the conversation a chat completion continues (kept per `user`, seeded if new).
- `schedules`: find, create, list, describe, change, pause, unpause, trigger, backfill, delete schedules.
- `schedule_runs`: a schedule's runs as the API shows them, latest and a page at a time.
- `schedule_sync`: keeping Temporal Schedules in step with schedule rows (operations, reconcile).
- `reports`: inbox reports of scheduled runs: list, find, acknowledge.
- `channels`: find a channel, connect, list, change and disconnect them (credentials sealed), the public view.
- `dead_letters`: undelivered channel messages: list, retry, discard, and the dead-letter gauge.
"""
