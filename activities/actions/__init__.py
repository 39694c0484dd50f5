"""Custom actions: a team's HTTP services described by OpenAPI, whose operations are tools.

`openapi.py` reads and validates a document and makes its offered operations' tools;
`outbound.py` holds every request to the address rules; `calls.py` builds a call, applies its
auth (OAuth2 tokens cached) and shapes the answer; `source.py` offers the tools to the
catalogue (`activities/catalogue.py`). The API's side is `api/services/actions.py`.
"""
