"""Alembic migrations for the app database (SQLite and PostgreSQL)."""
