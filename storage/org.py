"""Org queries: the people table, their platform identities, and the idempotent org import upsert."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import text
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.clock import utcnow
from storage.models import AuditLog, Identity, Person

# platforms (and task sources) whose ids an org file may carry; the org file has no tenant
ID_PLATFORMS = ("slack", "feishu", "dingtalk", "jira")
ORG_TENANT = ""
ROLE_ORDER = ("employee", "manager", "hr")
# an arbitrary constant naming the org import among PostgreSQL advisory locks
_IMPORT_LOCK_KEY = 0x6F726731


@dataclass(frozen=True)
class OrgRow:
    """One validated person from an org file; ``line`` is where it came from, for problem messages."""

    email: str
    name: str
    manager_email: str | None = None
    department: str = ""
    title: str = ""
    timezone: str = "UTC"
    country: str = ""
    locale: str = "en"
    roles: tuple[str, ...] = ("employee",)
    ids: Mapping[str, str] = field(default_factory=dict)  # platform -> external id
    line: int = 0
    # last day on leave; None leaves what is stored alone (leave is often told in chat, not the file)
    away_until: date | None = None


@dataclass(frozen=True)
class IdentityConflict:
    """A platform id in the file that the database already gives to someone else."""

    line: int
    email: str
    platform: str
    external_id: str
    owner_email: str


class IdentityConflictError(Exception):
    """The import would give a platform id to a second person; nothing was written."""

    def __init__(self, conflicts: Sequence[IdentityConflict]) -> None:
        super().__init__(f"{len(conflicts)} platform id(s) already belong to other people")
        self.conflicts = list(conflicts)


@dataclass
class OrgChanges:
    """What an import did, by email; a reactivated person whose fields changed is in both lists."""

    total: int = 0
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    changed_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)

    def note_change(self, email: str, names: Iterable[str]) -> None:
        """Record changed field names for ``email``, keeping first-seen order."""
        names = tuple(names)
        if not names:
            return
        if email not in self.changed_fields:
            self.changed.append(email)
        self.changed_fields[email] = self.changed_fields.get(email, ()) + names


def roles_text(roles: Iterable[str]) -> str:
    """The stored form of a role set: comma-separated, employee always present, in a fixed order."""
    wanted = {r.strip() for r in roles if r.strip()} | {"employee"}
    return ",".join([r for r in ROLE_ORDER if r in wanted] + sorted(wanted - set(ROLE_ORDER)))


async def list_people(session: AsyncSession, *, active_only: bool = True) -> list[Person]:
    """People in id order; all of them, including deactivated ones, with ``active_only=False``."""
    query = select(Person).order_by(col(Person.id))
    if active_only:
        query = query.where(col(Person.active).is_(True))
    return list((await session.exec(query)).all())


async def get_person_by_email(session: AsyncSession, *, email: str) -> Person | None:
    """The person with this email (case-insensitive), active or not."""
    query = select(Person).where(col(Person.email) == email.strip().lower())
    return (await session.exec(query)).first()


async def list_identities(
    session: AsyncSession, *, person_ids: Iterable[int] | None = None
) -> list[Identity]:
    """Identities, optionally only those of ``person_ids``, in id order."""
    query = select(Identity).order_by(col(Identity.id))
    if person_ids is not None:
        query = query.where(col(Identity.person_id).in_(list(person_ids)))
    return list((await session.exec(query)).all())


async def _org_identities(session: AsyncSession) -> list[Identity]:
    query = select(Identity).where(
        col(Identity.tenant) == ORG_TENANT, col(Identity.platform).in_(ID_PLATFORMS)
    )
    return list((await session.exec(query)).all())


def find_identity_conflicts(
    rows: Sequence[OrgRow], people: Sequence[Person], identities: Sequence[Identity]
) -> list[IdentityConflict]:
    """Ids in ``rows`` already owned by another person who keeps them after this import.

    An owner who is in the file with a different id for that platform gives theirs up, so ids may
    move between people in one import; an owner missing from the file is deactivated but keeps ids.
    """
    email_of = {p.id: p.email.lower() for p in people}
    by_email = {row.email: row for row in rows}
    owner_of = {(i.platform, i.external_id): email_of.get(i.person_id, "") for i in identities}
    conflicts = []
    for row in rows:
        for platform, external_id in row.ids.items():
            owner = owner_of.get((platform, external_id))
            if owner is None or owner == row.email:
                continue
            owner_row = by_email.get(owner)
            if owner_row is not None and owner_row.ids.get(platform) not in (None, external_id):
                continue
            conflicts.append(IdentityConflict(row.line, row.email, platform, external_id, owner))
    return conflicts


def _person_updates(person: Person, row: OrgRow) -> dict[str, object]:
    # only the columns an org file owns; preferred_locale is the person's own choice and stays
    wanted: dict[str, object] = {
        "name": row.name,
        "department": row.department,
        "title": row.title,
        "timezone": row.timezone,
        "country": row.country,
        "locale": row.locale,
        "roles": roles_text(row.roles),
    }
    # roles stored by hand in another order are the same roles, so compare canonical forms
    if row.away_until is not None:
        wanted["away_until"] = row.away_until
    current = {k: getattr(person, k) for k in wanted} | {"roles": roles_text(person.roles.split(","))}
    return {k: v for k, v in wanted.items() if current[k] != v}


def _new_person(row: OrgRow) -> Person:
    return Person(
        email=row.email,
        name=row.name,
        department=row.department,
        title=row.title,
        timezone=row.timezone,
        country=row.country,
        locale=row.locale,
        roles=roles_text(row.roles),
        away_until=row.away_until,
    )


def _upsert_people(
    session: AsyncSession, rows: Sequence[OrgRow], people: dict[str, Person], changes: OrgChanges
) -> None:
    now = utcnow()
    for row in rows:
        person = people.get(row.email)
        if person is None:
            person = _new_person(row)
            session.add(person)
            people[row.email] = person
            changes.added.append(row.email)
            continue
        updates = _person_updates(person, row)
        if not person.active:
            person.active = True
            changes.reactivated.append(row.email)
            person.updated_at = now
        for name, value in updates.items():
            setattr(person, name, value)
        if updates:
            person.updated_at = now
        changes.note_change(row.email, updates)


def _set_managers(rows: Sequence[OrgRow], people: dict[str, Person], changes: OrgChanges) -> None:
    # a second pass once every person has an id, so a report may come before their manager in the file
    now = utcnow()
    added = set(changes.added)
    for row in rows:
        person = people[row.email]
        manager_id = people[row.manager_email].id if row.manager_email else None
        if person.manager_id == manager_id:
            continue
        person.manager_id = manager_id
        person.updated_at = now
        if row.email not in added:
            changes.note_change(row.email, ["manager"])


def _deactivate_missing(
    rows: Sequence[OrgRow],
    people: dict[str, Person],
    changes: OrgChanges,
    only_ids: set[int] | None = None,
) -> None:
    in_file = {row.email for row in rows}
    now = utcnow()
    for email, person in people.items():
        if only_ids is not None and person.id not in only_ids:
            continue
        if person.active and email not in in_file:
            person.active = False
            person.updated_at = now
            changes.deactivated.append(email)


async def _write_identities(
    session: AsyncSession,
    rows: Sequence[OrgRow],
    people: dict[str, Person],
    identities: Sequence[Identity],
    changes: OrgChanges,
) -> None:
    """Add and replace the ids the file names; ids the file leaves out are kept (the bot may link them)."""
    current = {(i.person_id, i.platform): i for i in identities}
    added = set(changes.added)
    stale: list[Identity] = []
    fresh: list[Identity] = []
    for row in rows:
        person_id = people[row.email].id
        assert person_id is not None  # flushed before this runs
        for platform, external_id in row.ids.items():
            old = current.get((person_id, platform))
            if old is not None and old.external_id == external_id:
                continue
            if old is not None:
                stale.append(old)
            fresh.append(
                Identity(person_id=person_id, platform=platform, tenant=ORG_TENANT, external_id=external_id)
            )
            if row.email not in added:
                changes.note_change(row.email, [f"{platform}_id"])
    for identity in stale:
        await session.delete(identity)
    # deletes must reach the database before inserts, so ids can move or swap between people
    await session.flush()
    session.add_all(fresh)


async def apply_org(
    session: AsyncSession,
    *,
    rows: Sequence[OrgRow],
    actor_id: int | None = None,
    source: str = "",
    only_platform: str | None = None,
    action: str = "org.import",
) -> OrgChanges:
    """Make the people table match ``rows``; does not commit (the caller owns the transaction).

    Raises IdentityConflictError before writing anything if an id in the file belongs to someone else.
    Rows must already be validated: unique emails, managers present in ``rows``, no cycles.
    With ``only_platform`` (a directory sync), only people holding an id on that platform are
    deactivated when missing from ``rows``; everyone else missing from them is left as stored.
    """
    await _lock_org(session)
    holders = await _platform_holders(session, only_platform) if only_platform is not None else None
    people = {p.email.lower(): p for p in await list_people(session, active_only=False)}
    identities = await _org_identities(session)
    conflicts = find_identity_conflicts(rows, list(people.values()), identities)
    if conflicts:
        raise IdentityConflictError(conflicts)
    changes = OrgChanges(total=len(rows))
    _upsert_people(session, rows, people, changes)
    await session.flush()  # new people get their ids here
    _set_managers(rows, people, changes)
    _deactivate_missing(rows, people, changes, holders)
    await _write_identities(session, rows, people, identities, changes)
    session.add(AuditLog(actor_id=actor_id, action=action, detail=_audit_detail(changes, source)))
    await session.flush()
    return changes


async def _platform_holders(session: AsyncSession, platform: str) -> set[int]:
    # any tenant: an id the bot linked in chat ties a person to the platform as much as the org file's
    query = select(Identity.person_id).where(col(Identity.platform) == platform)
    return set((await session.exec(query)).all())


async def lock_org(session: AsyncSession) -> None:
    """Hold the org lock for the rest of the transaction (PostgreSQL), so a read-then-apply is atomic."""
    await _lock_org(session)


async def _lock_org(session: AsyncSession) -> None:
    # two imports at once on PostgreSQL would both insert the same new people; the second waits here
    # until the first commits, then reads its result. SQLite allows only one writer anyway.
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _IMPORT_LOCK_KEY})


def _audit_detail(changes: OrgChanges, source: str) -> dict[str, object]:
    return {
        "source": source,
        "total": changes.total,
        "added": len(changes.added),
        "changed": len(changes.changed),
        "deactivated": len(changes.deactivated),
        "reactivated": len(changes.reactivated),
    }
