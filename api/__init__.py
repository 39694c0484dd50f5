"""The HTTP front end: starts, signals, updates and queries workflows; reads projections."""
