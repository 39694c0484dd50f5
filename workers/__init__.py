"""Process entry points: the `steward` CLI, the worker, the API server and the dev launcher."""
