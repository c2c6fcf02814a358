"""Org import and the org tree as people see them: refuse a bad file whole, or apply it and report."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from conversations.i18n import t
from conversations.org_import import OrgImportError, Problem, describe, parse_org_file
from storage.engine import Database
from storage.models import Person
from storage.org import IdentityConflict, IdentityConflictError, apply_org, list_people

__all__ = [
    "ImportReport",
    "OrgImportError",
    "format_problems",
    "format_report",
    "import_org_file",
    "org_tree_text",
    "render_tree",
]

# a chat message has a size limit; a 50,000-person first import must not list every email
MAX_LISTED = 20
MAX_PROBLEMS = 30


@dataclass(frozen=True)
class ImportReport:
    """What an org import changed, by email; ``changed_fields`` names the fields per changed email."""

    source: str
    total: int
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    changed_fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    deactivated: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)

    @property
    def nothing_changed(self) -> bool:
        """True when the database already matched the file."""
        return not (self.added or self.changed or self.deactivated or self.reactivated)


async def import_org_file(db: Database, path: Path, *, actor_id: int | None = None) -> ImportReport:
    """Check the file and apply it in one transaction; on any problem raise OrgImportError, write nothing."""
    rows = parse_org_file(path)
    async with db.sessions() as session, session.begin():
        try:
            changes = await apply_org(session, rows=rows, actor_id=actor_id, source=path.name)
        except IdentityConflictError as exc:
            # raised before any write, and leaving the block rolls the transaction back anyway
            raise OrgImportError([_conflict_problem(c) for c in exc.conflicts]) from exc
    return ImportReport(
        source=path.name,
        total=changes.total,
        added=changes.added,
        changed=changes.changed,
        changed_fields=changes.changed_fields,
        deactivated=changes.deactivated,
        reactivated=changes.reactivated,
    )


def _conflict_problem(conflict: IdentityConflict) -> Problem:
    params = {"platform": conflict.platform, "value": conflict.external_id, "owner": conflict.owner_email}
    return Problem("identity_taken", (conflict.line,), params)


# --- the import report -----------------------------------------------------------------------------


def format_report(report: ImportReport, locale: str) -> str:
    """The outcome of an import for the person who ran it."""
    counts = {"source": report.source, "total": report.total}
    if report.nothing_changed:
        return t("org.report_noop", locale, **counts)
    lines = [
        t(
            "org.report_summary",
            locale,
            **counts,
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
    ):
        if items:
            lines += ["", t(f"org.{key}", locale, count=len(items)), *_bullets(items, locale)]
    return "\n".join(lines)


def _with_fields(email: str, fields: Sequence[str], locale: str) -> str:
    names = t("org.list_sep", locale).join(t(f"org.field_{f}", locale) for f in fields)
    return t("org.report_changed_item", locale, email=email, fields=names)


def _bullets(items: Sequence[str], locale: str, limit: int = MAX_LISTED) -> list[str]:
    shown = [f"• {item}" for item in items[:limit]]
    if len(items) > limit:
        shown.append(t("org.more", locale, count=len(items) - limit))
    return shown


def format_problems(error: OrgImportError, locale: str) -> str:
    """Why an org file was refused: every problem with its line, and that nothing was changed."""
    title = t("org.problems_title", locale, count=len(error.problems))
    return "\n".join([title, *_bullets([describe(p, locale) for p in error.problems], locale, MAX_PROBLEMS)])


# --- the org tree ----------------------------------------------------------------------------------


async def org_tree_text(db: Database, *, locale: str) -> str:
    """The active org as an indented tree under each top manager, then everyone deactivated."""
    async with db.sessions() as session:
        people = await list_people(session, active_only=False)
    return render_tree(people, locale)


def render_tree(people: Sequence[Person], locale: str) -> str:
    """The tree text for ``people`` (active and inactive); pure, so it is easy to test and reuse."""
    active = sorted((p for p in people if p.active), key=_sort_key)
    inactive = sorted((p for p in people if not p.active), key=_sort_key)
    if not active and not inactive:
        return t("org.tree_empty", locale)
    ids = {p.id for p in active}
    reports: dict[int | None, list[Person]] = defaultdict(list)
    for person in active:
        # someone whose manager left (or was never set) is shown at the top rather than lost
        reports[person.manager_id if person.manager_id in ids else None].append(person)
    lines = [t("org.tree_title", locale, count=len(active))]
    seen: set[int | None] = set()
    for root in reports[None]:
        _branch(root, reports, "", "", seen, lines, locale)
    # only a manager loop written straight into the database can leave someone unreached
    for person in active:
        if person.id not in seen:
            _branch(person, reports, "", "", seen, lines, locale)
    if inactive:
        lines += ["", t("org.tree_inactive", locale, count=len(inactive))]
        lines += [f"• {_person_line(p, locale)}" for p in inactive]
    return "\n".join(lines)


def _sort_key(person: Person) -> tuple[str, str]:
    return (person.name.casefold(), person.email)


def _branch(
    person: Person,
    reports: dict[int | None, list[Person]],
    lead: str,
    indent: str,
    seen: set[int | None],
    lines: list[str],
    locale: str,
) -> None:
    seen.add(person.id)
    lines.append(f"{lead}{_person_line(person, locale)}")
    children = [c for c in reports.get(person.id, []) if c.id not in seen]
    for index, child in enumerate(children):
        last = index == len(children) - 1
        _branch(
            child,
            reports,
            indent + ("└─ " if last else "├─ "),
            indent + ("   " if last else "│  "),
            seen,
            lines,
            locale,
        )


def _person_line(person: Person, locale: str) -> str:
    details = t("org.detail_sep", locale).join(
        x for x in (person.title, person.department, person.timezone) if x
    )
    return t("org.tree_person", locale, name=person.name, email=person.email, details=details)
