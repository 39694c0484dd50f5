"""Alembic environment: the URL comes from the Config, set by `steward migrate`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from schemas.tables import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
assert url, "steward migrate sets sqlalchemy.url"

engine = create_engine(url, poolclass=pool.NullPool)
with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()
engine.dispose()
