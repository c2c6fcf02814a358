"""SQLModel tables: the org, identities, rituals, cycles, conversation state, outbox, journal, audit.

Timestamps are aware UTC datetimes (SQLModel stores them as UTC on both databases).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, Text, UniqueConstraint, false, text
from sqlmodel import Field, SQLModel

from storage.clock import utcnow


class Person(SQLModel, table=True):
    """One person in the org tree; never deleted, only deactivated."""

    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(max_length=320, unique=True, index=True)
    name: str = Field(max_length=200)
    manager_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    department: str = Field(default="", max_length=200, index=True)
    title: str = Field(default="", max_length=200)
    timezone: str = Field(default="UTC", max_length=64)
    country: str = Field(default="", max_length=8)
    locale: str = Field(default="en", max_length=8)
    # set by the person with `lang`; survives org re-imports, which only change `locale`
    preferred_locale: str | None = Field(default=None, max_length=8)
    roles: str = Field(default="employee", max_length=200)
    active: bool = Field(default=True, index=True)
    away_until: date | None = Field(default=None)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Identity(SQLModel, table=True):
    """A person's id on one platform or task source, per tenant."""

    __table_args__ = (
        UniqueConstraint("platform", "tenant", "external_id", name="uq_identity_external"),
        UniqueConstraint("person_id", "platform", "tenant", name="uq_identity_person_platform"),
        # the few people a platform refused to message: a status screen finds them without reading
        # every identity of a cycle's audience
        Index(
            "ix_identity_unreachable",
            "person_id",
            sqlite_where=text("unreachable_at IS NOT NULL"),
            postgresql_where=text("unreachable_at IS NOT NULL"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    platform: str = Field(max_length=32)
    tenant: str = Field(default="", max_length=128)
    external_id: str = Field(max_length=256)
    # False while unreachable_at is set (kept in step with it)
    reachable: bool = Field(default=True)
    # when the platform said this user cannot be messaged (not in the app's availability range,
    # stopped the bot, left the company), and its words; cleared by the next message that reaches them
    unreachable_at: datetime | None = None
    unreachable_reason: str | None = Field(default=None, max_length=200)
    created_at: datetime = Field(default_factory=utcnow)


class RitualDefinition(SQLModel, table=True):
    """The question set a cycle was started with, kept so old cycles stay readable."""

    __table_args__ = (UniqueConstraint("key", "digest", name="uq_ritual_key_digest"),)
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(max_length=64, index=True)
    digest: str = Field(max_length=64)
    body: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class Cycle(SQLModel, table=True):
    """One run of a ritual for one period (e.g. weekly_recap 2026-W48)."""

    __table_args__ = (UniqueConstraint("ritual_key", "period", name="uq_cycle_ritual_period"),)
    id: int | None = Field(default=None, primary_key=True)
    ritual_key: str = Field(max_length=64)
    ritual_id: int = Field(foreign_key="ritualdefinition.id")
    period: str = Field(max_length=32)
    status: str = Field(default="open", max_length=16, index=True)
    scope: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    due_at: datetime | None = None
    started_by_id: int | None = Field(default=None, foreign_key="person.id")
    created_at: datetime = Field(default_factory=utcnow)
    closed_at: datetime | None = None
    # when managers were told who had not answered by the deadline (once per cycle)
    digest_sent_at: datetime | None = None


class Assignment(SQLModel, table=True):
    """One person's run of one ritual part in a cycle: the conversation state row."""

    __table_args__ = (
        UniqueConstraint("cycle_id", "person_id", "subject_id", "part", name="uq_assignment"),
        # at most one active conversation per person, enforced by the database itself
        Index(
            "uq_assignment_one_active",
            "person_id",
            unique=True,
            sqlite_where=text("status = 'active'"),
            postgresql_where=text("status = 'active'"),
        ),
        Index("ix_assignment_person_status", "person_id", "status"),
        # the scheduler's two scans: pending work whose start time came, and reminders that are due
        Index("ix_assignment_status_starts", "status", "starts_at"),
        Index("ix_assignment_next_reminder", "next_reminder_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    cycle_id: int = Field(foreign_key="cycle.id", index=True)
    person_id: int = Field(foreign_key="person.id")
    subject_id: int = Field(foreign_key="person.id")
    part: str = Field(default="self", max_length=32)
    status: str = Field(default="pending", max_length=16)
    current_step: str | None = Field(default=None, max_length=64)
    # set while the person changes one answer from the summary, so they return to it afterwards
    return_to_summary: bool = Field(default=False)
    version: int = Field(default=0)
    snoozed_until: datetime | None = None
    # a pending assignment is not started before this moment (the person's local fire time, moved out
    # of quiet hours, non-workdays and leave); None means as soon as the person's slot is free
    starts_at: datetime | None = None
    reminders_sent: int = Field(default=0)
    next_reminder_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    submitted_at: datetime | None = None


class Answer(SQLModel, table=True):
    """One answer to one named step; re-answering a step replaces it."""

    __table_args__ = (UniqueConstraint("assignment_id", "step", name="uq_answer_step"),)
    id: int | None = Field(default=None, primary_key=True)
    assignment_id: int = Field(foreign_key="assignment.id", index=True)
    step: str = Field(max_length=64)
    value: Any = Field(sa_column=Column(JSON, nullable=True))
    skipped: bool = Field(default=False)
    answered_at: datetime = Field(default_factory=utcnow)


# an outbox row that failed and is waiting to be tried again, or was given up on
UNDELIVERED = "status = 'dead' OR (status = 'pending' AND attempts > 0)"


class Outbox(SQLModel, table=True):
    """A message to deliver; the idempotency key says what it is, so it is never queued twice."""

    __table_args__ = (
        Index("ix_outbox_due", "status", "due_at"),
        # the rows that failed and were not sent since (a small part of the outbox, so a small index),
        # by the conversation they belong to: a cycle's status screen counts them
        Index(
            "ix_outbox_undelivered",
            "assignment_id",
            sqlite_where=text(UNDELIVERED),
            postgresql_where=text(UNDELIVERED),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=200, unique=True)
    person_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    # the platform's own id for the recipient, when there is no person (e.g. an unknown user)
    recipient: str | None = Field(default=None, max_length=256)
    platform: str = Field(max_length=32)
    kind: str = Field(max_length=32)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    # a row tied to a conversation state is dropped if the state moved on before it was sent
    assignment_id: int | None = Field(default=None, foreign_key="assignment.id")
    assignment_version: int | None = None
    status: str = Field(default="pending", max_length=16)
    attempts: int = Field(default=0)
    # the platform may already have this message (a sender died mid-send, or its answer was lost):
    # ask the platform before sending it again
    in_doubt: bool = Field(default=False, sa_column_kwargs={"server_default": false()})
    due_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    # why the last attempt failed, as a short code ("quota", "rate_limit", "unreachable",
    # "no_identity", ...; see storage.outbox.REASONS) a status screen can put in words
    error_reason: str | None = Field(default=None, max_length=32)
    platform_message_id: str | None = Field(default=None, max_length=256)
    created_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None


class InboundEvent(SQLModel, table=True):
    """The journal: every inbound event, written before it is processed; re-deliveries hit the key."""

    __table_args__ = (
        UniqueConstraint("platform", "event_id", name="uq_inbound_platform_event"),
        Index("ix_inbound_unprocessed", "processed_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=32)
    event_id: str = Field(max_length=256)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    received_at: datetime = Field(default_factory=utcnow)
    processed_at: datetime | None = None
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class AuditLog(SQLModel, table=True):
    """Who did or read what: every HR action and every read of another person's record."""

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, index=True)
    actor_id: int | None = Field(default=None, foreign_key="person.id")
    action: str = Field(max_length=64, index=True)
    subject_id: int | None = Field(default=None, foreign_key="person.id")
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class TaskItem(SQLModel, table=True):
    """One item of a task source (Jira issue, Feishu task, DingTalk todo), as last read.

    Unique on (source, tenant, external_id). ``content_hash`` lets a re-read in the overlap window
    skip the write. A deleted item is kept with ``deleted_at`` and why (a tombstone).
    """

    __table_args__ = (
        UniqueConstraint("source", "tenant", "external_id", name="uq_task_item_external"),
        Index("ix_task_item_scope", "source", "tenant", "scope"),
    )
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    tenant: str = Field(default="", max_length=256)
    external_id: str = Field(max_length=128)
    scope: str = Field(max_length=200)
    external_key: str | None = Field(default=None, max_length=128)
    url: str | None = Field(default=None, max_length=1000)
    title: str = Field(max_length=1000)
    item_type: str = Field(default="task", max_length=64)
    status_raw: str | None = Field(default=None, max_length=128)
    status_category: str = Field(max_length=16)
    created_at: datetime | None = None
    updated_at: datetime
    due_at: datetime | None = None
    due_all_day: bool = Field(default=False)
    completed_at: datetime | None = None
    container: str | None = Field(default=None, max_length=256)
    estimate_points: float | None = None
    iteration: str | None = Field(default=None, max_length=256)
    labels: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    content_hash: str = Field(max_length=64)
    raw: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    first_seen_at: datetime = Field(default_factory=utcnow)
    last_seen_at: datetime = Field(default_factory=utcnow)
    deleted_at: datetime | None = None
    tombstone_reason: str | None = Field(default=None, max_length=32)


class TaskAssignee(SQLModel, table=True):
    """Who an item is assigned to: the source's user id, and the person it maps to once known."""

    __table_args__ = (
        Index("ix_task_assignee_source_user", "source", "tenant", "source_user_id"),
        Index("ix_task_assignee_person", "person_id", "task_item_id"),
    )
    task_item_id: int = Field(foreign_key="taskitem.id", primary_key=True)
    source_user_id: str = Field(max_length=256, primary_key=True)
    source: str = Field(max_length=32)
    tenant: str = Field(default="", max_length=256)
    display_name: str = Field(default="", max_length=200)
    email: str | None = Field(default=None, max_length=320)
    person_id: int | None = Field(default=None, foreign_key="person.id")


class SyncCursor(SQLModel, table=True):
    """Where one source's scope was read up to; advanced only after a run of it succeeds."""

    source: str = Field(max_length=32, primary_key=True)
    tenant: str = Field(default="", max_length=256, primary_key=True)
    scope: str = Field(max_length=200, primary_key=True)
    # the newest ``updated`` seen, capped at the run's start minus the source's consistency lag
    hwm: datetime | None = None
    # where a failed run stopped (the source's page token), to restart there
    resume: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    resume_since: datetime | None = None
    # when the read that stopped began: a resumed read can miss what changed since then ahead of its
    # page token, so the cursor may advance only to this (minus the lag)
    resume_started_at: datetime | None = None
    last_success_at: datetime | None = None
    last_reconcile_at: datetime | None = None
    consecutive_failures: int = Field(default=0)
    last_error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class SyncRun(SQLModel, table=True):
    """One run of one source: when, what it read and changed, and how it ended."""

    __table_args__ = (Index("ix_sync_run_source_started", "source", "started_at"),)
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=32)
    tenant: str = Field(default="", max_length=256)
    kind: str = Field(default="incremental", max_length=16)  # incremental | full | reconcile
    started_at: datetime = Field(default_factory=utcnow)
    finished_at: datetime | None = None
    status: str = Field(default="running", max_length=16)  # running | ok | failed | partial
    items_read: int = Field(default=0)
    items_changed: int = Field(default=0)
    items_deleted: int = Field(default=0)
    requests: int = Field(default=0)
    # the source's users on items that map to nobody in the org: [{id, name, email}], trimmed
    unknown_people: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))


class OAuthGrant(SQLModel, table=True):
    """A person's authorisation for Cadence to read a source as them (Feishu user tokens), refreshable."""

    __table_args__ = (UniqueConstraint("person_id", "source", "tenant", name="uq_oauth_grant_person_source"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    source: str = Field(max_length=32)
    tenant: str = Field(default="", max_length=256)
    subject: str = Field(default="", max_length=256)  # the source's id of the person (open_id)
    access_token: str = Field(sa_column=Column(Text, nullable=False))
    access_expires_at: datetime
    refresh_token: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    refresh_expires_at: datetime | None = None
    scope: str = Field(default="", max_length=1000)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    revoked_at: datetime | None = None


class OAuthState(SQLModel, table=True):
    """A pending authorisation link: the ``state`` sent out, whose it is, and until when it is good."""

    state: str = Field(max_length=64, primary_key=True)
    person_id: int = Field(foreign_key="person.id")
    source: str = Field(max_length=32)
    expires_at: datetime


class OneOnOnePair(SQLModel, table=True):
    """A manager and a report who meet 1:1 every ``every_days``, the agenda ``lead_hours`` before."""

    __table_args__ = (UniqueConstraint("manager_id", "report_id", name="uq_one_on_one_pair"),)
    id: int | None = Field(default=None, primary_key=True)
    manager_id: int = Field(foreign_key="person.id", index=True)
    report_id: int = Field(foreign_key="person.id", index=True)
    every_days: int = Field(default=14)
    lead_hours: float = Field(default=2.0)
    # the next meeting (UTC); the agenda goes out lead_hours before it, in the manager's day
    next_at: datetime | None = Field(default=None, index=True)
    active: bool = Field(default=True)
    created_at: datetime = Field(default_factory=utcnow)


class OneOnOne(SQLModel, table=True):
    """One 1:1 meeting of a pair: its agenda, and the manager's record of it afterwards."""

    __table_args__ = (UniqueConstraint("pair_id", "scheduled_at", name="uq_one_on_one_meeting"),)
    id: int | None = Field(default=None, primary_key=True)
    pair_id: int | None = Field(default=None, foreign_key="oneononepair.id", index=True)
    manager_id: int = Field(foreign_key="person.id", index=True)
    report_id: int = Field(foreign_key="person.id", index=True)
    scheduled_at: datetime
    agenda: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    agenda_sent_at: datetime | None = None
    recorded_at: datetime | None = Field(default=None, index=True)
    created_at: datetime = Field(default_factory=utcnow)


class FeedbackItem(SQLModel, table=True):
    """One statement of a 1:1 record: a strength, an improvement or a resource need; specific or not."""

    id: int | None = Field(default=None, primary_key=True)
    one_on_one_id: int = Field(foreign_key="oneonone.id", index=True)
    kind: str = Field(max_length=16)  # strength | improvement | resource
    text: str = Field(sa_column=Column(Text, nullable=False))
    specific: bool = Field(default=False)
    # the person was asked once for a concrete example; kept_as_is: they chose to keep the vague text
    nudged: bool = Field(default=False)
    kept_as_is: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


class ActionItem(SQLModel, table=True):
    """A 1:1 action item: who does what by when; open ones carry into the next agenda."""

    id: int | None = Field(default=None, primary_key=True)
    one_on_one_id: int = Field(foreign_key="oneonone.id", index=True)
    report_id: int = Field(foreign_key="person.id", index=True)
    owner_id: int = Field(foreign_key="person.id", index=True)
    text: str = Field(max_length=500)
    due_on: date | None = None
    done_at: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class KeyEvent(SQLModel, table=True):
    """Something worth remembering about a person (``note @alice …``), for agendas and assessments."""

    __table_args__ = (Index("ix_key_event_subject_at", "subject_id", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    subject_id: int = Field(foreign_key="person.id")
    author_id: int = Field(foreign_key="person.id")
    text: str = Field(max_length=1000)
    specific: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


class PeerFeedback(SQLModel, table=True):
    """360 micro-feedback from one colleague to another: up to 3 items of up to 280 characters."""

    __table_args__ = (Index("ix_peer_feedback_recipient_at", "recipient_id", "created_at"),)
    id: int | None = Field(default=None, primary_key=True)
    giver_id: int = Field(foreign_key="person.id", index=True)
    recipient_id: int = Field(foreign_key="person.id")
    items: list[dict[str, Any]] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    anonymous: bool = Field(default=False)
    request_id: int | None = Field(default=None, foreign_key="feedbackrequest.id")
    created_at: datetime = Field(default_factory=utcnow)


class FeedbackRequest(SQLModel, table=True):
    """Someone asked a colleague for feedback (at most 5 colleagues per ask)."""

    id: int | None = Field(default=None, primary_key=True)
    requester_id: int = Field(foreign_key="person.id", index=True)
    asked_id: int = Field(foreign_key="person.id", index=True)
    anonymous: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)
    answered_at: datetime | None = None


class QualityReview(SQLModel, table=True):
    """HR's 1–5 score of a sampled 1:1 record, with a comment; the sample is seeded, so reproducible."""

    __table_args__ = (UniqueConstraint("one_on_one_id", "month", name="uq_quality_review_record_month"),)
    id: int | None = Field(default=None, primary_key=True)
    one_on_one_id: int = Field(foreign_key="oneonone.id", index=True)
    month: str = Field(max_length=7)  # "2026-11"
    seed: int
    reviewer_id: int = Field(foreign_key="person.id", index=True)
    score: int | None = None
    comment: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    sent_at: datetime | None = None
    scored_at: datetime | None = None
