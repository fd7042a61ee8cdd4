"""Resources, packages, and per package and per resource one row per UTC day.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "resources",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("namespace", sa.String(253), nullable=False),
        sa.Column("name", sa.String(253), nullable=False),
        sa.Column("owner", sa.String(39), nullable=False),
        sa.UniqueConstraint("namespace", "name", name="uq_resources_namespace_name"),
    )
    op.create_table(
        "packages",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("resource_id", sa.Integer, sa.ForeignKey("resources.id", ondelete="CASCADE"), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("name", sa.String(214), nullable=False),
        sa.Column("repository", sa.String(140)),
        sa.UniqueConstraint("resource_id", "type", "name", name="uq_packages_resource_type_name"),
    )
    # Composite keys and no rowid on SQLite: each row is stored once, in key order.
    op.create_table(
        "package_days",
        sa.Column("package_id", sa.Integer, sa.ForeignKey("packages.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("downloads", sa.BigInteger),
        sa.Column("total", sa.BigInteger),
        sa.Column("total_at", sa.DateTime(timezone=True)),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "resource_days",
        sa.Column("resource_id", sa.Integer, sa.ForeignKey("resources.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("total", sa.BigInteger, nullable=False),
        sa.Column("total_at", sa.DateTime(timezone=True), nullable=False),
        sqlite_with_rowid=False,
    )


def downgrade() -> None:
    op.drop_table("resource_days")
    op.drop_table("package_days")
    op.drop_table("packages")
    op.drop_table("resources")
