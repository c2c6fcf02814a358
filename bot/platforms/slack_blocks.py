"""Render the neutral Message as Slack Block Kit (limits from Slack's Block Kit reference)."""

from __future__ import annotations

from typing import Any

from conversations.messages import Message, Tone

# Block Kit limits: section text 3000, field 2000 (10 per section), header 150, button text 75,
# button value 2000, 25 elements per actions block, 50 blocks per message
_TEXT, _FIELD, _HEADER, _BUTTON, _ELEMENTS, _FIELDS = 3000, 2000, 150, 75, 25, 10
_MARK = {Tone.SUCCESS: "✅ ", Tone.WARNING: "⚠️ ", Tone.ERROR: "❌ "}
FORM_ACTION = "open_form"


def escape(text: str) -> str:
    """Slack's three control characters in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": _clip(text, _TEXT)}}


def blocks(message: Message, *, form_label: str | None = None) -> list[dict[str, Any]]:
    """The blocks of one message: header, text, answers, buttons, hint."""
    out: list[dict[str, Any]] = []
    if message.title:
        out.append({"type": "header", "text": {"type": "plain_text", "text": _clip(message.title, _HEADER)}})
    out.append(_section(_MARK.get(message.tone, "") + escape(message.text)))
    fields = [
        {"type": "mrkdwn", "text": _clip(f"*{escape(f.label)}*\n{escape(f.value)}", _FIELD)}
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
