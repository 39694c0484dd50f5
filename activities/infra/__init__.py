"""The machinery side effects run on, shared by activities, the API and the workers.

- `database`: engines, sessions and SQLite's in-process write lock.
- `temporal`: `StewardPlugin` (data converter, sandbox pass-throughs, failure types) and `connect`.
- `secrets`: channel credentials encrypted at rest (Fernet, rotating keys).
- `hashing`: API keys and webhook secrets, generated and stored as lookup hashes.

It imports nothing of ours but `schemas`, so any layer may use it.
"""
