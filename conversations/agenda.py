"""What a 1:1 agenda is made from: the person's latest check-in answers, their task evidence (done,
overdue, stuck), the pair's open action items, recent key events, past agendas and the person's role.

``gather`` reads it all (through ``storage.agenda_data``) into one ``AgendaData``; the rules
(``agenda_rules``) pick the topics from it and ``agenda_render`` shows it. Nothing here writes.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.ritual_model import Ritual, Step
from conversations.task_evidence import due_day, is_overdue
from storage import agenda_data
from storage.agenda_data import ActionRow, EventRow, Profile
from storage.cycles import ritual_body
from storage.people import PersonRow
from storage.tasks import PersonTask

WEEKLY, MONTHLY, QUARTERLY = "weekly_recap", "monthly_review", "quarterly_assessment"
# which steps of the built-in question sets say what: a question set of one's own may name its steps
# differently, and then simply adds nothing to that highlight
WINS = ("wins", "highlights", "achievements")
RATINGS = ("week_rating", "self_rating")
BLOCKERS = ("blockers", "challenges")
SUPPORT = ("support_needed",)
GOALS = ("goal_status", "goals_met")
NEXT = ("next_week", "next_month", "next_quarter")
DISCUSS = ("discuss_in_one_on_one",)


@dataclass(frozen=True)
class AgendaSettings:
    """The numbers the agenda rules use (settings; these are the defaults)."""

    stuck_days: int = 7  # in progress without an update for longer than this: stuck
    period_days: int = 14  # "done lately" looks back this far when the pair has no cadence of its own
    event_days: int = 30  # key events this recent are shown
    growth_lookback: int = 3  # career growth comes up when none of the last this many 1:1s had it
    recap_days: int = 70  # check-ins of cycles opened this recently are read
    meeting_time: time = time(10, 0)  # a 1:1 set for a day without a time is at this local time


# the settings each engine was configured with (the composition root's choice; tests build several)
_CONFIGURED: weakref.WeakKeyDictionary[object, AgendaSettings] = weakref.WeakKeyDictionary()


def configure(owner: object, settings: AgendaSettings) -> None:
    """Use ``settings`` for agendas made by commands of ``owner`` (the Engine)."""
    _CONFIGURED[owner] = settings


def settings_for(owner: object) -> AgendaSettings:
    """The settings configured for ``owner``, else the defaults."""
    return _CONFIGURED.get(owner, AgendaSettings())


@dataclass(frozen=True)
class Recap:
    """One submitted check-in: the question set it was answered on and the answers."""

    ritual: Ritual
    period: str
    submitted_at: datetime
    answers: Mapping[str, Any]

    @property
    def key(self) -> str:
        return self.ritual.key

    def find(self, steps: Sequence[str]) -> tuple[Step, Any] | None:
        """The first of ``steps`` this check-in answered, with its answer."""
        part = self.ritual.parts[0]
        for step_id in steps:
            step = part.step(step_id)
            if step is not None and step_id in self.answers:
                return step, self.answers[step_id]
        return None

    def text(self, steps: Sequence[str]) -> str:
        """The answer to the first of ``steps`` as one string ("" when none)."""
        found = self.find(steps)
        if found is None:
            return ""
        value = found[1]
        return "; ".join(str(v) for v in value) if isinstance(value, list) else str(value)


@dataclass(frozen=True)
class Item:
    """A task item as the agenda counts it; ``days``: how long overdue, or since its last update."""

    source: str
    key: str | None
    title: str
    url: str | None
    project: str
    status: str | None
    due: date | None
    days: int

    @property
    def name(self) -> str:
        """How a reason names it: its key, else its title (cut)."""
        return self.key or (self.title if len(self.title) <= 40 else self.title[:39] + "…")


@dataclass(frozen=True)
class ActionItemLine:
    """An open action item; ``past_due`` when its day has passed."""

    text: str
    owner: str
    due_on: date | None
    past_due: bool


@dataclass(frozen=True)
class AgendaData:
    """Everything the rules and the card look at, for one person and their manager, at ``now``."""

    now: datetime
    person: Profile
    timezone: str  # the person's: "today", overdue and action-item days are theirs
    manager_name: str
    meeting_at: datetime | None
    settings: AgendaSettings
    recaps: tuple[Recap, ...] = ()  # newest first
    unanswered: tuple[str, ...] = ()  # weekly recaps missed since the last one answered, newest first
    sources: tuple[str, ...] = ()
    period_days: int = 14
    done: tuple[Item, ...] = ()
    in_progress: int = 0
    overdue: tuple[Item, ...] = ()  # the longest overdue first
    stuck: tuple[Item, ...] = ()  # the longest idle first
    actions: tuple[ActionItemLine, ...] = ()
    events: tuple[EventRow, ...] = ()
    # the topics of the pair's last 1:1 agendas, newest first (one tuple per meeting)
    past_topics: tuple[tuple[str, ...], ...] = field(default_factory=tuple)

    @property
    def today(self) -> date:
        return self.now.astimezone(zone_of(self.timezone)).date()

    def latest(self, ritual_key: str) -> Recap | None:
        """The newest submitted check-in of ``ritual_key``."""
        return next((r for r in self.recaps if r.key == ritual_key), None)


def zone_of(timezone: str) -> ZoneInfo:
    """The person's time zone; UTC for a name nobody knows (an org-file mistake must not stop an agenda)."""
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def project_of(task: PersonTask) -> str:
    """The project an item belongs to: its container (Jira project, tasklist), else its key's prefix."""
    if task.container:
        return task.container
    if task.external_key and "-" in task.external_key:
        return task.external_key.rsplit("-", 1)[0]
    return task.source


def sort_items(
    tasks: Sequence[PersonTask], *, now: datetime, timezone: str, done_since: datetime, stuck_days: int
) -> tuple[list[Item], int, list[Item], list[Item]]:
    """Done since ``done_since``; how many in progress; overdue; stuck (in progress, not overdue, not
    updated for more than ``stuck_days``)."""
    zone = zone_of(timezone)
    today = now.astimezone(zone).date()
    done: list[Item] = []
    overdue: list[Item] = []
    stuck: list[Item] = []
    in_progress = 0

    def item(task: PersonTask, due: date | None, days: int) -> Item:
        return Item(
            task.source, task.external_key, task.title, task.url, project_of(task), task.status_raw, due, days
        )

    for task in tasks:
        due = None
        if task.due_at is not None:
            due = due_day(task.due_at) if task.due_all_day else task.due_at.astimezone(zone).date()
        if task.status_category == "done":
            if (task.completed_at or task.updated_at) >= done_since:
                done.append(item(task, due, 0))
            continue
        if task.status_category == "cancelled":
            continue
        in_progress += task.status_category == "in_progress"
        if is_overdue(task, now=now, zone=zone):
            overdue.append(item(task, due, max(0, (today - due).days) if due else 0))
        elif task.status_category == "in_progress" and now - task.updated_at > timedelta(days=stuck_days):
            stuck.append(item(task, due, (now - task.updated_at).days))
    overdue.sort(key=lambda i: (-i.days, i.name))
    stuck.sort(key=lambda i: (-i.days, i.name))
    return done, in_progress, overdue, stuck


async def gather(
    session: AsyncSession,
    *,
    person: PersonRow,
    manager: PersonRow | None,
    now: datetime,
    sources: Sequence[str],
    settings: AgendaSettings,
    period_days: int | None = None,
    meeting_at: datetime | None = None,
) -> AgendaData | None:
    """Read what the agenda about ``person`` (with ``manager``, their 1:1 partner) is made of; None when
    the person is not in the org data."""
    profile = await agenda_data.profile(session, person_id=person.id)
    if profile is None:
        return None
    days = period_days or settings.period_days
    runs = await agenda_data.ritual_runs(
        session, person_id=person.id, since=now - timedelta(days=settings.recap_days)
    )
    submitted = [r for r in runs if r.status == "submitted" and r.submitted_at is not None]
    answers = await agenda_data.answers_of(session, assignment_ids=[r.assignment_id for r in submitted])
    rituals: dict[int, Ritual] = {}
    recaps: list[Recap] = []
    for run in submitted:
        if run.ritual_id not in rituals:
            rituals[run.ritual_id] = Ritual.model_validate(
                await ritual_body(session, ritual_id=run.ritual_id)
            )
        assert run.submitted_at is not None
        recaps.append(
            Recap(rituals[run.ritual_id], run.period, run.submitted_at, answers.get(run.assignment_id, {}))
        )
    unanswered: list[str] = []
    for run in (r for r in runs if r.ritual_key == WEEKLY):
        if run.status == "submitted":
            break
        if run.due_at is not None and run.due_at < now:
            unanswered.append(run.period)
    done_since = now - timedelta(days=days)
    tasks = await agenda_data.task_items(
        session,
        person_id=person.id,
        sources=sources,
        done_since=done_since,
        open_due_before=now + timedelta(days=1),
    )
    done, in_progress, overdue, stuck = sort_items(
        tasks, now=now, timezone=person.timezone, done_since=done_since, stuck_days=settings.stuck_days
    )
    today = now.astimezone(zone_of(person.timezone)).date()
    actions: list[ActionRow] = []
    past: list[agenda_data.PastMeeting] = []
    if manager is not None:
        actions = await agenda_data.open_actions(session, manager_id=manager.id, report_id=person.id)
        past = await agenda_data.past_meetings(
            session, manager_id=manager.id, report_id=person.id, before=now, limit=settings.growth_lookback
        )
    events = await agenda_data.key_events(
        session, subject_id=person.id, since=now - timedelta(days=settings.event_days)
    )
    return AgendaData(
        now=now,
        person=profile,
        timezone=person.timezone,
        manager_name=manager.name if manager is not None else "",
        meeting_at=meeting_at,
        settings=settings,
        recaps=tuple(recaps),
        unanswered=tuple(unanswered),
        sources=tuple(sources),
        period_days=days,
        done=tuple(done),
        in_progress=in_progress,
        overdue=tuple(overdue),
        stuck=tuple(stuck),
        actions=tuple(
            ActionItemLine(a.text, a.owner_name, a.due_on, a.due_on is not None and a.due_on < today)
            for a in actions
        ),
        events=tuple(events),
        past_topics=tuple(topic_rules(m.agenda) for m in past),
    )


def topic_rules(agenda: Mapping[str, Any]) -> tuple[str, ...]:
    """The topics (``growth``, ``overdue`` …) a stored agenda suggested."""
    topics = agenda.get("topics")
    if not isinstance(topics, list):
        return ()
    return tuple(str(t.get("topic")) for t in topics if isinstance(t, dict) and t.get("topic"))
