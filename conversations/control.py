"""The words that steer a conversation (skip, back, later, stop, …) in English and Chinese."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

from conversations.answers import normalize, small_number


class Control(StrEnum):
    """What a control word asks for."""

    SKIP = "skip"
    BACK = "back"
    LATER = "later"
    STOP = "stop"
    RESUME = "resume"
    SUBMIT = "submit"
    EDIT = "edit"


_WORDS: dict[Control, tuple[str, ...]] = {
    Control.SKIP: ("skip", "pass", "跳过", "略过", "不填"),
    Control.BACK: ("back", "previous", "prev", "上一步", "上一题", "返回", "后退"),
    Control.LATER: (
        "later",
        "snooze",
        "remind me later",
        "稍后",
        "晚点",
        "等会",
        "待会",
        "以后再说",
        "稍后提醒",
    ),
    Control.STOP: ("stop", "pause", "quit", "cancel", "停止", "暂停", "退出", "取消"),
    Control.RESUME: ("resume", "continue", "go on", "继续", "恢复"),
    Control.SUBMIT: ("submit", "confirm", "send", "done", "提交", "确认", "确认提交", "完成"),
    Control.EDIT: ("edit", "change", "修改", "编辑", "改"),
}
_LOOKUP = sorted(((w, c) for c, ws in _WORDS.items() for w in ws), key=lambda wc: -len(wc[0]))
_DURATION = re.compile(
    r"^(?:in\s+)?(\d+(?:\.\d+)?|半)\s*(m|min|mins|minutes?|分钟|分|h|hr|hrs|hours?|小时|个小时|d|days?|天)\s*(?:后|later)?$"
)
_TOMORROW = ("tomorrow", "明天", "明早", "明天早上")
MAX_SNOOZE = timedelta(days=14)


@dataclass(frozen=True)
class ControlWord:
    """A recognised control word and what followed it (a duration, a step number)."""

    control: Control
    argument: str = ""


def parse_control(text: str) -> ControlWord | None:
    """The control word ``text`` is, if it is one; anything else is an answer."""
    cleaned = normalize(text).lower().rstrip("!.。！")
    for word, control in _LOOKUP:
        if cleaned == word:
            return ControlWord(control)
        if cleaned.startswith(word) and control in (Control.LATER, Control.EDIT):
            rest = cleaned[len(word) :].strip()
            # "later this week I'll…" is an answer, "later 30m" is a snooze: only a duration counts
            is_duration = rest in _TOMORROW or bool(_DURATION.match(rest))
            is_number = small_number(rest, digits=3) is not None
            if rest and (is_number if control is Control.EDIT else is_duration):
                return ControlWord(control, rest)
    return None


def snooze_until(argument: str, *, now: datetime, timezone: str, default_minutes: int) -> datetime | None:
    """When ``later <argument>`` means; None when the argument is not a duration we understand."""
    arg = argument.strip().lower()
    if not arg:
        return now + timedelta(minutes=default_minutes)
    if arg in _TOMORROW:
        local = now.astimezone(ZoneInfo(timezone))
        return datetime.combine(local.date() + timedelta(days=1), time(9, 0), ZoneInfo(timezone))
    match = _DURATION.match(arg)
    if not match:
        return None
    amount = 0.5 if match.group(1) == "半" else float(match.group(1))
    unit = match.group(2)
    if unit.startswith("d") or unit == "天":
        delta = timedelta(days=amount)
    elif unit.startswith("h") or "时" in unit:
        delta = timedelta(hours=amount)
    else:
        delta = timedelta(minutes=amount)
    if delta <= timedelta(0) or delta > MAX_SNOOZE:
        return None
    return now + delta
