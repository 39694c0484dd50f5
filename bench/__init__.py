"""Benchmarks that print figures. They are measurements, never tests."""
