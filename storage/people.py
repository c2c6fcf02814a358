"""Who is talking: people by id, by platform identity, and their managers, as small records."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import bindparam, func, literal, or_, select, tuple_, union_all, update
from sqlalchemy.ext.asyncio import AsyncSession

from storage.clock import utcnow
from storage.models import Identity, Person
from storage.prepared import Prepared, dialect_insert, run

P = Person.__table__  # type: ignore[attr-defined]
I = Identity.__table__  # type: ignore[attr-defined]  # noqa: E741


@dataclass(frozen=True)
class PersonRow:
    """A person as the conversation needs them: language, time zone, roles."""

    id: int
    email: str
    name: str
    locale: str
    timezone: str
    roles: frozenset[str]
    manager_id: int | None = None
    active: bool = True
    country: str = ""  # ISO 3166 code: picks the workday calendar
    away_until: date | None = None  # last day on leave

    @property
    def is_hr(self) -> bool:
        """HR admins run cycles for everyone."""
        return "hr" in self.roles


_COLUMNS = (
    P.c.id,
    P.c.email,
    P.c.name,
    func.coalesce(P.c.preferred_locale, P.c.locale),
    P.c.timezone,
    P.c.roles,
    P.c.manager_id,
    P.c.active,
    P.c.country,
    P.c.away_until,
)


def _row(r: tuple[Any, ...]) -> PersonRow:
    roles = frozenset(x.strip() for x in (r[5] or "").split(",") if x.strip())
    return PersonRow(r[0], r[1], r[2], r[3], r[4], roles, r[6], bool(r[7]), r[8] or "", r[9])


async def by_id(session: AsyncSession, *, person_id: int) -> PersonRow | None:
    """One person by id."""
    row = (await run(session, _BY_ID, {"person_id": person_id})).first()
    return _row(tuple(row)) if row else None


_BY_ID = Prepared(lambda _: select(*_COLUMNS).where(P.c.id == bindparam("person_id")))


async def by_email(session: AsyncSession, *, email: str) -> PersonRow | None:
    """One person by email (case-insensitive: emails are stored lower-cased)."""
    row = (await session.execute(select(*_COLUMNS).where(P.c.email == email.strip().lower()))).first()
    return _row(tuple(row)) if row else None


async def by_identity(
    session: AsyncSession, *, platform: str, external_id: str, tenant: str = ""
) -> PersonRow | None:
    """The person behind a platform user id."""
    stmt = (
        select(*_COLUMNS)
        .join(I, I.c.person_id == P.c.id)
        .where(I.c.platform == platform, I.c.tenant == tenant, I.c.external_id == external_id)
    )
    row = (await session.execute(stmt)).first()
    return _row(tuple(row)) if row else None


def _resolve(_: str) -> Any:
    by_identity = (
        select(*_COLUMNS, literal(0).label("rank"))
        .join(I, I.c.person_id == P.c.id)
        .where(
            I.c.platform == bindparam("platform"),
            I.c.tenant == bindparam("tenant"),
            I.c.external_id == bindparam("external_id"),
        )
    )
    by_email = select(*_COLUMNS, literal(1).label("rank")).where(P.c.email == bindparam("email"))
    both = union_all(by_identity, by_email).subquery()
    return select(*[c for c in both.c if c.name != "rank"]).order_by(both.c.rank).limit(1)


_RESOLVE = Prepared(_resolve)


async def resolve(
    session: AsyncSession, *, platform: str, external_id: str, tenant: str = "", email: str | None = None
) -> PersonRow | None:
    """The person behind a platform user: by their identity, else by the email the platform gave."""
    params = {
        "platform": platform,
        "tenant": tenant,
        "external_id": external_id,
        "email": (email or "").strip().lower(),
    }
    row = (await run(session, _RESOLVE, params)).first()
    return _row(tuple(row)) if row else None


def _resolve_many(_: str) -> Any:
    keys = tuple_(I.c.platform, I.c.tenant, I.c.external_id)
    by_identity = (
        select(*_COLUMNS, I.c.platform, I.c.tenant, I.c.external_id, literal("").label("email_key"))
        .join(I, I.c.person_id == P.c.id)
        .where(keys.in_(bindparam("keys", expanding=True)))
    )
    by_email = select(
        *_COLUMNS,
        literal("").label("platform"),
        literal("").label("tenant"),
        literal("").label("external_id"),
        P.c.email,
    ).where(P.c.email.in_(bindparam("emails", expanding=True)))
    return union_all(by_identity, by_email)


_RESOLVE_MANY = Prepared(_resolve_many)
User = tuple[str, str, str, str]


async def resolve_many(session: AsyncSession, *, users: list[User]) -> dict[User, PersonRow]:
    """``resolve`` for many ``(platform, tenant, user id, email)`` at once, in one query."""
    params = {
        "keys": list({(p, t, u) for p, t, u, _ in users}) or [("", "", "")],
        "emails": list({e for *_, e in users if e}) or [""],
    }
    by_identity: dict[tuple[str, str, str], PersonRow] = {}
    by_email: dict[str, PersonRow] = {}
    for row in (await run(session, _RESOLVE_MANY, params)).all():
        person = _row(tuple(row[: len(_COLUMNS)]))
        platform, tenant, external_id, email = row[len(_COLUMNS) :]
        if email:
            by_email[email] = person
        else:
            by_identity[(platform, tenant, external_id)] = person
    found: dict[User, PersonRow] = {}
    for user in users:
        match = by_identity.get(user[:3]) or by_email.get(user[3])
        if match is not None:
            found[user] = match
    return found


async def manager_of(session: AsyncSession, *, person_id: int) -> PersonRow | None:
    """The person's active manager, if any."""
    manager_id = (
        await session.execute(select(P.c.manager_id).where(P.c.id == person_id))
    ).scalar_one_or_none()
    if manager_id is None:
        return None
    manager = await by_id(session, person_id=manager_id)
    return manager if manager is not None and manager.active else None


async def reports_of(session: AsyncSession, *, manager_id: int) -> set[int]:
    """Everyone below a manager, transitively (the people whose records they may see)."""
    stmt = select(P.c.id, P.c.manager_id).where(P.c.manager_id.is_not(None))
    children: dict[int, list[int]] = {}
    for pid, mid in (await session.execute(stmt)).all():
        children.setdefault(mid, []).append(pid)
    found: set[int] = set()
    frontier = [manager_id]
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in found:
                found.add(child)
                frontier.append(child)
    return found


async def set_preferred_locale(session: AsyncSession, *, person_id: int, locale: str) -> None:
    """Remember the language a person chose with ``lang``."""
    await session.execute(
        update(P).where(P.c.id == person_id).values(preferred_locale=locale, updated_at=utcnow())
    )


async def external_id(
    session: AsyncSession, *, person_id: int, platform: str, tenant: str = ""
) -> str | None:
    """The person's id on ``platform``, if known."""
    stmt = select(I.c.external_id).where(
        I.c.person_id == person_id, I.c.platform == platform, I.c.tenant == tenant
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def hr_admins(session: AsyncSession) -> list[PersonRow]:
    """Active HR admins (whom an unknown user should ask)."""
    stmt = select(*_COLUMNS).where(P.c.active.is_(True), P.c.roles.like("%hr%")).order_by(P.c.id)
    return [r for r in (_row(tuple(x)) for x in (await session.execute(stmt)).all()) if r.is_hr]


async def remember_identity(
    session: AsyncSession, *, person_id: int, platform: str, external_id: str, tenant: str = ""
) -> None:
    """Keep a platform id learned at run time (e.g. found by email), unless one is known already."""
    stmt = (
        dialect_insert(session.bind.dialect.name if session.bind else "sqlite", I)
        .values(
            person_id=person_id,
            platform=platform,
            tenant=tenant,
            external_id=external_id,
            reachable=True,
            created_at=utcnow(),
        )
        .on_conflict_do_nothing()
    )
    await session.execute(stmt)


async def set_away_until(session: AsyncSession, *, person_id: int, until: date | None) -> None:
    """Record the last day of a person's leave (None: they are back)."""
    await session.execute(update(P).where(P.c.id == person_id).values(away_until=until, updated_at=utcnow()))


def _in_audience(stmt: Any, departments: list[str] | None, emails: list[str] | None) -> Any:
    stmt = stmt.where(P.c.active.is_(True))
    if departments or emails:
        conditions = []
        if departments:
            conditions.append(func.lower(P.c.department).in_([d.lower() for d in departments]))
        if emails:
            conditions.append(P.c.email.in_([e.strip().lower() for e in emails]))
        stmt = stmt.where(or_(*conditions))
    return stmt


async def audience(
    session: AsyncSession, *, departments: list[str] | None = None, emails: list[str] | None = None
) -> list[PersonRow]:
    """Active people in any of ``departments`` or ``emails``; everyone active when both are empty."""
    stmt = _in_audience(select(*_COLUMNS), departments, emails)
    return [_row(tuple(r)) for r in (await session.execute(stmt.order_by(P.c.id))).all()]


async def places(
    session: AsyncSession, *, departments: list[str] | None = None, emails: list[str] | None = None
) -> list[tuple[str, str]]:
    """The distinct (time zone, country) pairs of an audience: far fewer than its people."""
    stmt = _in_audience(select(P.c.timezone, P.c.country).distinct(), departments, emails)
    return [(tz, country or "") for tz, country in (await session.execute(stmt)).all()]


async def by_ids(session: AsyncSession, *, person_ids: list[int]) -> list[PersonRow]:
    """Several people by id, in id order (unknown ids are left out)."""
    if not person_ids:
        return []
    stmt = select(*_COLUMNS).where(P.c.id.in_(sorted(set(person_ids)))).order_by(P.c.id)
    return [_row(tuple(r)) for r in (await session.execute(stmt)).all()]


_EXTERNAL_IDS = Prepared(
    lambda _: select(I.c.person_id, I.c.external_id).where(
        I.c.person_id.in_(bindparam("person_ids", expanding=True)),
        I.c.platform == bindparam("platform"),
        I.c.tenant == bindparam("tenant"),
    )
)


async def external_ids(
    session: AsyncSession, *, person_ids: list[int], platform: str, tenant: str = ""
) -> dict[int, str]:
    """``external_id`` for several people at once, in one query; people without one are left out."""
    if not person_ids:
        return {}
    params = {"person_ids": sorted(set(person_ids)), "platform": platform, "tenant": tenant}
    return {pid: found for pid, found in (await run(session, _EXTERNAL_IDS, params)).all()}


@dataclass(frozen=True)
class PlatformId:
    """A person's id on a platform, and whether the platform last said it cannot be messaged."""

    external_id: str
    unreachable: bool = False


_PLATFORM_IDS = Prepared(
    lambda _: select(I.c.person_id, I.c.external_id, I.c.unreachable_at.is_not(None)).where(
        I.c.person_id.in_(bindparam("person_ids", expanding=True)),
        I.c.platform == bindparam("platform"),
        I.c.tenant == bindparam("tenant"),
    )
)


async def platform_ids(
    session: AsyncSession, *, person_ids: list[int], platform: str, tenant: str = ""
) -> dict[int, PlatformId]:
    """``external_ids`` with each id's unreachable mark, in one query; people without one are left out."""
    if not person_ids:
        return {}
    params = {"person_ids": sorted(set(person_ids)), "platform": platform, "tenant": tenant}
    return {
        pid: PlatformId(found, bool(unreachable))
        for pid, found, unreachable in (await run(session, _PLATFORM_IDS, params)).all()
    }


async def mark_unreachable(
    session: AsyncSession, *, platform: str, external_id: str, reason: str, tenant: str = ""
) -> int | None:
    """Note that the platform cannot message this user (``reason``: its words, kept short).

    ``unreachable_at`` is when it was last said. Returns the person whose identity it is, or None
    when no identity has this id (nothing is marked then).
    """
    stmt = (
        update(I)
        .where(I.c.platform == platform, I.c.tenant == tenant, I.c.external_id == external_id)
        .values(
            reachable=False,
            unreachable_at=utcnow(),
            unreachable_reason=reason[:200],
        )
        .returning(I.c.person_id)
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def clear_unreachable(
    session: AsyncSession,
    *,
    platform: str,
    external_ids: list[str],
    tenant: str = "",
    marked_before: datetime | None = None,
) -> int:
    """A message reached these users (or they wrote): they are reachable again; returns how many were not.

    With ``marked_before`` (when the message that reached them was sent), a mark made after it is
    left: it comes from a later failure.
    """
    if not external_ids:
        return 0
    stmt = (
        update(I)
        .where(
            I.c.platform == platform,
            I.c.tenant == tenant,
            I.c.external_id.in_(sorted(set(external_ids))),
            I.c.unreachable_at.is_not(None),
        )
        .values(reachable=True, unreachable_at=None, unreachable_reason=None)
    )
    if marked_before is not None:
        stmt = stmt.where(I.c.unreachable_at <= marked_before)
    return int((await session.execute(stmt)).rowcount)  # type: ignore[attr-defined]
