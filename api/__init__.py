"""The HTTP front end: starts, signals, updates and queries workflows; reads projections.

- `app`: the application factory; `deps`: session, Temporal client, caller and roles.
- `routers/`: thin routers, one per resource; `services/`: the domain operations they,
  the pages, the channel inbound path and the CLI share.
- `web/`: server-rendered pages (playground, inbox, schedules, dead letters).
- `inbound/`: channel updates from webhook to turn (acknowledge fast, lose nothing).
- `streams`: the event hub that live streams (SSE, WebSocket) follow.
"""
