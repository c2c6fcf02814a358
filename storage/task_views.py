"""What the conversations show of task items: many people's recent items in one query, and the
record of what a ritual showed (kept with the assignment's answers)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Answer, TaskAssignee, TaskItem
from storage.tasks import PERSON_TASK_COLUMNS, PersonTask
from storage.upsert import insert_for

T: Table = TaskItem.__table__  # type: ignore[attr-defined]
A: Table = TaskAssignee.__table__  # type: ignore[attr-defined]
ANS: Table = Answer.__table__  # type: ignore[attr-defined]

# people per query: well under both databases' bound-parameter limits
_CHUNK = 500
_CLOSED = ("done", "cancelled")


async def tasks_of_people(
    session: AsyncSession,
    *,
    person_ids: Sequence[int],
    sources: Sequence[str],
    active_since: datetime,
    open_due_before: datetime,
    per_person: int = 200,
) -> dict[int, list[PersonTask]]:
    """Each person's live items of ``sources`` touched or completed since ``active_since``, plus open ones
    due before ``open_due_before``; newest first, at most ``per_person`` each (people without any are
    left out). One query per 500 people, for a ritual's fan-out."""
    found: dict[int, list[PersonTask]] = {}
    ids = sorted(set(person_ids))
    if not ids or not sources:
        return found
    wanted = or_(
        T.c.updated_at >= active_since,
        T.c.completed_at >= active_since,
        and_(T.c.status_category.notin_(_CLOSED), T.c.due_at < open_due_before),
    )
    for start in range(0, len(ids), _CHUNK):
        rank = (
            func.row_number()
            .over(partition_by=A.c.person_id, order_by=(T.c.updated_at.desc(), T.c.id.desc()))
            .label("rank")
        )
        inner = (
            select(
                A.c.person_id,
                T.c.id,
                *PERSON_TASK_COLUMNS,
                rank,
            )
            .join(A, A.c.task_item_id == T.c.id)
            .where(
                A.c.person_id.in_(ids[start : start + _CHUNK]),
                T.c.source.in_(list(sources)),
                T.c.deleted_at.is_(None),
                wanted,
            )
            .subquery()
        )
        stmt = (
            select(*[c for c in inner.c if c.name != "rank"])
            .where(inner.c.rank <= per_person)
            .order_by(inner.c.person_id, inner.c.rank)
        )
        seen: set[tuple[int, int]] = set()
        for person_id, item_id, *task in await session.execute(stmt):
            # one person mapped from two of the source's user ids on one item: show it once
            if (person_id, item_id) not in seen:
                seen.add((person_id, item_id))
                found.setdefault(person_id, []).append(PersonTask(*task))
    return found


async def keep_shown(session: AsyncSession, *, step: str, shown: dict[int, Any]) -> None:
    """Store what each assignment (id → record) was shown, under ``step`` among its answers; an
    assignment that has such a record already keeps it (it was shown first)."""
    if not shown:
        return
    now = utcnow()
    rows = [
        {"assignment_id": a, "step": step, "value": value, "skipped": False, "answered_at": now}
        for a, value in shown.items()
    ]
    stmt = insert_for(session, ANS).on_conflict_do_nothing(index_elements=["assignment_id", "step"])
    await session.execute(stmt, rows)
