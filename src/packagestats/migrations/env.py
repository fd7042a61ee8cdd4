"""Alembic's environment for the history database: always online, on the connection the operator or
`packagestats history` hands over in `config.attributes["connection"]` (see history_db.migrate)."""

from alembic import context
from sqlalchemy import text

from packagestats.history_db import MIGRATION_LOCK, VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=metadata, version_table=VERSION_TABLE,
                  render_as_batch=True)  # SQLite alters tables by copying them
with context.begin_transaction():
    if connection.dialect.name == "postgresql":
        # Replicas starting together migrate one after the other; the lock ends with the transaction.
        connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
    context.run_migrations()
