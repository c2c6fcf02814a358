"""Reading a 1:1 action item as typed: "text — owner — date", and the date in zh-CN or en.

Pure text work; who the owner is (a person in the org) is the conversation's to look up.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from conversations.away import parse_away
from conversations.periods import MAX_YEARS_AHEAD, parse_due

# "—", "——" (Chinese input), "–", "--", " - " (a spaced hyphen: "follow-up" keeps its own), "|", "｜"
_SEPARATOR = re.compile(r"\s*(?:[—–]+|-{2,}|\s-\s|[|｜])\s*")
ME_WORDS = frozenset({"me", "i", "myself", "manager", "我", "我自己", "本人", "自己", "经理"})
# the report the 1:1 was with, without naming them
REPORT_WORDS = frozenset({"them", "they", "report", "他", "她", "ta", "对方", "员工"})

_WEEKDAYS = {
    **dict.fromkeys(("mon", "monday"), 0),
    **dict.fromkeys(("tue", "tues", "tuesday"), 1),
    **dict.fromkeys(("wed", "weds", "wednesday"), 2),
    **dict.fromkeys(("thu", "thur", "thurs", "thursday"), 3),
    **dict.fromkeys(("fri", "friday"), 4),
    **dict.fromkeys(("sat", "saturday"), 5),
    **dict.fromkeys(("sun", "sunday"), 6),
}
_CN_WEEKDAYS = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6}
_DAYS_AHEAD = {"today": 0, "tomorrow": 1, "今天": 0, "今日": 0, "明天": 1, "明日": 1, "后天": 2}
_CN_NUMBERS = {
    "一": 1,
    "两": 2,
    "二": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
    "十": 10,
}
_EN_WEEKDAY = re.compile(r"^(?:by\s+|on\s+)?(?:(this|next)\s+)?([a-z]+)$")
_CN_WEEKDAY = re.compile(r"^(下|本|这|下个)?(?:周|星期|礼拜)([一二三四五六日天])$")
_IN_EN = re.compile(r"^(?:in\s+)?(\d{1,3})\s*(d|days?|w|wks?|weeks?)$")
_IN_CN = re.compile(r"^(\d{1,3}|[一两二三四五六七八九十])\s*(天|日|周|星期|个星期)(?:后|内|之内|以内)?$")


class DayProblem(StrEnum):
    """Why a typed date is not a due date."""

    UNREADABLE = "unreadable"
    PAST = "past"


def parse_day(text: str, *, today: date) -> date | DayProblem:
    """The day ``text`` names, counted from ``today`` (the reader's local date).

    ``2026-12-05``, ``12-05``, ``12/5``, ``12月5日``, ``Dec 5``, ``5 Dec``; ``today``/``tomorrow``
    (今天/明天/后天); a weekday (``Friday``, ``next Fri``, 周五, 下周五: the next one after today);
    ``in 3 days``/``2 weeks`` (3天后, 两周内); ``next week``/下周 (its Friday); ``end of month``/月底.
    """
    word = unicodedata.normalize("NFKC", text).strip().lower().rstrip(".。")
    word = re.sub(r"^(?:due|by|截止|截至|到|在)\s*:?\s*", "", word)
    word = re.sub(r"(?:之前|以前|前)$", "", word).strip()
    if not word:
        return DayProblem.UNREADABLE
    found = _relative(word, today)
    if found is not None:
        return found
    typed = parse_due(word, today=today)
    if typed is not None:
        return typed if typed >= today else DayProblem.PAST
    named = parse_away(f"away until {word}", today=today)
    if named is not None:
        return named
    return DayProblem.UNREADABLE


def _relative(word: str, today: date) -> date | None:
    if word in _DAYS_AHEAD:
        return today + timedelta(days=_DAYS_AHEAD[word])
    monday = today - timedelta(days=today.weekday())
    if word in ("next week", "下周", "下星期", "下个星期", "下礼拜"):
        return monday + timedelta(days=7 + 4)
    if word in ("end of week", "this week", "本周", "这周", "周末前", "本周内"):
        return max(today, monday + timedelta(days=4))
    if word in ("end of month", "eom", "月底", "本月底", "这个月底"):
        return (today.replace(day=1) + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    if (match := _EN_WEEKDAY.match(word)) and match.group(2) in _WEEKDAYS:
        return _weekday(today, _WEEKDAYS[match.group(2)], next_week=match.group(1) == "next")
    if match := _CN_WEEKDAY.match(word):
        return _weekday(
            today, _CN_WEEKDAYS[match.group(2)], next_week=(match.group(1) or "").startswith("下")
        )
    if match := _IN_EN.match(word):
        count = int(match.group(1))
        return _ahead(today, count * (7 if match.group(2).startswith("w") else 1))
    if match := _IN_CN.match(word):
        raw = match.group(1)
        count = int(raw) if raw.isdigit() else _CN_NUMBERS[raw]
        return _ahead(today, count * (1 if match.group(2) in ("天", "日") else 7))
    return None


def _weekday(today: date, weekday: int, *, next_week: bool) -> date:
    """ "Friday": the next Friday after today; "next Friday" / 下周五: the Friday of next week."""
    if next_week:
        return today - timedelta(days=today.weekday()) + timedelta(days=7 + weekday)
    return today + timedelta(days=(weekday - today.weekday() - 1) % 7 + 1)


def _ahead(today: date, days: int) -> date | None:
    ahead = today + timedelta(days=days)
    return ahead if ahead.year <= today.year + MAX_YEARS_AHEAD else None


class LineProblem(StrEnum):
    """What an action item line is missing."""

    NO_TEXT = "no_text"
    NO_OWNER = "no_owner"
    NO_DATE = "no_date"
    NO_OWNER_NOR_DATE = "no_owner_nor_date"


@dataclass(frozen=True)
class ActionLine:
    """An action item line split into its three parts (the owner and date still as typed)."""

    text: str
    owner: str
    day: str


def split_line(line: str, *, today: date) -> ActionLine | LineProblem:
    """``text — owner — date`` in its parts; the text may hold dashes of its own (the last two parts
    are the owner and the date). With two parts, the second tells which one is missing."""
    parts = [p.strip() for p in _SEPARATOR.split(line.strip())]
    parts = [p for p in parts if p] if len(parts) > 1 else parts
    if len(parts) >= 3:
        text = " — ".join(parts[:-2])
        return ActionLine(text, parts[-2], parts[-1]) if text else LineProblem.NO_TEXT
    if len(parts) == 2:
        dated = isinstance(parse_day(parts[1], today=today), date)
        return LineProblem.NO_OWNER if dated else LineProblem.NO_DATE
    return LineProblem.NO_OWNER_NOR_DATE


def owner_word(word: str) -> str:
    """An owner as typed, for comparing: NFKC, lower case, without a leading "@"."""
    return unicodedata.normalize("NFKC", word).strip().lower().removeprefix("@").strip()
