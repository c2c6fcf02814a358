"""The shape of a ritual's question set, validated when a YAML file is loaded."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from conversations.i18n import LOCALES

Name = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


class LocalText(BaseModel):
    """A string in every supported language; none may be empty."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)
    zh: str = Field(alias="zh-CN", min_length=1)
    en: str = Field(min_length=1)

    def get(self, locale: str) -> str:
        """The text in ``locale`` (zh-CN or en)."""
        return self.zh if locale == LOCALES[0] else self.en


class StepType(StrEnum):
    """What kind of answer a step takes."""

    TEXT = "text"
    CHOICE = "choice"
    RATING = "rating"
    YES_NO = "yes_no"
    LIST = "list"


class Option(BaseModel):
    """One answer of a single-choice step."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Name
    label: LocalText


class Step(BaseModel):
    """One question; its ``id`` is what answers are stored under, so it never changes meaning."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Name
    type: StepType
    prompt: LocalText
    hint: LocalText | None = None
    required: bool = True
    min_length: int = Field(default=0, ge=0)
    max_length: int = Field(default=2000, ge=1, le=20_000)
    options: tuple[Option, ...] = ()
    labels: dict[int, LocalText] = Field(default_factory=dict)
    max_items: int = Field(default=5, ge=1, le=50)
    # show what the person's task systems say for the ritual's week or month above this question
    # (when a task source is enabled), asking ``evidence_prompt`` instead when it lists done items
    evidence: Literal["week", "month"] | None = None
    evidence_prompt: LocalText | None = None

    @model_validator(mode="after")
    def _fits_type(self) -> Self:
        if self.type is StepType.CHOICE:
            if len(self.options) < 2:
                raise ValueError("a choice step needs at least two options")
            ids = [o.id for o in self.options]
            if len(set(ids)) != len(ids):
                raise ValueError("option ids must be unique")
        elif self.options:
            raise ValueError(f"options are only allowed on choice steps, not {self.type}")
        if self.type is StepType.RATING:
            if sorted(self.labels) != [1, 2, 3, 4, 5]:
                raise ValueError("a rating step needs labels for exactly 1, 2, 3, 4 and 5")
        elif self.labels:
            raise ValueError(f"labels are only allowed on rating steps, not {self.type}")
        if self.min_length > self.max_length:
            raise ValueError("min_length is larger than max_length")
        if self.evidence is not None:
            if self.type is not StepType.LIST:
                raise ValueError(
                    f"evidence is only allowed on list steps (done items join the list), not {self.type}"
                )
            if self.evidence_prompt is None:
                raise ValueError("a step with evidence needs an evidence_prompt (asked below done items)")
        elif self.evidence_prompt is not None:
            raise ValueError("evidence_prompt is only allowed on a step with evidence")
        return self


class Part(BaseModel):
    """A section answered by one person: the subject themself, or their manager about them."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: Name
    audience: Literal["self", "manager"]
    intro: LocalText | None = None
    steps: tuple[Step, ...] = Field(min_length=1)

    @field_validator("steps")
    @classmethod
    def _unique_steps(cls, steps: tuple[Step, ...]) -> tuple[Step, ...]:
        seen: set[str] = set()
        for step in steps:
            if step.id in seen:
                raise ValueError(f"step id {step.id!r} is used twice")
            seen.add(step.id)
        return steps

    @model_validator(mode="after")
    def _evidence_for_oneself(self) -> Self:
        shown = [s.id for s in self.steps if s.evidence is not None]
        if shown and self.audience != "self":
            raise ValueError(
                f"step {shown[0]!r}: evidence is only shown in a part about oneself (audience self)"
            )
        if len(shown) > 1:
            raise ValueError(f"only one step of a part may show evidence; {', '.join(shown)} do")
        return self

    def step(self, step_id: str) -> Step | None:
        """The step named ``step_id``, if this part has it."""
        return next((s for s in self.steps if s.id == step_id), None)

    def next_step(self, step_id: str | None) -> Step | None:
        """The step after ``step_id`` (the first for None), or None at the end."""
        if step_id is None:
            return self.steps[0]
        ids = [s.id for s in self.steps]
        i = ids.index(step_id) if step_id in ids else len(ids)
        return self.steps[i + 1] if i + 1 < len(ids) else None

    def previous_step(self, step_id: str) -> Step | None:
        """The step before ``step_id``, or None at the start."""
        ids = [s.id for s in self.steps]
        i = ids.index(step_id) if step_id in ids else 0
        return self.steps[i - 1] if i > 0 else None


class Ritual(BaseModel):
    """A whole question set: the weekly recap, monthly review or quarterly assessment."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    key: Name
    version: int = Field(ge=1)
    period: Literal["week", "month", "quarter"]
    title: LocalText
    description: LocalText | None = None
    aliases: tuple[str, ...] = ()
    form: bool = False
    due_days: int = Field(default=3, ge=0, le=60)
    parts: tuple[Part, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _parts_in_order(self) -> Self:
        if self.parts[0].audience != "self":
            raise ValueError("the first part must have audience 'self'")
        ids = [p.id for p in self.parts]
        if len(set(ids)) != len(ids):
            raise ValueError("part ids must be unique")
        for part in self.parts:
            for step in part.steps:
                if step.evidence is not None and step.evidence != self.period:
                    raise ValueError(
                        f"step {step.id!r} shows evidence for a {step.evidence}, "
                        f"but the ritual's period is a {self.period}"
                    )
        return self

    def part(self, part_id: str) -> Part:
        """The part named ``part_id``."""
        for part in self.parts:
            if part.id == part_id:
                return part
        raise KeyError(f"{self.key} has no part {part_id!r}")
