"""What a person's task systems show for a period: done, in progress and overdue items with links.

Gathered when a ritual's step with ``evidence`` is first shown (kept with the assignment's answers, so
what was shown is what is counted, however the sources change meanwhile) and for ``me tasks``;
rendered as message fields whose values link to the items, which every platform shows natively.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.answers import normalize
from conversations.i18n import CatalogError, t
from conversations.messages import Field_
from conversations.periods import period_days
from conversations.ritual_model import Part
from storage import task_views
from storage.tasks import PersonTask

# the answers row (beside the step's own) that records what the step showed and what was counted
EVIDENCE = "__evidence__"
# the value of the "confirm the list" button
CONFIRM = "confirm"
DONE, IN_PROGRESS, OVERDUE = "done", "in_progress", "overdue"
BUCKETS = (DONE, IN_PROGRESS, OVERDUE)
# shown per bucket; the rest is "and N more" (a message is read in a chat, not a report)
CAPS = {DONE: 10, IN_PROGRESS: 5, OVERDUE: 5}
RECENT_DAYS = 14
_CLOSED = ("done", "cancelled")
# replies that confirm the list as it is ("1": the confirm button, numbered where there are no buttons)
_CONFIRMING = frozenset(
    {
        CONFIRM,
        "1",
        "confirm",
        "confirmed",
        "ok",
        "okay",
        "yes",
        "y",
        "correct",
        "done",
        "that's all",
        "thats all",
        "all good",
        "looks good",
        "lgtm",
        "none",
        "nothing",
        "nothing else",
        "no",
        "nope",
        "确认",
        "确定",
        "对",
        "是",
        "是的",
        "好",
        "好的",
        "可以",
        "没有",
        "没有了",
        "没了",
        "无",
        "完成",
    }
)

K = TypeVar("K")


@dataclass(frozen=True)
class Window:
    """A span of days in a person's time zone: ``[start, end)`` in UTC, and its first and last day."""

    start: datetime
    end: datetime
    first_day: date
    last_day: date


def _window(first: date, after: date, timezone: str) -> Window:
    zone = ZoneInfo(timezone)
    start = datetime.combine(first, time(0), zone).astimezone(UTC)
    end = datetime.combine(after, time(0), zone).astimezone(UTC)
    return Window(start, end, first, after - timedelta(days=1))


def period_window(period: str, label: str, *, timezone: str, now: datetime) -> Window:
    """The week or month a cycle's period label names, in the person's time zone."""
    first, after = period_days(period, label, today=now.astimezone(ZoneInfo(timezone)).date())
    return _window(first, after, timezone)


def recent_window(*, timezone: str, now: datetime, days: int = RECENT_DAYS) -> Window:
    """The last ``days`` days up to today, in the person's time zone."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    return _window(today - timedelta(days=days - 1), today + timedelta(days=1), timezone)


def due_day(due_at: datetime) -> date:
    """The calendar day an all-day due date names.

    Sources store it as midnight in their own time zone (which we do not know), so the moment is
    anywhere from 12 hours before to 12 hours after midnight UTC of that day; +12 h lands in it.
    """
    return (due_at.astimezone(UTC) + timedelta(hours=12)).date()


def is_overdue(task: PersonTask, *, now: datetime, zone: ZoneInfo) -> bool:
    """Open and past its due date: an all-day one only once the person's own day has moved past it."""
    if task.due_at is None or task.status_category in _CLOSED:
        return False
    if task.due_all_day:
        return due_day(task.due_at) < now.astimezone(zone).date()
    return task.due_at < now


def _safe_url(url: str | None) -> str | None:
    # a link is only ever to a web page: a source's odd value must not become a javascript: link
    return url if url and url.lower().startswith(("https://", "http://")) else None


@dataclass(frozen=True)
class Shown:
    """One item as shown: enough to show it again and to say later what was shown."""

    source: str
    key: str | None
    title: str
    url: str | None
    status: str | None = None
    # an all-day due date as YYYY-MM-DD, a due moment as ISO UTC; None when the item has none
    due: str | None = None

    @classmethod
    def of(cls, task: PersonTask) -> Shown:
        due = None
        if task.due_at is not None and task.due_all_day:
            due = due_day(task.due_at).isoformat()
        elif task.due_at is not None:
            due = task.due_at.astimezone(UTC).isoformat()
        return cls(task.source, task.external_key, task.title, _safe_url(task.url), task.status_raw, due)

    def label(self, limit: int = 300) -> str:
        """The item as a line of an answer: key and title."""
        text = f"{self.key} {self.title}" if self.key else self.title
        return text if len(text) <= limit else text[: limit - 1] + "…"

    def to_json(self) -> dict[str, Any]:
        """As stored with the answers."""
        return {
            "source": self.source,
            "key": self.key,
            "title": self.title,
            "url": self.url,
            "status": self.status,
            "due": self.due,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Shown:
        """Read back what ``to_json`` stored."""
        return cls(
            str(data.get("source") or ""),
            data.get("key"),
            str(data.get("title") or ""),
            _safe_url(data.get("url")),
            data.get("status"),
            data.get("due"),
        )


@dataclass(frozen=True)
class Evidence:
    """What the task systems showed for one person and period, and (once answered) what was counted."""

    sources: tuple[str, ...]
    first_day: date
    last_day: date
    items: dict[str, tuple[Shown, ...]]
    more: dict[str, int] = field(default_factory=dict)
    shown_at: str = ""
    # set when the person answered the step with the list in front of them
    confirmed_at: str | None = None
    counted: tuple[str, ...] = ()
    added: tuple[str, ...] = ()

    @property
    def done(self) -> tuple[Shown, ...]:
        """The done items shown: what confirming the list counts."""
        return self.items.get(DONE, ())

    @property
    def empty(self) -> bool:
        """Nothing to show at all."""
        return not any(self.items.get(b) for b in BUCKETS) and not any(self.more.values())

    def total(self, bucket: str) -> int:
        """How many items the bucket has, shown or not."""
        return len(self.items.get(bucket, ())) + self.more.get(bucket, 0)

    def answer(self, additions: Sequence[str], *, limit: int = 300) -> list[str]:
        """The step's answer: the done items shown, then what the person added that is not one of them."""
        counted = [s.label(limit) for s in self.done]
        known = {c.casefold() for c in counted}
        return counted + [a for a in additions if a.casefold() not in known]

    def additions(self, value: Any) -> list[str]:
        """What the person added to the list, from a stored answer (for a form's initial value)."""
        items = [str(v) for v in value] if isinstance(value, list) else []
        return items[len(self.counted) :] if items[: len(self.counted)] == list(self.counted) else items

    def confirmed(self, answer: Sequence[str], *, at: datetime, limit: int = 300) -> Evidence:
        """This record, saying the person answered with ``answer`` (made by ``answer()``) at ``at``."""
        counted = tuple(s.label(limit) for s in self.done)
        added = tuple(answer[len(counted) :])
        return replace(self, confirmed_at=at.astimezone(UTC).isoformat(), counted=counted, added=added)

    def to_json(self) -> dict[str, Any]:
        """As stored with the answers (JSON)."""
        return {
            "sources": list(self.sources),
            "from": self.first_day.isoformat(),
            "until": self.last_day.isoformat(),
            **{b: [s.to_json() for s in self.items.get(b, ())] for b in BUCKETS},
            "more": {b: self.more.get(b, 0) for b in BUCKETS},
            "shown_at": self.shown_at,
            "confirmed_at": self.confirmed_at,
            "counted": list(self.counted),
            "added": list(self.added),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Evidence:
        """Read back what ``to_json`` stored."""
        more = data.get("more") or {}
        return cls(
            sources=tuple(data.get("sources") or ()),
            first_day=date.fromisoformat(data["from"]),
            last_day=date.fromisoformat(data["until"]),
            items={b: tuple(Shown.from_json(s) for s in data.get(b) or ()) for b in BUCKETS},
            more={b: int(more.get(b) or 0) for b in BUCKETS},
            shown_at=str(data.get("shown_at") or ""),
            confirmed_at=data.get("confirmed_at"),
            counted=tuple(data.get("counted") or ()),
            added=tuple(data.get("added") or ()),
        )


def sort_out(
    tasks: Sequence[PersonTask], *, window: Window, now: datetime, timezone: str, sources: Sequence[str]
) -> Evidence:
    """Put each item in one bucket: done in the window, else overdue, else open and touched in it."""
    zone = ZoneInfo(timezone)
    found: dict[str, list[PersonTask]] = {b: [] for b in BUCKETS}
    for task in tasks:
        if task.status_category == "done":
            finished = task.completed_at or task.updated_at  # a source that does not say when: last change
            if window.start <= finished < window.end:
                found[DONE].append(task)
        elif task.status_category == "cancelled":
            continue
        elif is_overdue(task, now=now, zone=zone):
            found[OVERDUE].append(task)
        elif window.start <= task.updated_at < window.end:
            found[IN_PROGRESS].append(task)
    found[DONE].sort(key=lambda x: x.completed_at or x.updated_at, reverse=True)
    found[IN_PROGRESS].sort(key=lambda x: x.updated_at, reverse=True)
    found[OVERDUE].sort(key=lambda x: x.due_at or x.updated_at)  # the longest overdue first
    return Evidence(
        sources=tuple(sources),
        first_day=window.first_day,
        last_day=window.last_day,
        items={b: tuple(Shown.of(x) for x in found[b][: CAPS[b]]) for b in BUCKETS},
        more={b: max(0, len(found[b]) - CAPS[b]) for b in BUCKETS},
        shown_at=now.astimezone(UTC).isoformat(),
    )


async def gather(
    session: AsyncSession,
    *,
    wanted: Mapping[K, tuple[int, str, Window]],
    sources: Sequence[str],
    now: datetime,
) -> dict[K, Evidence]:
    """For each key, (person id, time zone, window) → what the sources show; one query for them all."""
    if not wanted:
        return {}
    since = min(w.start for _, _, w in wanted.values())
    tasks = await task_views.tasks_of_people(
        session,
        person_ids=[p for p, _, _ in wanted.values()],
        sources=sources,
        active_since=since,
        # an all-day due date can be up to a day "later" as a moment than where the person is
        open_due_before=now + timedelta(days=1),
    )
    return {
        key: sort_out(tasks.get(pid, []), window=window, now=now, timezone=tz, sources=sources)
        for key, (pid, tz, window) in wanted.items()
    }


def stored(answers: Mapping[str, tuple[Any, bool]]) -> Evidence | None:
    """What the assignment's evidence step showed, if it showed anything."""
    value = answers.get(EVIDENCE, (None, True))[0]
    return Evidence.from_json(value) if isinstance(value, dict) else None


def is_confirmation(text: str) -> bool:
    """Whether a reply confirms the list as it is (nothing to add)."""
    return normalize(text).lower().rstrip("!.。！ ") in _CONFIRMING


def form_part(part: Part, evidence: Evidence | None) -> Part:
    """The part as a form asks it: with done items shown, the evidence step may be left empty (the
    items are the answer)."""
    if evidence is None or not evidence.done:
        return part
    steps = tuple(s.model_copy(update={"required": False}) if s.evidence else s for s in part.steps)
    return part.model_copy(update={"steps": steps})


# ---- rendering --------------------------------------------------------------------------------


def source_name(source: str, locale: str) -> str:
    """Jira, 飞书任务, 钉钉待办 … (a source without a name of its own is shown as stored)."""
    try:
        return t(f"tasks.source_{source}", locale)
    except CatalogError:
        return source


def sources_text(sources: Sequence[str], locale: str) -> str:
    """The sources' names as one phrase."""
    return t("tasks.source_separator", locale).join(source_name(s, locale) for s in sources)


def _when(due: str, locale: str, zone: ZoneInfo) -> str:
    if len(due) == 10:  # an all-day date
        return t("tasks.due", locale, date=due)
    moment = datetime.fromisoformat(due).astimezone(zone)
    return t("tasks.due", locale, date=moment.strftime("%Y-%m-%d %H:%M"))


def fields(evidence: Evidence, locale: str, timezone: str) -> tuple[Field_, ...]:
    """One field per item (its title links to it), and "and N more" per bucket that has more."""
    zone = ZoneInfo(timezone)
    out: list[Field_] = []
    for bucket in BUCKETS:
        word = t(f"tasks.bucket_{bucket}", locale)
        for item in evidence.items.get(bucket, ()):
            label = f"{word} · {source_name(item.source, locale)} {item.key or ''}".rstrip()
            value = item.title
            if bucket == IN_PROGRESS and item.status:
                value += f" · {item.status}"
            if bucket == OVERDUE and item.due:
                value += f" · {_when(item.due, locale, zone)}"
            out.append(Field_(label=label, value=value, url=item.url))
        if evidence.more.get(bucket):
            out.append(Field_(label=word, value=t("tasks.more", locale, count=evidence.more[bucket])))
    return tuple(out)


def headline(evidence: Evidence, locale: str) -> str:
    """The line above the list: which sources, which days, how many of each (or that there is nothing)."""
    values = {
        "sources": sources_text(evidence.sources, locale),
        "period": t("tasks.period", locale, first=evidence.first_day, last=evidence.last_day),
    }
    if evidence.empty:
        return t("tasks.nothing", locale, **values)
    counts = {"done": evidence.total(DONE), "progress": evidence.total(IN_PROGRESS)}
    return t("tasks.head", locale, **values, **counts, overdue=evidence.total(OVERDUE))
