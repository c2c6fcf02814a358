"""Task items from the sources, who they are assigned to, and the people the sources know.

Written a page at a time by ``connectors.sync``: one SELECT of what is stored for the page's ids,
then bulk INSERT/UPDATE of what is new or changed, so a full sync is a handful of statements per
hundred items.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table, and_, bindparam, case, delete, func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.models import Identity, Person, TaskAssignee, TaskItem
from storage.upsert import insert_for

T: Table = TaskItem.__table__  # type: ignore[attr-defined]
A: Table = TaskAssignee.__table__  # type: ignore[attr-defined]
IDS: Table = Identity.__table__  # type: ignore[attr-defined]
P: Table = Person.__table__  # type: ignore[attr-defined]

# the item columns a sync writes (everything but the id and the first/last-seen bookkeeping)
ITEM_COLUMNS = (
    "scope",
    "external_key",
    "url",
    "title",
    "item_type",
    "status_raw",
    "status_category",
    "created_at",
    "updated_at",
    "due_at",
    "due_all_day",
    "completed_at",
    "container",
    "estimate_points",
    "iteration",
    "labels",
    "content_hash",
    "raw",
)


@dataclass(frozen=True)
class Stored:
    """What is stored of an item: enough to decide whether a re-read changes anything."""

    id: int
    content_hash: str
    deleted: bool


@dataclass(frozen=True)
class AssigneeRow:
    source_user_id: str
    display_name: str
    email: str | None
    person_id: int | None


async def stored_items(
    session: AsyncSession, *, source: str, tenant: str, external_ids: Sequence[str]
) -> dict[str, Stored]:
    """The stored state of these items (those stored at all)."""
    if not external_ids:
        return {}
    rows = await session.execute(
        select(T.c.external_id, T.c.id, T.c.content_hash, T.c.deleted_at).where(
            T.c.source == source, T.c.tenant == tenant, T.c.external_id.in_(list(external_ids))
        )
    )
    return {ext: Stored(id_, digest, deleted is not None) for ext, id_, digest, deleted in rows}


async def insert_items(
    session: AsyncSession, *, source: str, tenant: str, rows: Sequence[dict[str, Any]], now: datetime
) -> dict[str, int]:
    """Store new items (each row: ``external_id`` plus ``ITEM_COLUMNS``); returns external id → row id."""
    if not rows:
        return {}
    values = [
        {**row, "source": source, "tenant": tenant, "first_seen_at": now, "last_seen_at": now} for row in rows
    ]
    result = await session.execute(insert(T).returning(T.c.external_id, T.c.id), values)
    return {ext: id_ for ext, id_ in result}


async def update_items(session: AsyncSession, *, rows: Sequence[dict[str, Any]], now: datetime) -> None:
    """Rewrite changed items (each row: ``id`` plus ``ITEM_COLUMNS``); a tombstoned one back is live."""
    if not rows:
        return
    stmt = (
        update(T)
        .where(T.c.id == bindparam("_id"))
        .values(
            {c: bindparam(c) for c in ITEM_COLUMNS}
            | {"last_seen_at": now, "deleted_at": None, "tombstone_reason": None}
        )
    )
    params = [{"_id": row["id"], **{c: row[c] for c in ITEM_COLUMNS}} for row in rows]
    await session.execute(stmt, params)


async def replace_assignees(
    session: AsyncSession,
    *,
    source: str,
    tenant: str,
    assignees: dict[int, Sequence[AssigneeRow]],
    new_items: frozenset[int] = frozenset(),
) -> None:
    """Set who each of these items is assigned to (item id → its assignees), replacing what was there.

    ``new_items``: ids just inserted, which have nothing to replace (a full sync is mostly those).
    """
    if not assignees:
        return
    stored_before = [item_id for item_id in assignees if item_id not in new_items]
    if stored_before:
        await session.execute(delete(A).where(A.c.task_item_id.in_(stored_before)))
    values = [
        {
            "task_item_id": item_id,
            "source_user_id": a.source_user_id,
            "source": source,
            "tenant": tenant,
            "display_name": a.display_name[:200],
            "email": a.email,
            "person_id": a.person_id,
        }
        for item_id, people in assignees.items()
        for a in {a.source_user_id: a for a in people}.values()
    ]
    if values:
        await session.execute(insert(A), values)


async def source_identities(session: AsyncSession, *, source: str) -> dict[str, int]:
    """The source's user ids Cadence has mapped to people (source user id → person id).

    One account per person and source, whatever the source's tenant: the org file's ``ids`` (e.g.
    ``jira:``) are stored the same way.
    """
    rows = await session.execute(
        select(IDS.c.external_id, IDS.c.person_id).where(IDS.c.platform == source, IDS.c.tenant == "")
    )
    return {ext: pid for ext, pid in rows}


async def remember_source_identities(
    session: AsyncSession, *, source: str, tenant: str, found: dict[int, str]
) -> int:
    """Store person id → source user id mappings (a person or id mapped already keeps its mapping).

    Items of ``tenant`` already stored for these users are attributed to the person at once. Returns
    how many mappings were new.
    """
    if not found:
        return 0
    stmt = insert_for(session, IDS).on_conflict_do_nothing()
    values = [
        {"person_id": pid, "platform": source, "tenant": "", "external_id": ext} for pid, ext in found.items()
    ]
    result = await session.execute(stmt.returning(IDS.c.person_id, IDS.c.external_id), values)
    added = {pid: ext for pid, ext in result}
    # attribute by what was found, also where the person had another id already (an org file's)
    await session.execute(
        update(A)
        .where(
            A.c.source == source,
            A.c.tenant == tenant,
            A.c.source_user_id == bindparam("_ext"),
            A.c.person_id.is_(None),
        )
        .values(person_id=bindparam("_pid")),
        [{"_ext": ext, "_pid": pid} for pid, ext in found.items()],
    )
    return len(added)


async def live_ids_in_scope(session: AsyncSession, *, source: str, tenant: str, scope: str) -> set[str]:
    """The ids of the items last read in ``scope`` that are not tombstoned."""
    rows = await session.execute(
        select(T.c.external_id).where(
            T.c.source == source, T.c.tenant == tenant, T.c.scope == scope, T.c.deleted_at.is_(None)
        )
    )
    return set(rows.scalars().all())


async def tombstone(
    session: AsyncSession, *, source: str, tenant: str, external_id: str, reason: str, now: datetime
) -> bool:
    """Mark an item gone (kept for the record's history); False when it was not live."""
    result = await session.execute(
        update(T)
        .where(
            T.c.source == source,
            T.c.tenant == tenant,
            T.c.external_id == external_id,
            T.c.deleted_at.is_(None),
        )
        .values(deleted_at=now, tombstone_reason=reason)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


# the columns a ``PersonTask`` is made of, in its field order
PERSON_TASK_COLUMNS = (
    T.c.source,
    T.c.external_key,
    T.c.title,
    T.c.url,
    T.c.status_category,
    T.c.status_raw,
    T.c.updated_at,
    T.c.due_at,
    T.c.due_all_day,
    T.c.completed_at,
    T.c.container,
)


@dataclass(frozen=True)
class PersonTask:
    """One live item of a person's, as the conversation shows it."""

    source: str
    external_key: str | None
    title: str
    url: str | None
    status_category: str
    status_raw: str | None
    updated_at: datetime
    due_at: datetime | None
    due_all_day: bool
    completed_at: datetime | None
    container: str | None


async def person_tasks(
    session: AsyncSession,
    *,
    person_id: int,
    active_since: datetime,
    open_due_before: datetime | None = None,
    limit: int = 200,
) -> list[PersonTask]:
    """A person's live items touched since ``active_since``, plus open ones due before ``open_due_before``.

    Newest first. The second part brings in overdue items nobody has touched lately.
    """
    touched = T.c.updated_at >= active_since
    wanted = (
        or_(touched, and_(T.c.status_category != "done", T.c.due_at < open_due_before))
        if open_due_before is not None
        else touched
    )
    stmt = (
        select(*PERSON_TASK_COLUMNS)
        .join(A, A.c.task_item_id == T.c.id)
        .where(A.c.person_id == person_id, T.c.deleted_at.is_(None), wanted)
        .order_by(T.c.updated_at.desc(), T.c.id.desc())
        .limit(limit)
    )
    return [PersonTask(*row) for row in await session.execute(stmt)]


async def count_items(
    session: AsyncSession, *, sources: Iterable[str] | None = None
) -> dict[str, tuple[int, int]]:
    """Per source: (live items, tombstoned items)."""
    stmt = select(
        T.c.source,
        func.count(case((T.c.deleted_at.is_(None), 1))),
        func.count(T.c.deleted_at),
    ).group_by(T.c.source)
    if sources is not None:
        stmt = stmt.where(T.c.source.in_(list(sources)))
    return {source: (live, gone) for source, live, gone in await session.execute(stmt)}


async def org_members(session: AsyncSession) -> list[tuple[int, str, dict[str, str]]]:
    """Active people with their email and ids per platform or source: (person id, email, {platform: id})."""
    people = await session.execute(select(P.c.id, P.c.email).where(P.c.active.is_(True)).order_by(P.c.id))
    ids: dict[int, dict[str, str]] = {}
    rows = await session.execute(
        select(IDS.c.person_id, IDS.c.platform, IDS.c.external_id)
        .join(P, P.c.id == IDS.c.person_id)
        .where(P.c.active.is_(True))
    )
    for person_id, platform, external_id in rows:
        ids.setdefault(person_id, {})[platform] = external_id
    return [(pid, email, ids.get(pid, {})) for pid, email in people]


async def emails_to_people(session: AsyncSession) -> dict[str, int]:
    """Every active person's email (lower-cased) → their id, to attribute items that show an email."""
    rows = await session.execute(select(P.c.email, P.c.id).where(P.c.active.is_(True)))
    return {email.lower(): pid for email, pid in rows}


async def analyze(session: AsyncSession) -> None:
    """Refresh PostgreSQL's statistics of the task tables (SQLite plans these lookups well without)."""
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        await session.execute(text("ANALYZE taskitem, taskassignee"))
