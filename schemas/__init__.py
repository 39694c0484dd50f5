"""Models only: what crosses a boundary, and the vocabulary every layer shares. No I/O.

- `api`: HTTP bodies (`AgentCreate` / `AgentUpdate` / `AgentPublic` families, `ErrorBody`).
- `payloads`: workflow and activity inputs and results, updates and queries.
- `tables/`: SQLAlchemy tables, one module per capability; `migrations/`: their history.
- `settings`: the one `Settings` object, read from the environment.
- `enums`, `errors` (every `ApplicationError` type), `keys` (every dedupe key).
- `policy`, `conditions`, `tools`, `schedules`: validated configuration models
  (tool policies and their condition language, the demo tools' schemas, schedule specs).
"""
