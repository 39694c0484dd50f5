"""Every side effect Steward has: the store, the LLM, tools and (later) channels."""
