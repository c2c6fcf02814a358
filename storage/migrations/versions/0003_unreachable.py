"""unreachable identities and why a message was not delivered

Identity: when a platform said its user cannot be messaged (``unreachable_at``, UTC) and its words
(``unreachable_reason``). Outbox: a short code for why the last attempt failed (``error_reason``),
and a partial index of the rows that failed and were not sent since, by assignment, for a cycle's
status screen.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# the same predicates as storage.models (a migration does not import the models: they move on)
UNREACHABLE = "unreachable_at IS NOT NULL"
UNDELIVERED = "status = 'dead' OR (status = 'pending' AND attempts > 0)"


def upgrade() -> None:
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.add_column(sa.Column("unreachable_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(
            sa.Column("unreachable_reason", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.create_index(
            "ix_identity_unreachable",
            ["person_id"],
            unique=False,
            sqlite_where=sa.text(UNREACHABLE),
            postgresql_where=sa.text(UNREACHABLE),
        )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("error_reason", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
        batch_op.create_index(
            "ix_outbox_undelivered",
            ["assignment_id"],
            unique=False,
            sqlite_where=sa.text(UNDELIVERED),
            postgresql_where=sa.text(UNDELIVERED),
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_undelivered")
        batch_op.drop_column("error_reason")
    with op.batch_alter_table("identity", schema=None) as batch_op:
        batch_op.drop_index("ix_identity_unreachable")
        batch_op.drop_column("unreachable_reason")
        batch_op.drop_column("unreachable_at")
