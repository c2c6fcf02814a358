"""What an employee record reads: the manager chain, submitted rituals, key events, 1:1 action items."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Table, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from storage.models import ActionItem, Answer, Assignment, Cycle, KeyEvent, OneOnOne, Person

P: Table = Person.__table__  # type: ignore[attr-defined]
A: Table = Assignment.__table__  # type: ignore[attr-defined]
ANS: Table = Answer.__table__  # type: ignore[attr-defined]
C: Table = Cycle.__table__  # type: ignore[attr-defined]
K: Table = KeyEvent.__table__  # type: ignore[attr-defined]
AI: Table = ActionItem.__table__  # type: ignore[attr-defined]
O: Table = OneOnOne.__table__  # type: ignore[attr-defined]  # noqa: E741

# an org tree deeper than this is broken data (a loop the import missed), not a real hierarchy
_MAX_DEPTH = 64


async def manager_chain(session: AsyncSession, *, person_id: int) -> set[int]:
    """Everyone above a person: their manager, that manager's manager, … up to the top (one query a level).

    The inverse of ``people.reports_of``: ``m in manager_chain(p)`` exactly when ``p in reports_of(m)``.
    A loop in the org data ends the walk instead of running forever.
    """
    found: set[int] = set()
    current: int | None = person_id
    for _ in range(_MAX_DEPTH):
        current = (
            await session.execute(select(P.c.manager_id).where(P.c.id == current))
        ).scalar_one_or_none()
        if current is None or current in found or current == person_id:
            break
        found.add(current)
    return found


async def has_reports(session: AsyncSession, *, manager_id: int) -> bool:
    """Whether anyone reports to this person directly (so they may read someone's record)."""
    stmt = select(P.c.id).where(P.c.manager_id == manager_id).limit(1)
    return (await session.execute(stmt)).first() is not None


@dataclass(frozen=True)
class Submitted:
    """A submitted ritual part about a person: whose answers, in which cycle and period."""

    id: int
    cycle_id: int
    ritual_id: int
    ritual_key: str
    period: str
    part: str
    author_id: int
    submitted_at: datetime | None


_SUBMITTED = (A.c.id, A.c.cycle_id, C.c.ritual_id, C.c.ritual_key, C.c.period, A.c.part, A.c.person_id)


async def latest_own(session: AsyncSession, *, subject_id: int, limit: int) -> list[Submitted]:
    """The person's latest submitted part about themself in each ritual (the latest weekly recap, the
    latest monthly review, …), newest first, at most ``limit``."""
    rank = (
        func.row_number()
        .over(partition_by=C.c.ritual_key, order_by=(A.c.cycle_id.desc(), A.c.id.desc()))
        .label("rank")
    )
    inner = (
        select(*_SUBMITTED, A.c.submitted_at, rank)
        .join(C, C.c.id == A.c.cycle_id)
        .where(A.c.person_id == subject_id, A.c.subject_id == subject_id, A.c.status == "submitted")
        .subquery()
    )
    stmt = (
        select(*[c for c in inner.c if c.name != "rank"])
        .where(inner.c.rank == 1)
        .order_by(inner.c.cycle_id.desc(), inner.c.id.desc())
        .limit(limit)
    )
    return [Submitted(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def submitted_about(
    session: AsyncSession, *, subject_id: int, ritual_keys: list[str], limit: int
) -> list[Submitted]:
    """Submitted parts of ``ritual_keys`` about ``subject_id``, whoever answered them (their own, and
    their manager's part about them), newest cycle first, at most ``limit``."""
    if not ritual_keys:
        return []
    stmt = (
        select(*_SUBMITTED, A.c.submitted_at)
        .join(C, C.c.id == A.c.cycle_id)
        .where(A.c.subject_id == subject_id, A.c.status == "submitted", C.c.ritual_key.in_(ritual_keys))
        .order_by(A.c.cycle_id.desc(), A.c.id)
        .limit(limit)
    )
    return [Submitted(*tuple(r)) for r in (await session.execute(stmt)).all()]


async def answers_of(
    session: AsyncSession, *, assignment_ids: list[int]
) -> dict[int, dict[str, tuple[Any, bool]]]:
    """``{assignment id: {step: (value, skipped)}}`` for several assignments, in one query."""
    if not assignment_ids:
        return {}
    stmt = select(ANS.c.assignment_id, ANS.c.step, ANS.c.value, ANS.c.skipped).where(
        ANS.c.assignment_id.in_(sorted(set(assignment_ids)))
    )
    found: dict[int, dict[str, tuple[Any, bool]]] = {}
    for assignment_id, step, value, skipped in (await session.execute(stmt)).all():
        found.setdefault(assignment_id, {})[step] = (value, bool(skipped))
    return found


@dataclass(frozen=True)
class KeyEventRow:
    """A key event noted about a person, and who noted it."""

    id: int
    text: str
    specific: bool
    author_name: str
    created_at: datetime


async def key_events(
    session: AsyncSession, *, subject_id: int, since: datetime, limit: int
) -> tuple[list[KeyEventRow], int]:
    """The key events noted about ``subject_id`` since ``since``, newest first (at most ``limit``),
    and how many there are in all."""
    recent = (K.c.subject_id == subject_id, K.c.created_at >= since)
    stmt = (
        select(K.c.id, K.c.text, K.c.specific, P.c.name, K.c.created_at)
        .join(P, P.c.id == K.c.author_id)
        .where(*recent)
        .order_by(K.c.created_at.desc(), K.c.id.desc())
        .limit(limit)
    )
    rows = [KeyEventRow(*tuple(r)) for r in (await session.execute(stmt)).all()]
    total = (await session.execute(select(func.count()).select_from(K).where(*recent))).scalar_one()
    return rows, int(total)


@dataclass(frozen=True)
class ActionItemRow:
    """A 1:1 action item: what, whose, by when, and when it was done (None: still open)."""

    id: int
    text: str
    owner_id: int
    owner_name: str
    due_on: date | None
    done_at: datetime | None
    meeting_at: datetime


@dataclass(frozen=True)
class ActionItems:
    """A person's 1:1 action items: the open ones and those done lately, each with its full count."""

    open: list[ActionItemRow]
    open_total: int
    done: list[ActionItemRow]
    done_total: int


async def action_items(
    session: AsyncSession, *, report_id: int, done_since: datetime, limit_open: int, limit_done: int
) -> ActionItems:
    """The action items of ``report_id``'s 1:1s (whoever owns them): open ones, earliest due first,
    and those done since ``done_since``, latest first."""
    owner = aliased(P)
    base = (
        select(AI.c.id, AI.c.text, AI.c.owner_id, owner.c.name, AI.c.due_on, AI.c.done_at, O.c.scheduled_at)
        .join(owner, owner.c.id == AI.c.owner_id)
        .join(O, O.c.id == AI.c.one_on_one_id)
    )
    is_open = (AI.c.report_id == report_id, AI.c.done_at.is_(None))
    is_done = (AI.c.report_id == report_id, AI.c.done_at >= done_since)
    # an item without a due date comes after the dated ones (NULLs sort differently on the two databases)
    undated = AI.c.due_on.is_(None)
    open_rows = await session.execute(
        base.where(*is_open).order_by(undated, AI.c.due_on, AI.c.id).limit(limit_open)
    )
    done_rows = await session.execute(
        base.where(*is_done).order_by(AI.c.done_at.desc(), AI.c.id.desc()).limit(limit_done)
    )

    async def count(*where: Any) -> int:
        return int((await session.execute(select(func.count()).select_from(AI).where(*where))).scalar_one())

    return ActionItems(
        open=[ActionItemRow(*tuple(r)) for r in open_rows.all()],
        open_total=await count(*is_open),
        done=[ActionItemRow(*tuple(r)) for r in done_rows.all()],
        done_total=await count(*is_done),
    )
