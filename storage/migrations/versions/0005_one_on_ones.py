"""the 1:1 assistant: pairs and meetings, feedback items, action items, key events, peer feedback, HR reviews

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feedbackrequest",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("asked_id", sa.Integer(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("answered_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["asked_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["requester_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_feedbackrequest_asked_id"), "feedbackrequest", ["asked_id"], unique=False)
    op.create_index(
        op.f("ix_feedbackrequest_requester_id"), "feedbackrequest", ["requester_id"], unique=False
    )
    op.create_table(
        "keyevent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subject_id", sa.Integer(), nullable=False),
        sa.Column("author_id", sa.Integer(), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=False),
        sa.Column("specific", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["subject_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_key_event_subject_at", "keyevent", ["subject_id", "created_at"], unique=False)
    op.create_table(
        "oneononepair",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("every_days", sa.Integer(), nullable=False),
        sa.Column("lead_hours", sa.Float(), nullable=False),
        sa.Column("next_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("manager_id", "report_id", name="uq_one_on_one_pair"),
    )
    op.create_index(op.f("ix_oneononepair_manager_id"), "oneononepair", ["manager_id"], unique=False)
    op.create_index(op.f("ix_oneononepair_next_at"), "oneononepair", ["next_at"], unique=False)
    op.create_index(op.f("ix_oneononepair_report_id"), "oneononepair", ["report_id"], unique=False)
    op.create_table(
        "oneonone",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("pair_id", sa.Integer(), nullable=True),
        sa.Column("manager_id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("scheduled_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("agenda", sa.JSON(), nullable=False),
        sa.Column("agenda_sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("recorded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["manager_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["pair_id"],
            ["oneononepair.id"],
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pair_id", "scheduled_at", name="uq_one_on_one_meeting"),
    )
    op.create_index(op.f("ix_oneonone_manager_id"), "oneonone", ["manager_id"], unique=False)
    op.create_index(op.f("ix_oneonone_pair_id"), "oneonone", ["pair_id"], unique=False)
    op.create_index(op.f("ix_oneonone_recorded_at"), "oneonone", ["recorded_at"], unique=False)
    op.create_index(op.f("ix_oneonone_report_id"), "oneonone", ["report_id"], unique=False)
    op.create_table(
        "peerfeedback",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("giver_id", sa.Integer(), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("anonymous", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["giver_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["recipient_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["feedbackrequest.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(
        "ix_peer_feedback_recipient_at", "peerfeedback", ["recipient_id", "created_at"], unique=False
    )
    op.create_index(op.f("ix_peerfeedback_giver_id"), "peerfeedback", ["giver_id"], unique=False)
    op.create_table(
        "actionitem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("one_on_one_id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.Column("due_on", sa.Date(), nullable=True),
        sa.Column("done_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["one_on_one_id"],
            ["oneonone.id"],
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["person.id"],
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_actionitem_one_on_one_id"), "actionitem", ["one_on_one_id"], unique=False)
    op.create_index(op.f("ix_actionitem_owner_id"), "actionitem", ["owner_id"], unique=False)
    op.create_index(op.f("ix_actionitem_report_id"), "actionitem", ["report_id"], unique=False)
    op.create_table(
        "feedbackitem",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("one_on_one_id", sa.Integer(), nullable=False),
        sa.Column("kind", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("specific", sa.Boolean(), nullable=False),
        sa.Column("nudged", sa.Boolean(), nullable=False),
        sa.Column("kept_as_is", sa.Boolean(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["one_on_one_id"],
            ["oneonone.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_feedbackitem_one_on_one_id"), "feedbackitem", ["one_on_one_id"], unique=False)
    op.create_table(
        "qualityreview",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("one_on_one_id", sa.Integer(), nullable=False),
        sa.Column("month", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("reviewer_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("sent_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("scored_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["one_on_one_id"],
            ["oneonone.id"],
        ),
        sa.ForeignKeyConstraint(
            ["reviewer_id"],
            ["person.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("one_on_one_id", "month", name="uq_quality_review_record_month"),
    )
    op.create_index(op.f("ix_qualityreview_one_on_one_id"), "qualityreview", ["one_on_one_id"], unique=False)
    op.create_index(op.f("ix_qualityreview_reviewer_id"), "qualityreview", ["reviewer_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_qualityreview_reviewer_id"), table_name="qualityreview")
    op.drop_index(op.f("ix_qualityreview_one_on_one_id"), table_name="qualityreview")
    op.drop_table("qualityreview")
    op.drop_index(op.f("ix_feedbackitem_one_on_one_id"), table_name="feedbackitem")
    op.drop_table("feedbackitem")
    op.drop_index(op.f("ix_actionitem_report_id"), table_name="actionitem")
    op.drop_index(op.f("ix_actionitem_owner_id"), table_name="actionitem")
    op.drop_index(op.f("ix_actionitem_one_on_one_id"), table_name="actionitem")
    op.drop_table("actionitem")
    op.drop_index(op.f("ix_peerfeedback_giver_id"), table_name="peerfeedback")
    op.drop_index("ix_peer_feedback_recipient_at", table_name="peerfeedback")
    op.drop_table("peerfeedback")
    op.drop_index(op.f("ix_oneonone_report_id"), table_name="oneonone")
    op.drop_index(op.f("ix_oneonone_recorded_at"), table_name="oneonone")
    op.drop_index(op.f("ix_oneonone_pair_id"), table_name="oneonone")
    op.drop_index(op.f("ix_oneonone_manager_id"), table_name="oneonone")
    op.drop_table("oneonone")
    op.drop_index(op.f("ix_oneononepair_report_id"), table_name="oneononepair")
    op.drop_index(op.f("ix_oneononepair_next_at"), table_name="oneononepair")
    op.drop_index(op.f("ix_oneononepair_manager_id"), table_name="oneononepair")
    op.drop_table("oneononepair")
    op.drop_index("ix_key_event_subject_at", table_name="keyevent")
    op.drop_table("keyevent")
    op.drop_index(op.f("ix_feedbackrequest_requester_id"), table_name="feedbackrequest")
    op.drop_index(op.f("ix_feedbackrequest_asked_id"), table_name="feedbackrequest")
    op.drop_table("feedbackrequest")
