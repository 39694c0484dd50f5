"""Steward's tests: real Temporal, real PostgreSQL, fakes only beyond the network edge."""
