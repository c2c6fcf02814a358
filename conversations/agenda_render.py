"""The 1:1 agenda card as a neutral Message: the latest check-in highlights, task evidence with links,
open action items, key events, then the three suggested topics with their reasons.

Kept small enough for every platform without any renderer cutting it (DingTalk shows about 5,000
characters, Slack 50 blocks): lists are capped, and if the card is still long, the least needed
lines go first (done items, then key events …); the topics are never cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from conversations.agenda import (
    BLOCKERS,
    GOALS,
    MONTHLY,
    QUARTERLY,
    RATINGS,
    SUPPORT,
    WEEKLY,
    WINS,
    AgendaData,
    Item,
    Recap,
    zone_of,
)
from conversations.agenda_rules import Topic
from conversations.i18n import t
from conversations.messages import Field_, Message, Tone
from conversations.prompts import format_answer
from conversations.task_evidence import source_name, sources_text
from conversations.topic_rewriter import TopicText

CAPS = {"done": 3, "overdue": 4, "stuck": 3, "actions": 4, "events": 3}
BUDGET = 4_000  # characters of text, labels, values and link targets: well inside DingTalk's 5,000
_VALUE = 160
# what goes first when the card is too long (the topics never go)
_DROP_ORDER = ("done", "events", "stuck", "actions", "overdue", "highlights")
_HIGHLIGHTS = (
    ("wins", WINS),
    ("rating", RATINGS),
    ("blockers", BLOCKERS),
    ("support", SUPPORT),
    ("goals", GOALS),
)


def _clip(text: str, limit: int = _VALUE) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _local(moment: datetime, timezone: str, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return moment.astimezone(zone_of(timezone)).strftime(fmt)


def _answer(recap: Recap, steps: Sequence[str], locale: str) -> str:
    found = recap.find(steps)
    return _clip(format_answer(found[0], found[1], locale)) if found is not None else ""


def highlights(data: AgendaData, locale: str) -> list[Field_]:
    """The latest weekly, monthly and quarterly answers that matter for a 1:1, and the rating trend."""
    fields: list[Field_] = []
    ratings = [
        (r.period, r.answers.get(s))
        for r in data.recaps
        if r.key == WEEKLY
        for s in RATINGS
        if isinstance(r.answers.get(s), int)
    ][:4]
    for ritual in (WEEKLY, MONTHLY, QUARTERLY):
        recap = data.latest(ritual)
        if recap is None:
            continue
        title = recap.ritual.title.get(locale)
        for name, steps in _HIGHLIGHTS:
            if name == "rating" and ritual == WEEKLY:
                # a week's rating alone says little: the last few, oldest first, show where it goes
                if ratings:
                    trend = " → ".join(f"{r}/5" for _, r in reversed(ratings))
                    fields.append(Field_(label=t("agenda.hl_trend", locale, count=len(ratings)), value=trend))
                continue
            value = _answer(recap, steps, locale)
            if value:
                label = t(f"agenda.hl_{name}", locale, ritual=title, period=recap.period)
                fields.append(Field_(label=label, value=value))
    if data.unanswered:
        periods = t("agenda.list_separator", locale).join(reversed(data.unanswered))
        fields.append(Field_(label=t("agenda.hl_unanswered", locale), value=periods))
    return fields


def _item(bucket: str, item: Item, locale: str) -> Field_:
    words = [t(f"agenda.bucket_{bucket}", locale), item.key or source_name(item.source, locale)]
    if bucket == "overdue":
        words.append(t("agenda.days_late", locale, days=item.days))
    elif bucket == "stuck":
        words.append(t("agenda.days_idle", locale, days=item.days))
    return Field_(label=" · ".join(words), value=_clip(item.title, 100), url=item.url)


def _bucket(bucket: str, items: Sequence[Item], locale: str) -> list[Field_]:
    shown = [_item(bucket, i, locale) for i in items[: CAPS[bucket]]]
    if len(items) > CAPS[bucket]:
        label = t(f"agenda.bucket_{bucket}", locale)
        shown.append(Field_(label=label, value=t("agenda.more", locale, count=len(items) - CAPS[bucket])))
    return shown


def _size(fields: Sequence[Field_]) -> int:
    return sum(len(f.label) + len(f.value) + len(f.url or "") + 8 for f in fields)


def _fit(sections: dict[str, list[Field_]], fixed: int) -> None:
    """Drop the least needed lines until the card fits the budget."""
    for name in _DROP_ORDER:
        while sections[name] and fixed + sum(_size(s) for s in sections.values()) > BUDGET:
            sections[name].pop()


def topic_texts(topics: Sequence[Topic], locale: str) -> list[TopicText]:
    """The topics as the manager reads them (what a rewriter may reword)."""
    return [TopicText(topic.rule, topic.text(locale), topic.reason(locale)) for topic in topics]


def render(
    data: AgendaData, topics: Sequence[TopicText], *, locale: str, timezone: str, person_name: str
) -> Message:
    """The agenda card for a manager who reads ``locale`` in ``timezone``."""
    when = data.meeting_at or data.now
    title = t("agenda.title", locale, name=person_name, date=_local(when, timezone, "%Y-%m-%d"))
    role = data.person.title or data.person.department
    who = t("agenda.who_titled", locale, name=person_name, title=role) if role else person_name
    if data.meeting_at is not None:
        text = t("agenda.intro_meeting", locale, who=who, when=_local(data.meeting_at, timezone))
    else:
        text = t("agenda.intro_now", locale, who=who)
    sections: dict[str, list[Field_]] = {name: [] for name in _DROP_ORDER}
    sections["highlights"] = highlights(data, locale)
    if data.sources:
        sections["done"] = _bucket("done", data.done, locale)
        sections["overdue"] = _bucket("overdue", data.overdue, locale)
        sections["stuck"] = _bucket("stuck", data.stuck, locale)
    for action in data.actions[: CAPS["actions"]]:
        due = t("agenda.due", locale, date=action.due_on.isoformat()) if action.due_on else ""
        late = t("agenda.past_due", locale) if action.past_due else ""
        label = " · ".join(w for w in (t("agenda.action", locale), action.owner, due, late) if w)
        sections["actions"].append(Field_(label=label, value=_clip(action.text)))
    if len(data.actions) > CAPS["actions"]:
        more = t("agenda.more", locale, count=len(data.actions) - CAPS["actions"])
        sections["actions"].append(Field_(label=t("agenda.action", locale), value=more))
    for event in data.events[: CAPS["events"]]:
        label = t(
            "agenda.event",
            locale,
            date=_local(event.created_at, timezone, "%Y-%m-%d"),
            author=event.author_name,
        )
        sections["events"].append(Field_(label=label, value=_clip(event.text)))
    suggested = [
        Field_(label=f"{n}. {_clip(topic.text, 120)}", value=_clip(topic.reason, 200))
        for n, topic in enumerate(topics, start=1)
    ]
    heads = {
        "highlights": t("agenda.section_checkins", locale),
        "tasks": t("agenda.section_tasks", locale, sources=sources_text(data.sources, locale)),
        "actions": t("agenda.section_actions", locale),
        "events": t("agenda.section_events", locale, days=data.settings.event_days),
        "topics": t("agenda.section_topics", locale),
    }
    summary = t(
        "agenda.task_summary",
        locale,
        done=len(data.done),
        days=data.period_days,
        progress=data.in_progress,
        overdue=len(data.overdue),
        stuck=len(data.stuck),
    )
    fixed = (
        len(title) + len(text) + _size(suggested) + sum(len(h) + 10 for h in heads.values()) + len(summary)
    )
    _fit(sections, fixed)
    fields: list[Field_] = []

    def section(head: str, lines: Sequence[Field_], value: str = "") -> None:
        fields.append(Field_(label=f"— {head} —", value=value))
        fields.extend(lines)

    section(
        heads["highlights"],
        sections["highlights"],
        "" if sections["highlights"] else t("agenda.no_checkins", locale),
    )
    if data.sources:
        section(heads["tasks"], sections["done"] + sections["overdue"] + sections["stuck"], summary)
    if sections["actions"]:
        section(heads["actions"], sections["actions"])
    if sections["events"]:
        section(heads["events"], sections["events"])
    section(heads["topics"], suggested)
    return Message(
        title=title,
        text=text,
        fields=tuple(fields),
        hint=t("agenda.hint", locale),
        tone=Tone.PLAIN,
        meta={"kind": "agenda"},
    )
