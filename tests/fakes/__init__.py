"""Local servers that speak third-party wire protocols, for tests."""
