"""Queue database: schema, migrations, connections and the embedded PostgreSQL."""
