"""Turn what a person typed (or clicked) into a stored answer, or say why it can't be one."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from conversations.i18n import t
from conversations.ritual_model import Part, Step, StepType

_BULLET = re.compile(r"^\s*(?:[-*•·●▪]|\d{1,2}\s*[.)、．]|[（(]\d{1,2}[)）])\s*")
_CN_DIGITS = {"一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5}
_YES = {
    "yes",
    "y",
    "yeah",
    "yep",
    "sure",
    "ok",
    "okay",
    "true",
    "是",
    "是的",
    "对",
    "有",
    "好",
    "要",
    "需要",
    "嗯",
}
_NO = {"no", "n", "nope", "nah", "false", "否", "不", "不是", "没有", "无", "不要", "不需要", "没"}
YES_NO_VALUES = ("yes", "no")


@dataclass(frozen=True)
class Accepted:
    """A valid answer and the value to store."""

    value: Any


@dataclass(frozen=True)
class Rejected:
    """Why an answer can't be taken, in the person's language."""

    reason: str


def small_number(text: str, *, digits: int = 9) -> int | None:
    """A whole number typed in ASCII digits (after normalize), short enough to be meant; else None.

    ``str.isdigit`` also accepts "²" and "፩", which ``int`` refuses, and "1" followed by 5,000
    zeros, which no database column holds.
    """
    return int(text) if text.isascii() and text.isdigit() and len(text) <= digits else None


def normalize(text: str) -> str:
    """NFKC (full-width digits and letters become ASCII), control characters but line breaks and tabs
    dropped (PostgreSQL refuses NUL in text), trimmed; emoji and scripts kept."""
    cleaned = unicodedata.normalize("NFKC", text)
    if any(c < " " and c not in "\n\t" for c in cleaned):
        cleaned = "".join(c for c in cleaned if c >= " " or c in "\n\t")
    return cleaned.strip()


def _length_problem(step: Step, text: str, locale: str) -> Rejected | None:
    if len(text) > step.max_length:
        return Rejected(t("chat.too_long", locale, length=f"{len(text):,}", limit=f"{step.max_length:,}"))
    if len(text) < step.min_length:
        return Rejected(t("chat.too_short", locale, limit=step.min_length))
    return None


def _text(step: Step, text: str, locale: str) -> Accepted | Rejected:
    return _length_problem(step, text, locale) or Accepted(text)


def _list(step: Step, text: str, locale: str) -> Accepted | Rejected:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) == 1 and re.search(r"[;；]", lines[0]):
        lines = re.split(r"[;；]", lines[0])
    items = [_BULLET.sub("", ln).strip() for ln in lines]
    items = [i for i in items if i]
    if len(items) > step.max_items:
        return Rejected(t("chat.too_many_items", locale, count=len(items), limit=step.max_items))
    for n, item in enumerate(items, start=1):
        if len(item) > step.max_length:
            return Rejected(
                t("chat.item_too_long", locale, n=n, length=f"{len(item):,}", limit=f"{step.max_length:,}")
            )
    return Accepted(items)


def _rating(step: Step, text: str, locale: str) -> Accepted | Rejected:
    raw = text.lower().removesuffix("/5").strip()
    stars = raw.count("⭐") or raw.count("★")
    number: int | None = None
    if (typed := small_number(raw)) is not None:
        number = typed
    elif raw in _CN_DIGITS:
        number = _CN_DIGITS[raw]
    elif stars and not raw.replace("⭐", "").replace("★", "").strip():
        number = stars
    else:
        for value, label in step.labels.items():
            if raw in (label.en.lower(), label.zh):
                number = value
    if number is None or not 1 <= number <= 5:
        return Rejected(t("chat.bad_rating", locale))
    return Accepted(number)


def _choice(step: Step, text: str, locale: str) -> Accepted | Rejected:
    raw = text.lower()
    number = small_number(raw)
    if number is not None and 1 <= number <= len(step.options):
        return Accepted(step.options[number - 1].id)
    for option in step.options:
        if raw in (option.id, option.label.en.lower(), option.label.zh):
            return Accepted(option.id)
    return Rejected(t("chat.bad_choice", locale, count=len(step.options)))


def _yes_no(step: Step, text: str, locale: str) -> Accepted | Rejected:
    raw = text.lower().rstrip("!.。！")
    if raw in _YES or raw == "1":
        return Accepted("yes")
    if raw in _NO or raw == "2":
        return Accepted("no")
    return Rejected(t("chat.bad_yes_no", locale))


_PARSERS = {
    StepType.TEXT: _text,
    StepType.LIST: _list,
    StepType.RATING: _rating,
    StepType.CHOICE: _choice,
    StepType.YES_NO: _yes_no,
}


def parse_answer(step: Step, text: str, locale: str) -> Accepted | Rejected:
    """Validate a typed or clicked answer for ``step``.

    Free text is stored as typed (only trimmed): NFKC would turn Chinese full-width punctuation
    into ASCII. Normalised text is only used to read numbers, options and yes/no.
    """
    free_text = step.type in (StepType.TEXT, StepType.LIST)
    cleaned = text.strip() if free_text else normalize(text)
    if not cleaned:
        return Rejected(t("chat.empty_answer", locale))
    return _PARSERS[step.type](step, cleaned, locale)


def format_answer(step: Step, value: Any, locale: str) -> str:
    """An answer as the person would read it back."""
    if value is None:
        return t("chat.skipped_value", locale)
    if step.type is StepType.LIST:
        return "; ".join(str(v) for v in value)
    if step.type is StepType.RATING:
        label = step.labels.get(int(value))
        return f"{value}/5 · {label.get(locale)}" if label else f"{value}/5"
    if step.type is StepType.CHOICE:
        option = next((o for o in step.options if o.id == value), None)
        return option.label.get(locale) if option else str(value)
    if step.type is StepType.YES_NO:
        return t("chat.answer_yes" if value == "yes" else "chat.answer_no", locale)
    return str(value)


def form_problems(part: Part, answers: dict[str, str], locale: str) -> dict[str, str]:
    """``{step: why}`` for every answer of a submitted form that cannot be taken (empty when fine)."""
    found = {}
    for step in part.steps:
        given = (answers.get(step.id) or "").strip()
        if not given:
            if step.required:
                found[step.id] = t("chat.required", locale)
            continue
        result = parse_answer(step, given, locale)
        if isinstance(result, Rejected):
            found[step.id] = result.reason
    return found
