"""The LangGraph graphs `bench/peers.py` serves with `langgraph dev` (needs the `bench` extra)."""
