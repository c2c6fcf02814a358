"""Org sync from a chat platform's directory: its people become org rows, applied like an org file.

Platform-free: a reader in ``bot/platforms`` turns the platform's directory into ``DirectoryPerson``s;
this module decides what they mean for the org. Emails tie people together across platforms, so a
person first imported from an org file gets the platform's id linked. Unlike a file import, a sync
owns only the people it knows: someone missing from the directory is deactivated only if they hold an
id on that platform; people known only from an org file or another platform are left alone.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conversations.i18n import t
from storage.engine import Database
from storage.models import Person
from storage.org import (
    IdentityConflictError,
    OrgRow,
    apply_org,
    list_identities,
    list_people,
    lock_org,
    roles_text,
)

__all__ = [
    "Directory",
    "DirectoryError",
    "DirectoryPerson",
    "OrgSyncError",
    "SyncProblem",
    "SyncReport",
    "describe_directory_error",
    "format_sync_refusal",
    "format_sync_report",
    "plan_rows",
    "sync_directory",
]

# a chat message has a size limit; a 50,000-person first sync must not list every email
MAX_LISTED = 20
# the database column sizes (storage.models.Person)
_LIMITS = {"name": 200, "department": 200, "title": 200, "country": 8}
_EMAIL_LIMIT = 320
_EMAIL = re.compile(r"[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;.]+")
# zones where people mostly read Chinese: a new person there gets zh-CN until the org file says otherwise
_CHINESE_ZONES = frozenset(
    {
        "Asia/Shanghai",
        "Asia/Chongqing",
        "Asia/Chungking",
        "Asia/Harbin",
        "Asia/Urumqi",
        "Asia/Kashgar",
        "Asia/Hong_Kong",
        "Asia/Macau",
        "Asia/Macao",
        "Asia/Taipei",
        "PRC",
        "ROC",
        "Hongkong",
    }
)


@dataclass(frozen=True)
class DirectoryPerson:
    """One person as a platform's directory lists them; ``email`` may be empty (then they are skipped)."""

    external_id: str
    email: str
    name: str
    manager_external_id: str | None = None
    department: str = ""
    title: str = ""
    timezone: str | None = None
    country: str = ""


@dataclass(frozen=True)
class Directory:
    """Everyone a directory read returned (active people only), and how many departments it walked."""

    people: list[DirectoryPerson] = field(default_factory=list)
    departments: int = 0


class DirectoryError(Exception):
    """Reading a platform's directory failed; ``kind`` picks the explanation, the rest fills it in.

    Kinds: ``not_configured`` (``names``: settings to set), ``bad_domain`` (``msg``: the value),
    ``auth`` (credentials refused), ``permission`` (``scopes`` to grant), ``data_range`` (a department
    outside what the app may read), ``no_emails`` (``count`` people and not one email: ``scopes``),
    ``rate_limited`` (``tries``), ``network`` (no answer), ``bad_answer`` (not the platform's JSON),
    ``api`` (any other error code).
    """

    def __init__(
        self,
        kind: str,
        *,
        platform: str,
        call: str = "",
        code: int | None = None,
        msg: str = "",
        status: int | None = None,
        scopes: Sequence[str] = (),
        names: Sequence[str] = (),
        tries: int = 0,
        count: int = 0,
    ) -> None:
        self.kind, self.platform, self.call = kind, platform, call
        self.code, self.msg, self.status = code, msg, status
        self.scopes, self.names, self.tries, self.count = tuple(scopes), tuple(names), tries, count
        super().__init__(describe_directory_error(self, "en"))


@dataclass(frozen=True)
class SyncProblem:
    """Something in the directory the sync worked around (or refused for): an i18n code and its values."""

    code: str
    params: Mapping[str, str] = field(default_factory=dict)


class OrgSyncError(Exception):
    """The sync was refused and nothing was written; ``problems`` says why."""

    def __init__(self, platform: str, problems: Sequence[SyncProblem]) -> None:
        self.platform = platform
        self.problems = list(problems)
        super().__init__(format_sync_refusal(self, "en"))


@dataclass(frozen=True)
class SyncReport:
    """What a sync changed, by email, plus the people it skipped and what it worked around."""

    platform: str
    total: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    changed_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name (external id)" of people without an email
    problems: list[SyncProblem] = field(default_factory=list)

    @property
    def nothing_changed(self) -> bool:
        """True when the database already matched the directory."""
        return not (self.added or self.changed or self.deactivated or self.reactivated)


@dataclass
class RowPlan:
    """The org rows a directory makes, and who was skipped or worked around on the way."""

    rows: list[OrgRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    problems: list[SyncProblem] = field(default_factory=list)


# --- the sync --------------------------------------------------------------------------------------


async def sync_directory(
    db: Database,
    *,
    platform: str,
    people: Sequence[DirectoryPerson],
    actor_id: int | None = None,
    source: str,
    default_timezone: str = "UTC",
    default_locale: str = "en",
) -> SyncReport:
    """Upsert ``people`` into the org in one transaction and deactivate the platform's leavers.

    Raises OrgSyncError, writing nothing, when no one has an email or an id already belongs to
    another person.
    """
    async with db.sessions() as session, session.begin():
        # read what is stored under the same lock apply_org takes, so a concurrent import cannot slip in
        await lock_org(session)
        stored = await list_people(session, active_only=False)
        identities = await list_identities(session)
        by_id = {p.id: p for p in stored}
        owners = {
            i.external_id: by_id[i.person_id].email
            for i in identities
            if i.platform == platform and i.person_id in by_id
        }
        plan = plan_rows(
            people,
            platform=platform,
            stored={p.email.lower(): p for p in stored},
            owners=owners,
            default_timezone=default_timezone,
            default_locale=default_locale,
        )
        if not plan.rows:
            raise OrgSyncError(platform, [SyncProblem("empty")])
        try:
            changes = await apply_org(
                session,
                rows=plan.rows,
                actor_id=actor_id,
                source=source,
                only_platform=platform,
                action="org.sync",
            )
        except IdentityConflictError as exc:
            # raised before any write, and leaving the block rolls the transaction back anyway
            problems = [
                SyncProblem(
                    "identity_taken",
                    {"value": c.external_id, "email": c.email, "owner": c.owner_email},
                )
                for c in exc.conflicts
            ]
            raise OrgSyncError(platform, problems) from exc
    return SyncReport(
        platform=platform,
        total=changes.total,
        added=changes.added,
        changed=changes.changed,
        changed_fields=changes.changed_fields,
        deactivated=changes.deactivated,
        reactivated=changes.reactivated,
        skipped=plan.skipped,
        problems=plan.problems,
    )


def plan_rows(
    people: Sequence[DirectoryPerson],
    *,
    platform: str,
    stored: Mapping[str, Person],
    owners: Mapping[str, str],
    default_timezone: str,
    default_locale: str,
) -> RowPlan:
    """The org rows for ``people``: pure, given what is stored (by email) and who owns which id."""
    plan = RowPlan()
    kept: dict[str, DirectoryPerson] = {}  # email -> the first person with it
    email_of: dict[str, str] = {}  # external id -> email, for the people kept
    for person in people:
        email = _email(person, owners, plan)
        if email is None:
            continue
        first = kept.get(email)
        if first is not None:
            params = {"name": person.name, "id": person.external_id, "email": email, "first": first.name}
            plan.problems.append(SyncProblem("duplicate_email", params))
            continue
        kept[email] = person
        email_of[person.external_id] = email
    managers = _managers(kept, email_of, plan)
    has_reports = {m for m in managers.values() if m is not None}
    for index, (email, person) in enumerate(kept.items(), start=1):
        plan.rows.append(
            _row(
                email,
                person,
                stored.get(email),
                manager=managers[email],
                is_manager=email in has_reports,
                platform=platform,
                line=index,
                default_timezone=default_timezone,
                default_locale=default_locale,
            )
        )
    return plan


def _email(person: DirectoryPerson, owners: Mapping[str, str], plan: RowPlan) -> str | None:
    email = person.email.strip().lower()
    if not email:
        # someone already linked by their id is still themselves without an email (hidden by a
        # permission, say): keep them rather than deactivate them
        owner = owners.get(person.external_id)
        if owner is None:
            plan.skipped.append(f"{person.name or '?'} ({person.external_id})")
        return owner.lower() if owner else None
    if len(email) > _EMAIL_LIMIT or not _EMAIL.fullmatch(email):
        params = {"name": person.name, "id": person.external_id, "email": person.email}
        plan.problems.append(SyncProblem("bad_email", params))
        return None
    return email


def _managers(
    kept: Mapping[str, DirectoryPerson], email_of: Mapping[str, str], plan: RowPlan
) -> dict[str, str | None]:
    """Each kept person's manager email; a leader outside the directory means no manager."""
    managers: dict[str, str | None] = {}
    for email, person in kept.items():
        manager = email_of.get(person.manager_external_id or "")
        if manager == email:
            plan.problems.append(SyncProblem("self_manager", {"name": person.name, "email": email}))
            manager = None
        managers[email] = manager
    _break_cycles(managers, kept, plan)
    return managers


def _break_cycles(
    managers: dict[str, str | None], kept: Mapping[str, DirectoryPerson], plan: RowPlan
) -> None:
    """Drop the manager link that closes each loop; walks every chain once, so linear in people."""
    done: set[str] = set()
    for start in list(managers):
        path: list[str] = []
        on_path: set[str] = set()
        email: str | None = start
        while email is not None and email not in done and email not in on_path:
            path.append(email)
            on_path.add(email)
            email = managers.get(email)
        if email is not None and email in on_path:
            loop = path[path.index(email) :]
            closer = path[-1]
            managers[closer] = None
            chain = " → ".join([*loop, loop[0]])
            plan.problems.append(
                SyncProblem("manager_cycle", {"chain": chain, "name": kept[closer].name, "email": closer})
            )
        done.update(path)


def _row(
    email: str,
    person: DirectoryPerson,
    current: Person | None,
    *,
    manager: str | None,
    is_manager: bool,
    platform: str,
    line: int,
    default_timezone: str,
    default_locale: str,
) -> OrgRow:
    # the directory owns names, departments, titles, managers and (where given) time zones; the org
    # file keeps what the directory does not know: roles such as hr, language, country, leave
    zone = person.timezone if _valid_zone(person.timezone) else None
    roles = set(current.roles.split(",")) if current is not None else {"employee"}
    if is_manager:
        roles.add("manager")
    if current is None:
        timezone = zone or default_timezone
        locale = ("zh-CN" if zone in _CHINESE_ZONES else "en") if zone else default_locale
        country = person.country
    else:
        timezone = zone or current.timezone
        locale = current.locale
        country = current.country or person.country
    return OrgRow(
        email=email,
        name=_cut(person.name, "name") or (current.name if current else "") or email.split("@")[0],
        manager_email=manager,
        department=_cut(person.department, "department") or (current.department if current else ""),
        title=_cut(person.title, "title") or (current.title if current else ""),
        timezone=timezone,
        country=_cut(country.strip().upper(), "country"),
        locale=locale,
        roles=tuple(roles_text(roles).split(",")),
        ids={platform: person.external_id},
        line=line,
    )


def _cut(value: str, name: str) -> str:
    return value.strip()[: _LIMITS[name]]


def _valid_zone(value: str | None) -> bool:
    # "localtime" names whatever zone the server is in, which is no one's zone
    if not value or value == "localtime":
        return False
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


# --- what the person who ran it reads ----------------------------------------------------------------


def _platform(platform: str, locale: str) -> str:
    return t(f"orgsync.platform_{platform}", locale)


def format_sync_report(report: SyncReport, locale: str) -> str:
    """The outcome of a sync for the person who ran it."""
    platform = _platform(report.platform, locale)
    if report.nothing_changed:
        lines = [t("orgsync.report_noop", locale, platform=platform, total=report.total)]
    else:
        lines = [
            t(
                "orgsync.report_summary",
                locale,
                platform=platform,
                total=report.total,
                added=len(report.added),
                changed=len(report.changed),
                deactivated=len(report.deactivated),
                reactivated=len(report.reactivated),
            )
        ]
    changed = [_with_fields(e, report.changed_fields.get(e, ()), locale) for e in report.changed]
    for key, items in (
        ("report_added", report.added),
        ("report_changed", changed),
        ("report_deactivated", report.deactivated),
        ("report_reactivated", report.reactivated),
        ("report_skipped", report.skipped),
        ("report_problems", [_describe(p, locale) for p in report.problems]),
    ):
        if items:
            heading = t(f"orgsync.{key}", locale, count=len(items), platform=platform)
            lines += ["", heading, *_bullets(items, locale)]
    return "\n".join(lines)


def _with_fields(email: str, fields: Sequence[str], locale: str) -> str:
    names = t("org.list_sep", locale).join(t(f"org.field_{f}", locale) for f in fields)
    return t("orgsync.report_changed_item", locale, email=email, fields=names)


def _bullets(items: Sequence[str], locale: str, limit: int = MAX_LISTED) -> list[str]:
    shown = [f"• {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(t("orgsync.more", locale, count=len(items) - limit))
    return shown


def _describe(problem: SyncProblem, locale: str) -> str:
    return t(f"orgsync.problem_{problem.code}", locale, **problem.params)


def format_sync_refusal(error: OrgSyncError, locale: str) -> str:
    """Why a sync was refused, and that nothing was changed."""
    platform = _platform(error.platform, locale)
    title = t("orgsync.refused_title", locale, platform=platform, count=len(error.problems))
    items = [t(f"orgsync.refused_{p.code}", locale, platform=platform, **p.params) for p in error.problems]
    return "\n".join([title, *_bullets(items, locale)])


def describe_directory_error(error: DirectoryError, locale: str) -> str:
    """Why reading the directory failed, and what to do about it, in ``locale``."""
    sep = t("org.list_sep", locale)
    return t(
        f"orgsync.error_{error.kind}",
        locale,
        platform=_platform(error.platform, locale),
        call=error.call,
        code="-" if error.code is None else str(error.code),
        msg=error.msg,
        status="-" if error.status is None else str(error.status),
        scopes=sep.join(error.scopes),
        names=sep.join(error.names),
        tries=error.tries,
        count=error.count,
    )
