"""Alembic environment. notify_pipeline.db.migrate.upgrade() passes in a connection that already
holds the migration lock; migrations run in that one transaction. Migrations are hand-written
SQL (no autogenerate), so there is no target metadata: the current schema, for reading, is the
generated db/schema.sql."""

from alembic import context


def run_migrations_online() -> None:
    connection = context.config.attributes["connection"]
    context.configure(connection=connection, transaction_per_migration=False)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `notify-pipeline db upgrade`")
run_migrations_online()
