"""Alembic environment: runs migrations on the URL the caller configured."""

from alembic import context
from sqlalchemy import Connection, create_engine

from payhub.kernel.schema import full_metadata

config = context.config
target_metadata = full_metadata()


def run() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            _migrate(connection)
    finally:
        engine.dispose()


def _migrate(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
