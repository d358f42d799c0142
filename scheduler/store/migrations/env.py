"""Alembic environment: run with the connection ``db.migrate`` hands over.

Configured in code (no alembic.ini): ``config.attributes["connection"]``
carries an open connection inside a transaction, so the advisory lock
taken by ``migrate`` covers the whole upgrade.
"""

from alembic import context
from sqlalchemy import create_engine

from scheduler.store.tables import Base, include_name

target_metadata = Base.metadata


def _configure(**kwargs) -> None:
    context.configure(
        target_metadata=target_metadata,
        include_name=include_name,
        compare_type=True,
        render_as_batch=True,  # SQLite needs table rebuilds for most ALTERs
        **kwargs,
    )


def run_offline() -> None:
    _configure(url=context.config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        url = context.config.get_main_option("sqlalchemy.url")
        with create_engine(url).begin() as connection:
            _configure(connection=connection)
            context.run_migrations()
        return
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
else:
    run_online()
