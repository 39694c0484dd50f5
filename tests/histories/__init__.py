"""Recorded workflow histories, replayed by tests against the current workflow code."""
