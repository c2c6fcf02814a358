"""Build the messages of a ritual conversation: intro, question, saved, summary, edit chooser."""

from __future__ import annotations

from typing import Any

from conversations import task_evidence
from conversations.answers import format_answer
from conversations.i18n import t
from conversations.messages import Action, Button, Field_, Message, Tone
from conversations.ritual_model import Part, Ritual, Step, StepType
from conversations.task_evidence import Evidence

SUMMARY = "__summary__"
EDIT = "__edit__"
# a "continue" button (App Home): it names the assignment, not a step, and shows where it stands
RESUME = "__resume__"


def prompt_key(assignment_id: int, version: int, step: str) -> str:
    """The outbox key of the question shown at one state version."""
    return f"a{assignment_id}:v{version}:{step}"


def _fill(text: str, subject: str) -> str:
    return text.replace("{subject}", subject)


def _title(ritual: Ritual, part: Part, locale: str, subject: str) -> str:
    title = ritual.title.get(locale)
    return f"{title} · {subject}" if part.audience == "manager" else title


def _buttons(step: Step, assignment_id: int, version: int, locale: str) -> tuple[Button, ...]:
    def button(label: str, value: str) -> Button:
        return Button(
            label=label,
            action=Action(assignment_id=assignment_id, step=step.id, version=version, value=value),
        )

    if step.type is StepType.RATING:
        return tuple(button(f"{n} · {step.labels[n].get(locale)}", str(n)) for n in range(1, 6))
    if step.type is StepType.CHOICE:
        return tuple(button(o.label.get(locale), o.id) for o in step.options)
    if step.type is StepType.YES_NO:
        return (button(t("chat.answer_yes", locale), "yes"), button(t("chat.answer_no", locale), "no"))
    return ()


def question(
    ritual: Ritual,
    part: Part,
    step: Step,
    *,
    assignment_id: int,
    version: int,
    locale: str,
    subject: str,
    current: Any = None,
    reason: str | None = None,
    evidence: Evidence | None = None,
    timezone: str = "UTC",
) -> Message:
    """One question with its hint, buttons, and (after ``back``) the answer it had.

    With ``evidence`` (what the task systems show), the question comes after a line saying what they
    show and lists the items; when they list done items, it asks what the list misses instead, and a
    button confirms the list as it is.
    """
    number = [s.id for s in part.steps].index(step.id) + 1
    confirming = evidence is not None and bool(evidence.done) and step.evidence_prompt is not None
    asked = step.evidence_prompt if confirming and step.evidence_prompt else step.prompt
    text = t(
        "chat.question", locale, n=number, total=len(part.steps), prompt=_fill(asked.get(locale), subject)
    )
    fields: tuple[Field_, ...] = ()
    buttons = _buttons(step, assignment_id, version, locale)
    hints = [step.hint.get(locale)] if step.hint else []
    if evidence is not None:
        text = f"{task_evidence.headline(evidence, locale)}\n{text}"
        fields = task_evidence.fields(evidence, locale, timezone)
    if confirming:
        action = Action(
            assignment_id=assignment_id, step=step.id, version=version, value=task_evidence.CONFIRM
        )
        buttons = (Button(label=t("tasks.confirm", locale), action=action, primary=True),)
        hints = [t("tasks.confirm_hint", locale)]
    if reason:
        text = f"{reason}\n{text}"
    if current is not None:
        fields += (
            Field_(label=t("chat.current_answer", locale), value=format_answer(step, current, locale)),
        )
    hints.append(t("chat.optional_hint" if not step.required else "chat.controls_hint", locale))
    return Message(
        title=_title(ritual, part, locale, subject),
        text=text,
        hint=("" if locale == "zh-CN" else " ").join(hints),
        tone=Tone.WARNING if reason else Tone.PROMPT,
        fields=fields,
        buttons=buttons,
        meta={"assignment": str(assignment_id), "step": step.id},
    )


def intro(
    ritual: Ritual,
    part: Part,
    *,
    assignment_id: int,
    locale: str,
    subject: str,
    alongside: tuple[Field_, ...] = (),
) -> Message:
    """The opening of a ritual: what it is, how long, how to steer."""
    lines = [_fill(part.intro.get(locale), subject)] if part.intro else []
    if ritual.description and part.audience == "self":
        lines.append(ritual.description.get(locale))
    lines.append(t("chat.intro_steps", locale, count=len(part.steps)))
    return Message(
        title=_title(ritual, part, locale, subject),
        text="\n".join(lines),
        fields=alongside,
        form_assignment_id=assignment_id if ritual.form else None,
        meta={"assignment": str(assignment_id), "form_label": t("chat.answer_in_form", locale)},
    )


def opening(intro: Message, first: Message) -> Message:
    """The intro and the first question as one message: one notification, and half the sends of a
    company-wide fan-out (the platform's rate limit counts messages)."""
    return first.model_copy(
        update={
            "title": intro.title,
            "text": f"{intro.text}\n\n{first.text}",
            "fields": intro.fields + first.fields,
            "form_assignment_id": intro.form_assignment_id,
            "meta": {**intro.meta, **first.meta},
        }
    )


def first_prompt(
    ritual: Ritual,
    part: Part,
    *,
    assignment_id: int,
    version: int,
    locale: str,
    subject: str,
    alongside: tuple[Field_, ...] = (),
    evidence: Evidence | None = None,
    timezone: str = "UTC",
) -> tuple[str, Message]:
    """The key and the message that open a conversation: the intro with the first question (after
    what the task systems show, when it asks about them)."""
    step = part.steps[0]
    message = opening(
        intro(ritual, part, assignment_id=assignment_id, locale=locale, subject=subject, alongside=alongside),
        question(
            ritual,
            part,
            step,
            assignment_id=assignment_id,
            version=version,
            locale=locale,
            subject=subject,
            evidence=evidence,
            timezone=timezone,
        ),
    )
    return prompt_key(assignment_id, version, step.id), message


def saved(step: Step, value: Any, *, locale: str, subject: str, replaces: str) -> Message:
    """The question again, now showing the answer and that it is stored."""
    return Message(
        text=_fill(step.prompt.get(locale), subject),
        fields=(Field_(label=t("chat.saved", locale), value=format_answer(step, value, locale)),),
        tone=Tone.SUCCESS,
        replaces=replaces,
    )


def answer_fields(
    part: Part, answers: dict[str, tuple[Any, bool]], locale: str, subject: str
) -> tuple[Field_, ...]:
    """Numbered question → answer lines for a summary or the manager's view."""
    fields = []
    for n, step in enumerate(part.steps, start=1):
        value, _skipped = answers.get(step.id, (None, True))
        label = f"{n}. {_fill(step.prompt.get(locale), subject)}"
        fields.append(Field_(label=label, value=format_answer(step, value, locale)))
    return tuple(fields)


def summary(
    ritual: Ritual,
    part: Part,
    answers: dict[str, tuple[Any, bool]],
    *,
    assignment_id: int,
    version: int,
    locale: str,
    subject: str,
    reason: str | None = None,
) -> Message:
    """All answers, to confirm or change before they are submitted."""

    def button(label: str, value: str, primary: bool = False) -> Button:
        action = Action(assignment_id=assignment_id, step=SUMMARY, version=version, value=value)
        return Button(label=label, action=action, primary=primary)

    return Message(
        title=_title(ritual, part, locale, subject),
        text=f"{reason}\n{t('chat.summary', locale)}" if reason else t("chat.summary", locale),
        hint=t("chat.summary_hint", locale),
        tone=Tone.WARNING if reason else Tone.PROMPT,
        fields=answer_fields(part, answers, locale, subject),
        buttons=(button(t("chat.submit", locale), "submit", True), button(t("chat.edit", locale), "edit")),
        meta={"assignment": str(assignment_id), "step": SUMMARY},
    )


def edit_chooser(part: Part, *, assignment_id: int, version: int, locale: str, subject: str) -> Message:
    """Which answer to change: one button per question."""
    buttons = tuple(
        Button(
            label=f"{n}. {_fill(step.prompt.get(locale), subject)[:40]}",
            action=Action(assignment_id=assignment_id, step=EDIT, version=version, value=step.id),
        )
        for n, step in enumerate(part.steps, start=1)
    )
    return Message(text=t("chat.edit_which", locale), buttons=buttons, tone=Tone.PROMPT)
