"""What a 1:1 agenda reads about one person: profile, recent check-ins and answers, task items, the
pair's open action items and past agendas, key events. Read-only; a handful of small queries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import (
    ActionItem,
    Answer,
    Assignment,
    Cycle,
    KeyEvent,
    OneOnOne,
    Person,
    TaskAssignee,
    TaskItem,
)
from storage.tasks import PERSON_TASK_COLUMNS, PersonTask

P: Table = Person.__table__  # type: ignore[attr-defined]
A: Table = Assignment.__table__  # type: ignore[attr-defined]
C: Table = Cycle.__table__  # type: ignore[attr-defined]
ANS: Table = Answer.__table__  # type: ignore[attr-defined]
T: Table = TaskItem.__table__  # type: ignore[attr-defined]
TA: Table = TaskAssignee.__table__  # type: ignore[attr-defined]
AI: Table = ActionItem.__table__  # type: ignore[attr-defined]
O: Table = OneOnOne.__table__  # type: ignore[attr-defined]  # noqa: E741
KE: Table = KeyEvent.__table__  # type: ignore[attr-defined]

_CLOSED = ("done", "cancelled")


@dataclass(frozen=True)
class Profile:
    """Who the agenda is about: their role as the org data says it."""

    id: int
    name: str
    title: str
    department: str
    created_at: datetime  # when they entered the org data (no start date is kept)
    direct_reports: int
    # when the org data itself began (its first person): someone added at the first import is not new
    org_started_at: datetime


async def profile(session: AsyncSession, *, person_id: int) -> Profile | None:
    """The person's name, title, department, how long they have been in the org data, their reports."""
    row = (
        await session.execute(
            select(P.c.id, P.c.name, P.c.title, P.c.department, P.c.created_at).where(P.c.id == person_id)
        )
    ).first()
    if row is None:
        return None
    reports = (
        await session.execute(
            select(func.count()).select_from(P).where(P.c.manager_id == person_id, P.c.active.is_(True))
        )
    ).scalar_one()
    started = (await session.execute(select(func.min(P.c.created_at)))).scalar_one()
    return Profile(row[0], row[1], row[2] or "", row[3] or "", row[4], int(reports), started or row[4])


@dataclass(frozen=True)
class RitualRun:
    """One of the person's own check-ins (their self part), answered or not."""

    assignment_id: int
    ritual_id: int
    ritual_key: str
    period: str
    status: str
    due_at: datetime | None
    submitted_at: datetime | None


async def ritual_runs(
    session: AsyncSession, *, person_id: int, since: datetime, limit: int = 12
) -> list[RitualRun]:
    """The person's own check-ins of cycles opened since ``since``, newest first."""
    stmt = (
        select(A.c.id, C.c.ritual_id, C.c.ritual_key, C.c.period, A.c.status, C.c.due_at, A.c.submitted_at)
        .join(C, C.c.id == A.c.cycle_id)
        .where(
            A.c.person_id == person_id,
            A.c.subject_id == person_id,
            A.c.part == "self",
            C.c.created_at >= since,
        )
        .order_by(C.c.created_at.desc(), A.c.id.desc())
        .limit(limit)
    )
    return [RitualRun(*row) for row in (await session.execute(stmt)).all()]


async def answers_of(session: AsyncSession, *, assignment_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """``{assignment id: {step: value}}`` of the answers given (skipped ones and records left out)."""
    if not assignment_ids:
        return {}
    stmt = select(ANS.c.assignment_id, ANS.c.step, ANS.c.value).where(
        ANS.c.assignment_id.in_(list(assignment_ids)), ANS.c.skipped.is_(False)
    )
    found: dict[int, dict[str, Any]] = {}
    for assignment_id, step, value in (await session.execute(stmt)).all():
        if not step.startswith("__") and value not in (None, "", []):
            found.setdefault(assignment_id, {})[step] = value
    return found


async def task_items(
    session: AsyncSession,
    *,
    person_id: int,
    sources: Sequence[str],
    done_since: datetime,
    open_due_before: datetime,
    limit: int = 300,
) -> list[PersonTask]:
    """The person's live items an agenda looks at: in progress (however old: a stuck one is old), open
    ones due before ``open_due_before`` (overdue), done since ``done_since``; newest first."""
    if not sources:
        return []
    is_open = T.c.status_category.notin_(_CLOSED)
    wanted = or_(
        T.c.status_category == "in_progress",
        and_(is_open, T.c.due_at < open_due_before),
        and_(T.c.status_category == "done", func.coalesce(T.c.completed_at, T.c.updated_at) >= done_since),
    )
    stmt = (
        select(*PERSON_TASK_COLUMNS)
        .distinct()
        .join(TA, TA.c.task_item_id == T.c.id)
        .where(TA.c.person_id == person_id, T.c.source.in_(list(sources)), T.c.deleted_at.is_(None), wanted)
        .order_by(T.c.updated_at.desc(), T.c.external_key)
        .limit(limit)
    )
    return [PersonTask(*row) for row in (await session.execute(stmt)).all()]


@dataclass(frozen=True)
class ActionRow:
    """An open action item of the pair: what, whose, due when."""

    id: int
    text: str
    owner_id: int
    owner_name: str
    due_on: date | None
    created_at: datetime


async def open_actions(
    session: AsyncSession, *, manager_id: int, report_id: int, limit: int = 20
) -> list[ActionRow]:
    """Action items from the pair's 1:1s not done yet, the ones due first first (undated last)."""
    stmt = (
        select(AI.c.id, AI.c.text, AI.c.owner_id, P.c.name, AI.c.due_on, AI.c.created_at)
        .join(O, O.c.id == AI.c.one_on_one_id)
        .join(P, P.c.id == AI.c.owner_id)
        .where(O.c.manager_id == manager_id, AI.c.report_id == report_id, AI.c.done_at.is_(None))
        .order_by(AI.c.due_on.is_(None), AI.c.due_on, AI.c.id)
        .limit(limit)
    )
    return [ActionRow(*row) for row in (await session.execute(stmt)).all()]


@dataclass(frozen=True)
class EventRow:
    """A key event noted about the person."""

    text: str
    created_at: datetime
    author_name: str


async def key_events(
    session: AsyncSession, *, subject_id: int, since: datetime, limit: int = 10
) -> list[EventRow]:
    """Key events about the person noted since ``since``, newest first."""
    stmt = (
        select(KE.c.text, KE.c.created_at, P.c.name)
        .join(P, P.c.id == KE.c.author_id)
        .where(KE.c.subject_id == subject_id, KE.c.created_at >= since)
        .order_by(KE.c.created_at.desc(), KE.c.id.desc())
        .limit(limit)
    )
    return [EventRow(*row) for row in (await session.execute(stmt)).all()]


@dataclass(frozen=True)
class PastMeeting:
    """A 1:1 of the pair before now: when, whether it was recorded, the agenda it had."""

    scheduled_at: datetime
    recorded_at: datetime | None
    agenda: dict[str, Any]


async def past_meetings(
    session: AsyncSession, *, manager_id: int, report_id: int, before: datetime, limit: int
) -> list[PastMeeting]:
    """The pair's last ``limit`` 1:1s (scheduled or recorded) before ``before``, newest first."""
    stmt = (
        select(O.c.scheduled_at, O.c.recorded_at, O.c.agenda)
        .where(O.c.manager_id == manager_id, O.c.report_id == report_id, O.c.scheduled_at < before)
        .order_by(O.c.scheduled_at.desc(), O.c.id.desc())
        .limit(limit)
    )
    return [
        PastMeeting(at, recorded, agenda if isinstance(agenda, dict) else {})
        for at, recorded, agenda in (await session.execute(stmt)).all()
    ]
