"""Render the neutral Message as Slack Block Kit (limits from Slack's Block Kit reference)."""

from __future__ import annotations

from typing import Any

from conversations.forms import Form, FormField
from conversations.messages import Message, Tone

# Block Kit limits: section text 3000, field 2000 (10 per section), header 150, button text 75,
# button value 2000, 25 elements per actions block, 50 blocks per message
_TEXT, _FIELD, _HEADER, _BUTTON, _ELEMENTS, _FIELDS = 3000, 2000, 150, 75, 25, 10
_MARK = {Tone.SUCCESS: "✅ ", Tone.WARNING: "⚠️ ", Tone.ERROR: "❌ "}
FORM_ACTION = "open_form"


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _linked(text: str, url: str | None) -> str:
    """``text`` escaped, as a link to ``url`` when there is one (``<url|text>``; "|" would end the url)."""
    if not url:
        return escape(text)
    return f"<{escape(url).replace('|', '%7C')}|{escape(_clip(text, 500))}>"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, _TEXT)}}


def blocks(message: Message) -> list[dict[str, Any]]:
    """The blocks of one message: header, text, answers, buttons (and a form button), hint."""
    form_label = message.meta.get("form_label")
    out: list[dict[str, Any]] = []
    if message.title:
        out.append({"type": "header", "text": {"type": "plain_text", "text": _clip(message.title, _HEADER)}})
    out.append(_section(_MARK.get(message.tone, "") + escape(message.text)))
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{escape(f.label)}*\n{_linked(f.value, f.url)}", _FIELD)}
        for f in message.fields
    ]
    for start in range(0, len(fields), _FIELDS):
        out.append({"type": "section", "fields": fields[start : start + _FIELDS]})
    buttons: list[dict[str, Any]] = []
    for i, button in enumerate(message.buttons):
        element: dict[str, Any] = {
            "type": "button",
            "action_id": f"a{i}",
            "text": {"type": "plain_text", "text": _clip(button.label, _BUTTON)},
            "value": button.action.encode(),
        }
        if button.primary:
            element["style"] = "primary"
        buttons.append(element)
    if message.form_assignment_id is not None and form_label:
        buttons.append(
            {
                "type": "button",
                "action_id": FORM_ACTION,
                "text": {"type": "plain_text", "text": _clip(form_label, _BUTTON)},
                "value": str(message.form_assignment_id),
            }
        )
    for start in range(0, len(buttons), _ELEMENTS):
        out.append({"type": "actions", "elements": buttons[start : start + _ELEMENTS]})
    if message.hint:
        out.append(
            {"type": "context", "elements": [{"type": "mrkdwn", "text": _clip(escape(message.hint), _TEXT)}]}
        )
    return out[:50]


def fallback_text(message: Message) -> str:
    """The notification and screen-reader text Slack shows where blocks are not rendered."""
    return _clip(message.plain_text(), _TEXT)


FORM_CALLBACK = "cadence_form"
_VALUE = "v"  # the one input in each block; the block id is the step


def _input(field: FormField) -> dict[str, Any]:
    element: dict[str, Any]
    if field.options:
        options = [
            {"text": {"type": "plain_text", "text": _clip(label, _BUTTON)}, "value": value}
            for value, label in field.options
        ]
        element = {"type": "static_select", "action_id": _VALUE, "options": options}
        chosen = next((o for o in options if o["value"] == field.initial), None)
        if chosen is not None:
            element["initial_option"] = chosen
    else:
        element = {"type": "plain_text_input", "action_id": _VALUE, "multiline": field.multiline}
        if field.initial:
            element["initial_value"] = _clip(field.initial, _TEXT)
    block: dict[str, Any] = {
        "type": "input",
        "block_id": field.step,
        "label": {"type": "plain_text", "text": _clip(field.label, 2000)},
        "element": element,
        "optional": not field.required,
    }
    if field.hint:
        block["hint"] = {"type": "plain_text", "text": _clip(field.hint, 2000)}
    return block


def modal(form: Form) -> dict[str, Any]:
    """A Slack modal with one input per question; the assignment and its version ride along."""
    return {
        "type": "modal",
        "callback_id": FORM_CALLBACK,
        "private_metadata": f"{form.assignment_id}|{form.version}",
        "title": {"type": "plain_text", "text": _clip(form.title, 24)},
        "submit": {"type": "plain_text", "text": _clip(form.submit_label, 24)},
        "blocks": [_input(field) for field in form.fields][:100],
    }


def submitted_answers(view: dict[str, Any]) -> dict[str, str]:
    """``{step: answer}`` from a view_submission's state."""
    answers = {}
    for step, inputs in (view.get("state") or {}).get("values", {}).items():
        entry = inputs.get(_VALUE) or {}
        selected = entry.get("selected_option") or {}
        answers[step] = str(selected.get("value") or entry.get("value") or "")
    return answers
