"""Read-only screens: open cycles and their completion, one person's rituals and answers."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.engine import Engine
from conversations.i18n import CatalogError, t
from conversations.messages import Action, Button, Field_, Message
from conversations.outgoing import PersonContext
from conversations.periods import local_date
from conversations.prompts import EDIT, RESUME, SUMMARY, answer_fields
from storage import assignments, cycles, outbox, people
from storage.models import Cycle
from storage.people import PersonRow

_MAX_LISTED = 20


def _percent(done: int, total: int) -> str:
    return f"{(100 * done // total) if total else 0}%"


async def _visible_rows(
    session: AsyncSession, cycle: Cycle, visible: set[int] | None
) -> list[cycles.CompletionRow]:
    """A cycle's assignments, only those about ``visible`` people when that is given (a manager)."""
    rows = await cycles.completion(session, cycle_id=cycle.id or 0)
    return [r for r in rows if visible is None or r.subject_id in visible]


async def _cycle_line(
    session: AsyncSession, engine: Engine, cycle: Cycle, locale: str, visible: set[int] | None
) -> Field_:
    ritual = await engine.ritual(session, cycle.ritual_id)
    rows = await _visible_rows(session, cycle, visible)
    done = sum(1 for r in rows if r.status == "submitted")
    label = f"#{cycle.id} {ritual.title.get(locale)} {cycle.period}"
    value = t("status.completion", locale, done=done, total=len(rows), percent=_percent(done, len(rows)))
    return Field_(label=label, value=value)


async def open_cycles(
    session: AsyncSession, engine: Engine, locale: str, visible: set[int] | None
) -> Message:
    """One line per open cycle with its completion (only ``visible`` people for a manager)."""
    found = await cycles.open_cycles(session)
    if not found:
        return Message(text=t("status.no_open_cycles", locale))
    fields = tuple([await _cycle_line(session, engine, c, locale, visible) for c in found])
    key = "status.open_cycles_team" if visible is not None else "status.open_cycles"
    return Message(title=t(key, locale), text=t("status.detail_hint", locale), fields=fields)


def _platform_name(platform: str, locale: str) -> str:
    try:
        return t(f"org.platform_{platform}", locale).strip()
    except CatalogError:  # a platform without a display name (the console)
        return platform


def _names(names: list[str], locale: str) -> str:
    listed = t("status.name_separator", locale).join(names[:_MAX_LISTED])
    if len(names) > _MAX_LISTED:
        return t("status.names_more", locale, names=listed, count=len(names) - _MAX_LISTED)
    return listed


async def _delivery_fields(
    session: AsyncSession, cycle: Cycle, locale: str, visible: set[int] | None
) -> list[Field_]:
    """Who in the cycle a platform cannot message, and its messages not delivered yet, with why."""
    cycle_id = cycle.id or 0
    fields: list[Field_] = []
    unreachable: dict[str, dict[int, str]] = {}
    for person in await cycles.unreachable_people(session, cycle_id=cycle_id):
        if visible is None or person.subject_id in visible:
            unreachable.setdefault(person.platform, {})[person.person_id] = person.name
    for platform, found in sorted(unreachable.items()):
        name = _platform_name(platform, locale)
        names = _names(sorted(found.values()), locale)
        fields.append(
            Field_(
                label=t("status.unreachable_on", locale, platform=name),
                value=t("status.unreachable_people", locale, names=names, platform=name),
            )
        )
    counts: dict[tuple[str, str, str], int] = {}
    for row in await cycles.undelivered(session, cycle_id=cycle_id, by_subject=visible is not None):
        if visible is None or row.subject_id in visible:
            key = (row.status, row.platform, row.reason if row.reason in outbox.REASONS else "failed")
            counts[key] = counts.get(key, 0) + row.count
    # waiting first (it resolves itself or needs a hand now), then given up; the most first
    for (status, platform, reason), count in sorted(
        counts.items(), key=lambda c: (c[0][0] != "pending", -c[1])
    ):
        name = _platform_name(platform, locale)
        why = t(f"status.reason_{reason}", locale, platform=name)
        fields.append(
            Field_(
                label=t(f"status.undelivered_{status}", locale, count=count, platform=name),
                value=t(f"status.undelivered_{status}_why", locale, why=why),
            )
        )
    return fields


async def cycle_detail(
    session: AsyncSession,
    engine: Engine,
    cycle: Cycle,
    locale: str,
    visible: set[int] | None,
    *,
    timezone: str,
) -> Message:
    """Completion of one cycle by department, who cannot be messaged and which messages wait (and why),
    and who has not answered yet."""
    ritual = await engine.ritual(session, cycle.ritual_id)
    rows = await _visible_rows(session, cycle, visible)
    by_dept: dict[str, list[int]] = {}
    for r in rows:
        counts = by_dept.setdefault(r.department or "—", [0, 0])
        counts[1] += 1
        counts[0] += r.status == "submitted"
    fields = [
        Field_(label=dept, value=t("status.completion", locale, done=d, total=n, percent=_percent(d, n)))
        for dept, (d, n) in sorted(by_dept.items())
    ]
    fields.extend(await _delivery_fields(session, cycle, locale, visible))
    waiting = [r for r in rows if r.status != "submitted"]
    for r in waiting[:_MAX_LISTED]:
        who = f"{r.name} <{r.email}>" + (" ⟶ " + t("status.manager_part", locale) if r.part != "self" else "")
        fields.append(Field_(label=who, value=t(f"status.state_{r.status}", locale)))
    done = sum(1 for r in rows if r.status == "submitted")
    text = t(
        "status.cycle_head",
        locale,
        status=t(f"status.cycle_{cycle.status}", locale),
        done=done,
        total=len(rows),
        percent=_percent(done, len(rows)),
        due=local_date(cycle.due_at, timezone),
    )
    if len(waiting) > _MAX_LISTED:
        text += "\n" + t("status.more_waiting", locale, count=len(waiting) - _MAX_LISTED)
    title = f"#{cycle.id} {ritual.title.get(locale)} {cycle.period}"
    return Message(title=title, text=text, fields=tuple(fields))


async def my_rituals(session: AsyncSession, engine: Engine, person: PersonContext) -> Message:
    """``me``: what is open for me, where I am in it, and what I submitted lately."""
    locale = person.locale
    fields = []
    for a in await assignments.for_person(session, person_id=person.id, limit=10):
        ritual = await engine.ritual(session, a.ritual_id)
        part = ritual.part(a.part)
        where = ""
        if a.status in assignments.HOLDING and a.current_step not in (None, SUMMARY, EDIT):
            n = [s.id for s in part.steps].index(a.current_step or "") + 1
            where = " · " + t("status.at_question", locale, n=n, total=len(part.steps))
        label = f"{ritual.title.get(locale)} {a.period}"
        fields.append(Field_(label=label, value=t(f"status.state_{a.status}", locale) + where))
    roles = ", ".join(
        t(f"cmd.role_{r}", locale) for r in sorted(person.roles) if r in ("employee", "manager", "hr")
    )
    text = t("status.me_head", locale, name=person.name, email=person.email, roles=roles or "—")
    if not fields:
        text += "\n" + t("status.me_nothing", locale)
    return Message(title=t("status.me_title", locale), text=text, fields=tuple(fields))


async def person_answers(session: AsyncSession, engine: Engine, subject: PersonRow, locale: str) -> Message:
    """A person's latest submitted answers (for their manager, HR or themself)."""
    submitted = await assignments.for_person(session, person_id=subject.id, statuses=("submitted",), limit=3)
    fields: list[Field_] = []
    for a in submitted:
        ritual = await engine.ritual(session, a.ritual_id)
        fields.append(Field_(label=f"— {ritual.title.get(locale)} {a.period} —", value=""))
        answers = await assignments.answers_for(session, assignment_id=a.id)
        fields.extend(answer_fields(ritual.part(a.part), answers, locale, subject.name))
    text = (
        t("status.answers_of", locale, name=subject.name)
        if fields
        else t("status.no_answers", locale, name=subject.name)
    )
    return Message(title=subject.name, text=text, fields=tuple(fields))


async def home(session: AsyncSession, engine: Engine, person: PersonContext) -> Message:
    """The person's home screen: their check-ins with a button to continue, their team, HR's cycles."""
    locale = person.locale
    mine = await my_rituals(session, engine, person)
    fields = list(mine.fields)
    buttons = []
    holding = await assignments.holding_conversation(session, person_id=person.id)
    if holding is not None:
        ritual = await engine.ritual(session, holding.ritual_id)
        action = Action(assignment_id=holding.id, step=RESUME, version=holding.version, value="resume")
        label = t("status.home_continue", locale, title=ritual.title.get(locale))
        buttons.append(Button(label=label, action=action, primary=True))
    reports = await people.reports_of(session, manager_id=person.id)
    if person.is_hr or reports:
        overview = await open_cycles(session, engine, locale, None if person.is_hr else reports)
        fields.append(Field_(label=overview.title or "", value=overview.text if not overview.fields else ""))
        fields.extend(overview.fields)
    latest = await person_answers(session, engine, person, locale)
    fields.extend(latest.fields[:12])
    return Message(
        title=t("status.home_title", locale),
        text=mine.text,
        fields=tuple(fields),
        buttons=tuple(buttons),
        meta={"surface": "home"},
    )
