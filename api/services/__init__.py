"""The service layer: the domain operations that routers, web pages, channel hooks and the CLI share.

Each module holds one capability's operations (find, list, create, decide, send,
describe). A service takes a session, the Temporal client and settings as arguments,
talks to workflows only through `workflows.contract`, and raises `ApiError` with the
status and code a caller should see; routers only parse, authorise, call and shape.
Nothing here imports a router.

- `agents`: find an agent, create, update, delete, and the public view of one.
- `keys`: teams and API keys (bootstrap key, dev key, `steward keys create`).
- `channels`: find a channel, connect, list, change and disconnect them (credentials sealed), the public view.
- `dead_letters`: undelivered channel messages: list, retry, discard, and the dead-letter gauge.
"""
