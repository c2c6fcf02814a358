"""A ritual as one form (for platforms with forms, e.g. a Slack modal): what to ask, and checking it.

Opening and checking a form only reads; the answers are stored when the submitted form comes back
through the journal like any other event (``Engine.on_form``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from conversations import task_evidence
from conversations.answers import form_problems
from conversations.engine import Engine
from conversations.i18n import t
from conversations.outgoing import PersonContext
from conversations.ritual_model import Part, StepType
from conversations.task_evidence import Evidence
from storage import assignments


@dataclass(frozen=True)
class FormField:
    """One question as a form input."""

    step: str
    label: str
    hint: str | None
    required: bool
    options: tuple[tuple[str, str], ...]  # (value, label) for a choice; empty for free text
    multiline: bool
    initial: str | None


@dataclass(frozen=True)
class Form:
    """The whole part of a ritual a person is answering, as one form."""

    assignment_id: int
    version: int
    title: str
    submit_label: str
    fields: tuple[FormField, ...]


def _options(step: Any, locale: str) -> tuple[tuple[str, str], ...]:
    if step.type is StepType.RATING:
        return tuple((str(n), f"{n} · {step.labels[n].get(locale)}") for n in range(1, 6))
    if step.type is StepType.CHOICE:
        return tuple((o.id, o.label.get(locale)) for o in step.options)
    if step.type is StepType.YES_NO:
        return (("yes", t("chat.answer_yes", locale)), ("no", t("chat.answer_no", locale)))
    return ()


def _initial(value: Any) -> str | None:
    if value is None:
        return None
    return "\n".join(str(v) for v in value) if isinstance(value, list) else str(value)


async def form_for(
    session: AsyncSession, engine: Engine, person: PersonContext, assignment_id: int
) -> Form | None:
    """The form for an assignment the person is answering now; None if it is not (or no longer) theirs."""
    conv = await assignments.get_conversation(session, assignment_id=assignment_id)
    if conv is None or conv.person_id != person.id or conv.status not in assignments.HOLDING:
        return None
    ritual = await engine.ritual(session, conv.ritual_id)
    answers = await assignments.answers_for(session, assignment_id=conv.id)
    evidence = _evidence(engine, answers)
    # with the task list's done items counted already, the form asks only for what they miss
    part = task_evidence.form_part(ritual.part(conv.part), evidence)
    fields = []
    for step in part.steps:
        hint = step.hint.get(person.locale) if step.hint else None
        value = answers.get(step.id, (None, True))[0]
        if step.evidence is not None and evidence is not None and evidence.done:
            hint = t("tasks.form_hint", person.locale, count=len(evidence.done))
            value = evidence.additions(value) if value is not None else None
        field = FormField(
            step=step.id,
            label=step.prompt.get(person.locale),
            hint=hint,
            required=step.required,
            options=_options(step, person.locale),
            multiline=step.type in (StepType.TEXT, StepType.LIST),
            initial=_initial(value),
        )
        fields.append(field)
    title = ritual.title.get(person.locale)
    return Form(conv.id, conv.version, title, t("chat.form_submit", person.locale), tuple(fields))


async def check(
    session: AsyncSession, engine: Engine, person: PersonContext, assignment_id: int, answers: dict[str, str]
) -> dict[str, str] | None:
    """Problems with a submitted form, or None when the assignment is no longer the person's to answer."""
    conv = await assignments.get_conversation(session, assignment_id=assignment_id)
    if conv is None or conv.person_id != person.id or conv.status not in assignments.HOLDING:
        return None
    ritual = await engine.ritual(session, conv.ritual_id)
    part: Part = ritual.part(conv.part)
    if engine.tasks.enabled and any(s.evidence is not None for s in part.steps):
        stored = await assignments.answers_for(session, assignment_id=conv.id)
        part = task_evidence.form_part(part, _evidence(engine, stored))
    return form_problems(part, answers, person.locale)


def _evidence(engine: Engine, answers: dict[str, tuple[Any, bool]]) -> Evidence | None:
    """What the task list showed, as the engine counts it (only while a task source is enabled)."""
    return task_evidence.stored(answers) if engine.tasks.enabled else None
