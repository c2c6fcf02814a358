"""Ritual schedules as data: which ritual runs when, for whom, with what deadline and reminders.

Read from ``scheduler/schedules.yaml`` (or the file the ``SCHEDULES_FILE`` setting names) and
checked against the ritual catalog at start, so a typo stops ``cadence run`` with the line it is on
instead of silently never sending.
"""

from __future__ import annotations

from datetime import date, time
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from conversations.ritual_loader import RitualCatalog, describe_error, node_at, real_errors
from scheduler.schedule import Rule, RuleKind

BUILTIN_FILE = Path(__file__).resolve().parent / "schedules.yaml"


class ScheduleFileError(ValueError):
    """A schedules file cannot be used; the message names file, line and problem."""

    def __init__(self, path: Path, line: int | None, problem: str) -> None:
        self.path, self.line, self.problem = path, line, problem
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {problem}")


class Audience(BaseModel):
    """Who gets it: people in any of these departments or with these emails; both empty is everyone."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    departments: tuple[str, ...] = ()
    people: tuple[str, ...] = ()

    @field_validator("people")
    @classmethod
    def _lower(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(email.strip().lower() for email in value)

    @property
    def everyone(self) -> bool:
        """No department or person named."""
        return not self.departments and not self.people


class ReminderPolicy(BaseModel):
    """Nudge someone who has not finished ``after_hours`` after the prompt, then as often again, at
    most ``max`` times, never in quiet hours and never after the deadline."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    after_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    max: int = Field(default=2, ge=0, le=10)


class Schedule(BaseModel):
    """One ritual's timing: ``when`` in its period, ``at`` each person's local time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ritual: str = Field(min_length=1, max_length=64)
    when: RuleKind
    at: time
    weekday: int | None = Field(default=None, ge=0, le=6)
    audience: Audience | Literal["everyone"] = "everyone"
    # days from the fire day (the last time zone's) to the cycle's deadline; None: the ritual's due_days
    deadline_days: int | None = Field(default=None, ge=0, le=90)
    reminders: ReminderPolicy = ReminderPolicy()
    enabled: bool = True

    @property
    def rule(self) -> Rule:
        """The timing rule (validated when the schedule is)."""
        return Rule(kind=self.when, at=self.at, weekday=self.weekday)

    @property
    def who(self) -> Audience:
        """The audience, with "everyone" spelled out."""
        return Audience() if self.audience == "everyone" else self.audience

    def model_post_init(self, context: object) -> None:
        """Check the rule's own constraints (weekday only for kind weekday) as part of the schedule."""
        self.rule  # noqa: B018 - builds the Rule, raising its validation error here


class ScheduleBook(BaseModel):
    """The whole file: schedules plus the company's own days off."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    days_off: tuple[date, ...] = ()
    schedules: tuple[Schedule, ...] = ()

    def enabled(self) -> list[Schedule]:
        """The schedules that run."""
        return [s for s in self.schedules if s.enabled]


def parse_schedules(text: str, path: Path, *, catalog: RitualCatalog) -> ScheduleBook:
    """Validate a schedules file's text; raises ScheduleFileError pointing at the offending line."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScheduleFileError(path, mark.line + 1 if mark else None, f"not valid YAML: {problem}") from None
    if root is None:
        return ScheduleBook()
    if not isinstance(data, dict):
        raise ScheduleFileError(path, 1, "expected a mapping with `schedules:` (and optionally `days_off:`)")
    try:
        book = ScheduleBook.model_validate(data)
    except ValidationError as exc:
        errors = real_errors(exc)
        node = node_at(root, errors[0]["loc"])
        problem = describe_error(errors[0])
        if len(errors) > 1:
            problem += f" (and {len(errors) - 1} more)"
        raise ScheduleFileError(path, node.start_mark.line + 1, problem) from None
    for index, schedule in enumerate(book.schedules):
        if schedule.ritual not in catalog.rituals:
            node = node_at(root, ["schedules", index, "ritual"])
            known = ", ".join(sorted(catalog.rituals))
            problem = f"no ritual {schedule.ritual!r} (known: {known})"
            raise ScheduleFileError(path, node.start_mark.line + 1, problem)
        ritual_period = catalog.rituals[schedule.ritual].period
        if schedule.rule.period != ritual_period:
            # the cycle is named after the ritual's period (2026-W48): a monthly rule for a weekly
            # ritual would open one cycle a month under a week's name
            node = node_at(root, ["schedules", index, "when"])
            problem = (
                f"{schedule.when!r} runs once a {schedule.rule.period}, "
                f"but {schedule.ritual} is per {ritual_period}"
            )
            raise ScheduleFileError(path, node.start_mark.line + 1, problem)
    return book


def load_schedules(path: Path | None, *, catalog: RitualCatalog) -> ScheduleBook:
    """The schedules file named by the settings, or the built-in one."""
    path = path or BUILTIN_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScheduleFileError(path, None, f"cannot read: {exc}") from None
    return parse_schedules(text, path, catalog=catalog)
