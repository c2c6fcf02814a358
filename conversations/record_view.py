"""An employee record as one neutral Message: recent check-ins, task evidence, key events, feedback
received, 1:1 action items and assessment ratings, each section capped with "and N more".

Whether the reader may see a section is decided before (``conversations.permissions``): this module
shows the kinds it is given, and says which it showed (for the audit entry).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from conversations import peer_feedback, task_evidence
from conversations.answers import format_answer
from conversations.engine import Engine
from conversations.i18n import t
from conversations.messages import Field_, Message
from conversations.periods import local_date
from conversations.permissions import RecordKind
from conversations.prompts import answer_fields
from conversations.ritual_model import StepType
from storage import record_data
from storage.people import PersonRow

# the record's sections, in the order shown (the manager's 1:1 notes belong to the 1:1 screens)
SECTIONS = (
    RecordKind.RITUAL_ANSWERS,
    RecordKind.TASK_EVIDENCE,
    RecordKind.KEY_EVENTS,
    RecordKind.PEER_FEEDBACK,
    RecordKind.ACTION_ITEMS,
    RecordKind.ASSESSMENT_RATINGS,
)
TASK_DAYS = 30
KEY_EVENT_DAYS = 90
DONE_ACTION_DAYS = 30
# a record is read in a chat, not printed: a few of each, and "and N more"
RITUALS, ANSWERS_EACH = 3, 2
TASK_CAPS = {task_evidence.DONE: 5, task_evidence.IN_PROGRESS: 3, task_evidence.OVERDUE: 5}
KEY_EVENTS, FEEDBACK, OPEN_ACTIONS, DONE_ACTIONS, ASSESSMENTS = 5, 5, 5, 3, 4
_TEXT = 300  # characters of one free-text line (a key event, an action item)


@dataclass(frozen=True)
class Record:
    """The record as shown, and the kinds it showed."""

    message: Message
    kinds: tuple[RecordKind, ...]


@dataclass(frozen=True)
class _Reading:
    """One reader reading one record: what every section needs."""

    session: AsyncSession
    engine: Engine
    sources: tuple[str, ...]
    viewer: PersonRow
    subject: PersonRow
    now: datetime

    @property
    def locale(self) -> str:
        return self.viewer.locale

    def t(self, key: str, **values: object) -> str:
        return t(f"record.{key}", self.viewer.locale, **values)

    def day(self, moment: datetime | None) -> str:
        """A moment as a date where the reader is."""
        return local_date(moment, self.viewer.timezone)


def _clip(text: str, limit: int = _TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _header(r: _Reading, kind: RecordKind, value: str = "", **values: object) -> Field_:
    return Field_(label=r.t(f"section_{kind}", **values), value=value)


async def _ritual_answers(r: _Reading) -> list[Field_]:
    """The latest check-in of each ritual the person submitted, its first answers."""
    found = await record_data.latest_own(r.session, subject_id=r.subject.id, limit=RITUALS)
    if not found:
        return [_header(r, RecordKind.RITUAL_ANSWERS, r.t("none_ritual_answers"))]
    answers = await record_data.answers_of(r.session, assignment_ids=[s.id for s in found])
    out = [_header(r, RecordKind.RITUAL_ANSWERS)]
    for submitted in found:
        ritual = await r.engine.ritual(r.session, submitted.ritual_id)
        part = ritual.part(submitted.part)
        given = answers.get(submitted.id, {})
        lines = [
            line
            for step, line in zip(
                part.steps, answer_fields(part, given, r.locale, r.subject.name), strict=True
            )
            if given.get(step.id, (None, True))[0] is not None
        ]
        title = f"{ritual.title.get(r.locale)} {submitted.period}"
        out.append(Field_(label=title, value=r.t("submitted_on", date=r.day(submitted.submitted_at))))
        out.extend(line.model_copy(update={"value": _clip(line.value)}) for line in lines[:ANSWERS_EACH])
        if len(lines) > ANSWERS_EACH:
            more = r.t("answers_more", count=len(lines) - ANSWERS_EACH, email=r.subject.email)
            out.append(Field_(label=title, value=more))
    return out


def _capped(evidence: task_evidence.Evidence) -> task_evidence.Evidence:
    """The evidence with fewer items per bucket than a ritual shows (the rest counted as more)."""
    items = {b: evidence.items.get(b, ())[: TASK_CAPS[b]] for b in task_evidence.BUCKETS}
    more = {
        b: evidence.total(b) - len(items[b])
        for b in task_evidence.BUCKETS
        if evidence.total(b) > len(items[b])
    }
    return replace(evidence, items=items, more=more)


async def _task_evidence(r: _Reading) -> list[Field_]:
    """What the task systems show for the person's last 30 days (their days), and anything overdue."""
    if not r.sources:
        return [_header(r, RecordKind.TASK_EVIDENCE, r.t("no_task_sources"), days=TASK_DAYS)]
    window = task_evidence.recent_window(timezone=r.subject.timezone, now=r.now, days=TASK_DAYS)
    found = await task_evidence.gather(
        r.session, wanted={0: (r.subject.id, r.subject.timezone, window)}, sources=r.sources, now=r.now
    )
    evidence = found[0]
    values = {
        "sources": task_evidence.sources_text(evidence.sources, r.locale),
        "period": t("tasks.period", r.locale, first=evidence.first_day, last=evidence.last_day),
    }
    if evidence.empty:
        return [_header(r, RecordKind.TASK_EVIDENCE, r.t("tasks_nothing", **values), days=TASK_DAYS)]
    head = r.t(
        "tasks_head",
        **values,
        done=evidence.total(task_evidence.DONE),
        progress=evidence.total(task_evidence.IN_PROGRESS),
        overdue=evidence.total(task_evidence.OVERDUE),
    )
    items = task_evidence.fields(_capped(evidence), r.locale, r.viewer.timezone)
    return [_header(r, RecordKind.TASK_EVIDENCE, head, days=TASK_DAYS), *items]


async def _key_events(r: _Reading) -> list[Field_]:
    """Key events noted about the person in the last 90 days, newest first."""
    since = r.now - timedelta(days=KEY_EVENT_DAYS)
    rows, total = await record_data.key_events(
        r.session, subject_id=r.subject.id, since=since, limit=KEY_EVENTS
    )
    if not rows:
        return [_header(r, RecordKind.KEY_EVENTS, r.t("none_key_events"), days=KEY_EVENT_DAYS)]
    out = [_header(r, RecordKind.KEY_EVENTS, days=KEY_EVENT_DAYS)]
    for event in rows:
        label = r.t("event_label", date=r.day(event.created_at), author=event.author_name)
        out.append(Field_(label=label, value=_clip(event.text)))
    if total > len(rows):
        out.append(Field_(label=out[0].label, value=r.t("more", count=total - len(rows))))
    return out


async def _peer_feedback(r: _Reading) -> list[Field_]:
    """Feedback colleagues gave the person, as the peer feedback module lets this reader see it
    (anonymous items without names, and only once enough people gave some)."""
    received = await peer_feedback.received_for(
        r.session, recipient_id=r.subject.id, viewer_id=r.viewer.id, locale=r.locale
    )
    lines: list[Field_] = []
    if received.allowed:
        for piece in received.named:
            giver = r.t("feedback_you") if piece.mine else piece.giver
            text = r.t("feedback_separator").join(item.text for item in piece.items)
            lines.append(
                Field_(label=r.t("feedback_from", giver=giver, date=piece.given_on), value=_clip(text))
            )
        anonymous = r.t("feedback_anonymous")
        lines.extend(Field_(label=anonymous, value=_clip(item.text)) for item in received.anonymous)
    if not lines and not received.waiting:
        return [_header(r, RecordKind.PEER_FEEDBACK, r.t("none_peer_feedback"))]
    out = [_header(r, RecordKind.PEER_FEEDBACK), *lines[:FEEDBACK]]
    if len(lines) > FEEDBACK:
        out.append(Field_(label=out[0].label, value=r.t("more", count=len(lines) - FEEDBACK)))
    if received.waiting:
        waiting = r.t("feedback_waiting", count=received.waiting, threshold=peer_feedback.ANONYMOUS_THRESHOLD)
        out.append(Field_(label=r.t("feedback_anonymous"), value=waiting))
    return out


async def _action_items(r: _Reading) -> list[Field_]:
    """The person's 1:1 action items (theirs and their manager's): open ones, then those done lately."""
    found = await record_data.action_items(
        r.session,
        report_id=r.subject.id,
        done_since=r.now - timedelta(days=DONE_ACTION_DAYS),
        limit_open=OPEN_ACTIONS,
        limit_done=DONE_ACTIONS,
    )
    if not found.open and not found.done:
        return [_header(r, RecordKind.ACTION_ITEMS, r.t("none_action_items"), days=DONE_ACTION_DAYS)]
    out = [_header(r, RecordKind.ACTION_ITEMS, days=DONE_ACTION_DAYS)]
    today = r.now.astimezone(ZoneInfo(r.subject.timezone)).date()
    for item in found.open:
        label = r.t("action_open", owner=item.owner_name)
        if item.due_on is not None:
            when = "action_overdue" if item.due_on < today else "action_due"
            label += " · " + r.t(when, date=item.due_on.isoformat())
        out.append(Field_(label=label, value=_clip(item.text)))
    if found.open_total > len(found.open):
        out.append(Field_(label=out[0].label, value=r.t("more", count=found.open_total - len(found.open))))
    for item in found.done:
        label = r.t("action_done", date=r.day(item.done_at), owner=item.owner_name)
        out.append(Field_(label=label, value=_clip(item.text)))
    if found.done_total > len(found.done):
        out.append(Field_(label=out[0].label, value=r.t("more", count=found.done_total - len(found.done))))
    return out


async def _assessment_ratings(r: _Reading) -> list[Field_]:
    """The ratings of each quarterly assessment about the person, newest first: theirs and their
    manager's."""
    keys = [k for k, ritual in r.engine.catalog.rituals.items() if ritual.period == "quarter"]
    # four a year, two parts each: reading all of them is small, and "and N more" is then exact
    found = await record_data.submitted_about(r.session, subject_id=r.subject.id, ritual_keys=keys, limit=400)
    by_cycle: dict[int, list[record_data.Submitted]] = {}
    for submitted in found:
        by_cycle.setdefault(submitted.cycle_id, []).append(submitted)
    shown = list(by_cycle.values())[:ASSESSMENTS]
    answers = await record_data.answers_of(r.session, assignment_ids=[s.id for parts in shown for s in parts])
    out = [_header(r, RecordKind.ASSESSMENT_RATINGS)]
    for parts in shown:
        said: list[str] = []
        for submitted in parts:
            part = (await r.engine.ritual(r.session, submitted.ritual_id)).part(submitted.part)
            given = answers.get(submitted.id, {})
            who = "rating_self" if part.audience == "self" else "rating_manager"
            said.extend(
                r.t(who, rating=format_answer(step, given[step.id][0], r.locale))
                for step in part.steps
                if step.type is StepType.RATING and given.get(step.id, (None, True))[0] is not None
            )
        ritual = await r.engine.ritual(r.session, parts[0].ritual_id)
        title = f"{ritual.title.get(r.locale)} {parts[0].period}"
        out.append(Field_(label=title, value=r.t("rating_separator").join(said) or "—"))
    if not shown:
        return [_header(r, RecordKind.ASSESSMENT_RATINGS, r.t("none_assessment_ratings"))]
    if len(by_cycle) > len(shown):
        out.append(Field_(label=out[0].label, value=r.t("more", count=len(by_cycle) - len(shown))))
    return out


_Section = Callable[[_Reading], Awaitable[list[Field_]]]
_SECTIONS: dict[RecordKind, _Section] = {
    RecordKind.RITUAL_ANSWERS: _ritual_answers,
    RecordKind.TASK_EVIDENCE: _task_evidence,
    RecordKind.KEY_EVENTS: _key_events,
    RecordKind.PEER_FEEDBACK: _peer_feedback,
    RecordKind.ACTION_ITEMS: _action_items,
    RecordKind.ASSESSMENT_RATINGS: _assessment_ratings,
}


async def build(
    session: AsyncSession,
    *,
    engine: Engine,
    sources: Sequence[str],
    viewer: PersonRow,
    subject: PersonRow,
    kinds: Sequence[RecordKind],
    now: datetime,
) -> Record:
    """``subject``'s record as ``viewer`` reads it (in their language and time zone): the sections of
    ``kinds`` (those the viewer may read), in the record's order."""
    reading = _Reading(session, engine, tuple(sources), viewer, subject, now)
    fields: list[Field_] = []
    shown: list[RecordKind] = []
    for kind in SECTIONS:
        if kind not in kinds:
            continue
        fields.extend(await _SECTIONS[kind](reading))
        shown.append(kind)
    own = viewer.id == subject.id
    text = reading.t("intro_own") if own else reading.t("intro_other", name=subject.name)
    message = Message(title=reading.t("title", name=subject.name), text=text, fields=tuple(fields))
    return Record(message, tuple(shown))
