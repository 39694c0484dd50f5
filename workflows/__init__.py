"""Workflow classes: deterministic, no I/O, no settings; every side effect is an activity."""
