"""Suggested 1:1 topics from explicit rules: each rule looks at the agenda's data and, when its condition
holds, proposes a topic with a one-line reason naming the data (counts, project keys, quoted words).

``RULES`` is the whole table, in order. Candidates are ranked by score (a tie goes to the rule higher
in the table); the top three of *different* topics are suggested. The last three rules always
propose something, so there are always three. Texts are ``agenda.topic_<topic>`` (or the rule's own
``text``) and ``agenda.reason_<reason>`` in ``locales/agenda.*.yaml``.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from conversations.agenda import (
    BLOCKERS,
    DISCUSS,
    GOALS,
    MONTHLY,
    NEXT,
    QUARTERLY,
    RATINGS,
    SUPPORT,
    WEEKLY,
    AgendaData,
    Item,
    zone_of,
)
from conversations.answers import normalize
from conversations.i18n import t

SUGGESTED = 3
Value = str | int | tuple[str, ...]


@dataclass(frozen=True)
class Hit:
    """A rule's finding: which reason text, the values it names, and (rarely) its own topic text."""

    reason: str
    values: Mapping[str, Value] = field(default_factory=dict)
    text: str | None = None


@dataclass(frozen=True)
class Rule:
    """One row of the table: when ``find`` returns a hit, ``topic`` is proposed with ``score``."""

    id: str
    topic: str
    score: int
    find: Callable[[AgendaData], Hit | None]
    doc: str


@dataclass(frozen=True)
class Topic:
    """A suggested topic: the rule that chose it, what to talk about, and why (texts by key)."""

    rule: str
    topic: str
    score: int
    text_key: str
    reason_key: str
    values: Mapping[str, Value]

    def _values(self, locale: str) -> dict[str, object]:
        separator = t("agenda.list_separator", locale)
        return {k: separator.join(v) if isinstance(v, tuple) else v for k, v in self.values.items()}

    def text(self, locale: str) -> str:
        """What to talk about, in ``locale``."""
        return t(self.text_key, locale, **self._values(locale))

    def reason(self, locale: str) -> str:
        """Why, in one line with the data, in ``locale``."""
        return t(self.reason_key, locale, **self._values(locale))

    def to_json(self) -> dict[str, Any]:
        """As kept with the meeting's agenda (``OneOnOne.agenda``)."""
        values = {k: list(v) if isinstance(v, tuple) else v for k, v in self.values.items()}
        return {
            "rule": self.rule,
            "topic": self.topic,
            "score": self.score,
            "text_key": self.text_key,
            "reason_key": self.reason_key,
            "values": values,
        }


def quote(text: str, limit: int = 60) -> str:
    """A person's words as a reason quotes them: one line, cut at ``limit``."""
    line = " ".join(normalize(text).split()).strip("\"'“”‘’「」")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _count_key(base: str, count: int) -> str:
    return f"{base}_one" if count == 1 else f"{base}_many"


# ---- phrases said more than once ----------------------------------------------------------------

_TOKEN = re.compile(r"[a-z0-9][a-z0-9'’-]*|[\u3400-\u9fff]")
# words a phrase may not start or end with (it would not be a phrase of its own), and answers that say
# there is nothing in the way
_STOP_WORDS = (
    "a an the to of on in at for by with and or but is are was were be been am i we my our it its this "
    "that still again also just very some any no not none nothing n/a na yet so as from"
)
_STOP = frozenset(_STOP_WORDS.split())
_STOP_CJK = frozenset("的了在和是有我也还就都被把又再没无暂")
_NOTHING = frozenset(
    {"no", "none", "nothing", "n/a", "na", "nope", "no blockers", "无", "没有", "暂无", "没", "否"}
)
_MAX_TOKENS = 10


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalize(text).lower())


def _is_cjk(token: str) -> bool:
    return len(token) == 1 and "\u3400" <= token <= "\u9fff"


def _phrases(tokens: list[str]) -> set[tuple[str, ...]]:
    found = set()
    for n in range(2, _MAX_TOKENS + 1):
        for i in range(len(tokens) - n + 1):
            gram = tuple(tokens[i : i + n])
            ends = (gram[0], gram[-1])
            if any(e in _STOP or e in _STOP_CJK for e in ends):
                continue
            weight = sum(1 if _is_cjk(w) else 2 for w in gram if w not in _STOP)
            if weight >= 4:
                found.add(gram)
    return found


def _joined(gram: tuple[str, ...]) -> str:
    out = gram[0]
    for before, word in itertools.pairwise(gram):
        out += word if _is_cjk(before) or _is_cjk(word) else " " + word
    return out


def repeated_phrase(texts: list[tuple[str, str]]) -> tuple[str, list[str]] | None:
    """The longest phrase said in more than one of ``texts`` ((label, text), newest first), and the
    labels it was said in (oldest first); the phrase said most often wins, then the longer one."""
    seen: dict[tuple[str, ...], list[str]] = {}
    for label, text in texts:
        if normalize(text).lower().strip(" .。!！") in _NOTHING:
            continue
        for gram in _phrases(_tokens(text)):
            seen.setdefault(gram, []).append(label)
    repeated = [(gram, labels) for gram, labels in seen.items() if len(set(labels)) > 1]
    if not repeated:
        return None
    gram, labels = max(repeated, key=lambda g: (len(set(g[1])), len(g[0]), _joined(g[0])))
    return _joined(gram), sorted(set(labels))


# ---- the rules' conditions ----------------------------------------------------------------------


def _their_topic(data: AgendaData) -> Hit | None:
    recap = data.latest(WEEKLY)
    fresh = recap is not None and data.now - recap.submitted_at <= timedelta(days=data.period_days)
    if recap is None or not fresh or recap.text(DISCUSS) != "yes":
        return None
    return Hit("their_topic", {"period": recap.period})


def _repeated_blocker(data: AgendaData) -> Hit | None:
    texts = [(r.period, r.text(BLOCKERS)) for r in data.recaps if r.text(BLOCKERS)]
    found = repeated_phrase(texts)
    if found is None:
        return None
    phrase, periods = found
    reason = "blocker_twice" if len(periods) == 2 else "blocker_times"
    return Hit(reason, {"phrase": quote(phrase), "count": len(periods), "periods": tuple(periods)})


def _week_ratings(data: AgendaData) -> list[tuple[str, int]]:
    """(period, rating) of the last four weekly recaps, oldest first."""
    found = []
    for recap in data.recaps:
        answer = recap.find(RATINGS) if recap.key == WEEKLY else None
        if answer is not None and isinstance(answer[1], int):
            found.append((recap.period, answer[1]))
    return list(reversed(found[:4]))


def _falling_rating(data: AgendaData) -> Hit | None:
    ratings = [r for _, r in _week_ratings(data)]
    last3 = ratings[-3:]
    falling = len(ratings) >= 2 and ratings[-1] <= ratings[0] - 2
    falling = falling or (len(last3) == 3 and last3[0] > last3[1] > last3[2])
    if not falling:
        return None
    return Hit("rating_falling", {"trend": " → ".join(str(r) for r in ratings), "count": len(ratings)})


def _low_rating(data: AgendaData) -> Hit | None:
    ratings = _week_ratings(data)
    if not ratings or ratings[-1][1] > 2:
        return None
    return Hit("rating_low", {"rating": ratings[-1][1], "period": ratings[-1][0]})


def _overdue_in_project(data: AgendaData, at_least: int) -> Hit | None:
    if not data.overdue:
        return None
    by_project: dict[str, list[Item]] = {}
    for item in data.overdue:  # the longest overdue first, so each project's first is its oldest
        by_project.setdefault(item.project, []).append(item)
    project, items = max(by_project.items(), key=lambda p: (len(p[1]), p[1][0].days, p[0]))
    if len(items) < at_least:
        return None
    values: dict[str, Value] = {
        "project": project,
        "count": len(items),
        "item": items[0].name,
        "days": items[0].days,
    }
    return Hit(_count_key("overdue", len(items)), values)


def _actions_past_due(data: AgendaData) -> Hit | None:
    late = [a for a in data.actions if a.past_due]
    if not late:
        return None
    first = late[0]
    values: dict[str, Value] = {"count": len(late), "text": quote(first.text, 50), "due": str(first.due_on)}
    return Hit(_count_key("actions_late", len(late)), values)


def _support_asked(data: AgendaData) -> Hit | None:
    review = data.latest(MONTHLY)
    asked = review.text(SUPPORT) if review is not None else ""
    if review is None or not asked or normalize(asked).lower() in _NOTHING:
        return None
    return Hit("support", {"quote": quote(asked), "period": review.period})


def _stuck(data: AgendaData) -> Hit | None:
    if not data.stuck:
        return None
    first = data.stuck[0]
    values: dict[str, Value] = {
        "count": len(data.stuck),
        "days": data.settings.stuck_days,
        "item": first.name,
        "idle": first.days,
    }
    return Hit(_count_key("stuck", len(data.stuck)), values)


NEW_DAYS = 90  # someone added to the org data this recently (after its first import) is new
_FIRST_IMPORT = timedelta(days=7)  # people added this soon after the org data began came with it


def _new_in_role(data: AgendaData) -> Hit | None:
    person = data.person
    joined = person.created_at
    if joined - person.org_started_at <= _FIRST_IMPORT or data.now - joined > timedelta(days=NEW_DAYS):
        return None
    values: dict[str, Value] = {
        "title": person.title,
        "date": joined.astimezone(zone_of(data.timezone)).date().isoformat(),
        "days": (data.now - joined).days,
    }
    return Hit("new_titled" if person.title else "new", values)


def _no_recap(data: AgendaData) -> Hit | None:
    if len(data.unanswered) < 2:
        return None
    return Hit("no_recap", {"count": len(data.unanswered), "periods": tuple(reversed(data.unanswered))})


_OFF_TRACK = {MONTHLY: ("at_risk", "off_track"), QUARTERLY: ("partly", "missed")}


def _goals(data: AgendaData) -> Hit | None:
    for ritual, statuses in _OFF_TRACK.items():
        recap = data.latest(ritual)
        status = recap.text(GOALS) if recap is not None else ""
        if recap is not None and status in statuses:
            return Hit(f"goals_{status}", {"period": recap.period})
    return None


def _key_event(data: AgendaData) -> Hit | None:
    if not data.events:
        return None
    event = data.events[0]
    day = event.created_at.astimezone(zone_of(data.timezone)).date().isoformat()
    return Hit("key_event", {"date": day, "quote": quote(event.text)})


MANY_DONE = 5


def _many_done(data: AgendaData) -> Hit | None:
    if len(data.done) < MANY_DONE:
        return None
    project, _ = Counter(i.project for i in data.done).most_common(1)[0]
    values: dict[str, Value] = {"count": len(data.done), "days": data.period_days, "project": project}
    return Hit("many_done", values, text="agenda.topic_delivery")


def _actions_open(data: AgendaData) -> Hit | None:
    if not data.actions:
        return None
    return Hit(_count_key("actions_open", len(data.actions)), {"count": len(data.actions)})


def _leads_people(data: AgendaData) -> Hit | None:
    count = data.person.direct_reports
    return Hit(_count_key("leads", count), {"count": count}) if count else None


def _career_growth(data: AgendaData) -> Hit | None:
    if any("growth" in topics for topics in data.past_topics):
        return None
    held = len(data.past_topics)
    if held < data.settings.growth_lookback:
        return Hit("growth_never")
    return Hit("growth_none", {"count": held})


def _workload(data: AgendaData) -> Hit:
    if not data.sources:
        return Hit("workload_plain")
    return Hit("workload_tasks", {"progress": data.in_progress, "overdue": len(data.overdue)})


def _priorities(data: AgendaData) -> Hit:
    recap = data.latest(WEEKLY) or data.latest(MONTHLY)
    found = recap.find(NEXT) if recap is not None else None
    if recap is None or found is None:
        return Hit("priorities_plain")
    first = found[1][0] if isinstance(found[1], list) and found[1] else found[1]
    return Hit("priorities_next", {"quote": quote(str(first)), "period": recap.period})


def _feedback(_: AgendaData) -> Hit:
    return Hit("feedback_plain")


# ---- the table ----------------------------------------------------------------------------------

RULES: tuple[Rule, ...] = (
    Rule("their_topic", "their_topic", 95, _their_topic, "latest weekly recap: yes to 'bring up at 1:1'"),
    Rule("repeated_blocker", "blocker", 90, _repeated_blocker, "a phrase in the blockers of 2+ check-ins"),
    Rule("falling_rating", "morale", 88, _falling_rating, "week rating fell by 2+, or 3 times in a row"),
    Rule("overdue_many", "overdue", 85, lambda d: _overdue_in_project(d, 3), "3+ overdue in one project"),
    Rule("actions_past_due", "follow_up", 80, _actions_past_due, "open action items past their due day"),
    Rule("support_asked", "support", 78, _support_asked, "latest monthly review asks for support"),
    Rule("stuck_items", "stuck", 75, _stuck, "in progress, no update for more than stuck_days"),
    Rule("low_rating", "morale", 74, _low_rating, "the latest week rated 1 or 2"),
    Rule("new_in_role", "onboarding", 72, _new_in_role, "added to the org data in the last 90 days"),
    Rule("no_recap", "quiet", 70, _no_recap, "the last 2+ weekly recaps unanswered"),
    Rule("goals_off_track", "goals", 68, _goals, "goals at risk / off track / partly met / missed"),
    Rule("overdue_some", "overdue", 62, lambda d: _overdue_in_project(d, 1), "anything overdue"),
    Rule("key_event", "recognition", 60, _key_event, "a key event noted in the last 30 days"),
    Rule("many_done", "recognition", 55, _many_done, "5+ items done in the period"),
    Rule("actions_open", "follow_up", 50, _actions_open, "open action items from past 1:1s"),
    Rule("leads_people", "their_team", 45, _leads_people, "they manage people themselves (role)"),
    Rule("career_growth", "growth", 30, _career_growth, "no growth topic in the last few 1:1s"),
    Rule("workload", "workload", 20, _workload, "always: a check-in on workload"),
    Rule("priorities", "priorities", 10, _priorities, "always: priorities until the next 1:1"),
    Rule("feedback", "feedback", 5, _feedback, "always: feedback both ways"),
)


def candidates(data: AgendaData) -> list[Topic]:
    """Every rule's proposal for this data, best first."""
    found: list[tuple[int, int, Topic]] = []
    for index, rule in enumerate(RULES):
        hit = rule.find(data)
        if hit is None:
            continue
        topic = Topic(
            rule=rule.id,
            topic=rule.topic,
            score=rule.score,
            text_key=hit.text or f"agenda.topic_{rule.topic}",
            reason_key=f"agenda.reason_{hit.reason}",
            values=dict(hit.values),
        )
        found.append((-rule.score, index, topic))
    return [topic for *_, topic in sorted(found, key=lambda f: (f[0], f[1]))]


def suggest(data: AgendaData, count: int = SUGGESTED) -> list[Topic]:
    """The best ``count`` topics, one per topic."""
    chosen: list[Topic] = []
    for topic in candidates(data):
        if all(c.topic != topic.topic for c in chosen):
            chosen.append(topic)
        if len(chosen) == count:
            break
    return chosen
