"""Alembic environment. notify_pipeline.db.migrate.upgrade() passes in a connection that already
holds the migration lock; migrations run in that one transaction."""

from alembic import context

from notify_pipeline.db.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, target_metadata=metadata, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `notify-pipeline db upgrade`")
run_migrations_online()
