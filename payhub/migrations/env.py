"""Alembic environment: runs migrations on the URL the caller configured."""

from alembic import context
from sqlalchemy import create_engine

from payhub.kernel.schema import full_metadata

config = context.config
target_metadata = full_metadata()


def run() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url
    connectable = config.attributes.get("connection") or create_engine(url)
    if hasattr(connectable, "connect"):
        with connectable.connect() as connection:
            _migrate(connection)
    else:
        _migrate(connectable)


def _migrate(connection: object) -> None:
    context.configure(connection=connection, target_metadata=target_metadata,
                      render_as_batch=True, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


run()
