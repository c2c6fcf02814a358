"""Render the neutral Message as a Feishu card (JSON 2.0), and a ritual as a card with a form.

Limits from Feishu's card and message docs: a card body at most 30 KB; a card that will be updated
(PATCH, or a new card returned in a callback's answer) needs ``config.update_multi`` on both the old
and the new card. Person-written text goes into ``plain_text`` elements (no markdown to escape); only
labels we write ourselves use the ``markdown`` tag.

Button callbacks carry ``{"a": Action.encode()}``; the form button ``{"form": assignment id}``; a
submitted form ``{"submit": "assignment|version"}`` with the answers in ``form_value`` by step id.
"""

from __future__ import annotations

import json
from typing import Any

from conversations.forms import Form, FormField
from conversations.messages import Message, Tone

CARD_LIMIT = 30_000
_TEXT = 2_000  # one element's text: long answers are shown whole in the chat history anyway
_LABEL = 60
_TEMPLATE = {
    Tone.PLAIN: "default",
    Tone.PROMPT: "blue",
    Tone.SUCCESS: "green",
    Tone.WARNING: "orange",
    Tone.ERROR: "red",
}
_MARK = {Tone.SUCCESS: "✅ ", Tone.WARNING: "⚠️ ", Tone.ERROR: "❌ "}
ACTION_KEY, FORM_KEY, SUBMIT_KEY = "a", "form", "submit"
FORM_NAME = "cadence_form"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plain(text: str, *, size: str | None = None) -> dict[str, Any]:
    element: dict[str, Any] = {"tag": "div", "text": {"tag": "plain_text", "content": _clip(text, _TEXT)}}
    if size:
        element["text"]["text_size"] = size
        element["text"]["text_color"] = "grey"
    return element


# Feishu card markdown's escapes (HTML entities) for the characters that would format text
_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "*": "&#42;",
        "_": "&#95;",
        "~": "&#126;",
        "[": "&#91;",
        "]": "&#93;",
        "`": "&#96;",
        "#": "&#35;",
    }
)


def _markdown_escape(text: str) -> str:
    return text.translate(_ESCAPES)


def _link_target(url: str) -> str:
    """A url that cannot end the markdown link early (its brackets and spaces percent-encoded)."""
    return url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def _field(label: str, value: str, url: str | None = None) -> dict[str, Any]:
    shown = _markdown_escape(_clip(value, _TEXT))
    if url:
        shown = f"[{shown}]({_link_target(url)})"
    return {"tag": "markdown", "content": f"**{_markdown_escape(_clip(label, 200))}**\n{shown}"}


def _button(label: str, value: dict[str, Any], *, primary: bool = False, name: str = "") -> dict[str, Any]:
    button: dict[str, Any] = {
        "tag": "button",
        "text": {"tag": "plain_text", "content": _clip(label, _LABEL)},
        "type": "primary" if primary else "default",
        "behaviors": [{"type": "callback", "value": value}],
    }
    if name:
        button["name"] = name
    return button


def _buttons(buttons: list[dict[str, Any]]) -> dict[str, Any]:
    """Buttons side by side, wrapping on a narrow screen (JSON 2.0 has no "action" row)."""
    columns = [{"tag": "column", "width": "auto", "elements": [b]} for b in buttons]
    return {"tag": "column_set", "flex_mode": "flow", "horizontal_spacing": "8px", "columns": columns}


def _card(title: str | None, tone: Tone, elements: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {"schema": "2.0", "config": {"update_multi": True}, "body": {"elements": elements}}
    if title:
        card["header"] = {
            "title": {"tag": "plain_text", "content": _clip(title, 100)},
            "template": _TEMPLATE.get(tone, "default"),
        }
    return card


def card(message: Message) -> dict[str, Any]:
    """One message as a card: header, text, answers, buttons (and a form button), hint."""
    elements: list[dict[str, Any]] = [
        _plain(("" if message.title else _MARK.get(message.tone, "")) + message.text)
    ]
    elements.extend(_field(f.label, f.value, f.url) for f in message.fields)
    buttons = [
        _button(b.label, {ACTION_KEY: b.action.encode()}, primary=b.primary, name=f"a{i}")
        for i, b in enumerate(message.buttons)
    ]
    form_label = message.meta.get("form_label")
    if message.form_assignment_id is not None and form_label:
        buttons.append(_button(form_label, {FORM_KEY: str(message.form_assignment_id)}, name="open_form"))
    if buttons:
        elements.append(_buttons(buttons))
    if message.hint:
        elements.append(_plain(message.hint, size="notation"))
    return fit(_card(message.title, message.tone, elements))


def _input(field: FormField, problem: str | None) -> list[dict[str, Any]]:
    label = {"tag": "plain_text", "content": _clip(field.label, 200)}
    element: dict[str, Any]
    if field.options:
        element = {
            "tag": "select_static",
            "name": field.step,
            "placeholder": {"tag": "plain_text", "content": _clip(field.label, 100)},
            "options": [
                {"text": {"tag": "plain_text", "content": _clip(text, _LABEL)}, "value": value}
                for value, text in field.options
            ],
            "required": field.required,
        }
        if field.initial in {value for value, _ in field.options}:
            element["initial_option"] = field.initial
        out = [{"tag": "markdown", "content": f"**{_markdown_escape(_clip(field.label, 200))}**"}, element]
    else:
        element = {
            "tag": "input",
            "name": field.step,
            "label": label,
            "label_position": "top",
            "required": field.required,
            "max_length": 1000,
        }
        if field.multiline:
            element["input_type"] = "multiline_text"
            element["rows"] = 3
        if field.initial:
            element["default_value"] = _clip(field.initial, 1000)
        out = [element]
    if field.hint:
        out.append(_plain(field.hint, size="notation"))
    if problem:
        out.append(_plain(f"❌ {problem}"))
    return out


def form_card(form: Form, problems: dict[str, str] | None = None) -> dict[str, Any]:
    """A ritual as one form card; ``problems`` (step → why) are shown under their fields."""
    inputs: list[dict[str, Any]] = []
    for field in form.fields:
        inputs.extend(_input(field, (problems or {}).get(field.step)))
    submit = _button(
        form.submit_label, {SUBMIT_KEY: f"{form.assignment_id}|{form.version}"}, primary=True, name="submit"
    )
    submit["form_action_type"] = "submit"
    inputs.append(submit)
    return fit(_card(form.title, Tone.PROMPT, [{"tag": "form", "name": FORM_NAME, "elements": inputs}]))


def fit(card_json: dict[str, Any]) -> dict[str, Any]:
    """The card, cut to Feishu's 30 KB: the last answers (fields) go first, then the text is shortened."""
    elements = card_json["body"]["elements"]
    while len(content(card_json).encode()) > CARD_LIMIT:
        fields = [i for i, e in enumerate(elements) if e.get("tag") == "markdown"]
        if fields:
            del elements[fields[-1]]
            continue
        text = elements[0].get("text") or {}
        if elements[0].get("tag") != "div" or len(text.get("content", "")) < 100:
            break  # nothing left to cut that would help
        text["content"] = _clip(text["content"], len(text["content"]) // 2)
    return card_json


def content(card_json: dict[str, Any]) -> str:
    """A card as the ``content`` string of a message."""
    return json.dumps(card_json, ensure_ascii=False, separators=(",", ":"))


def form_answers(form_value: dict[str, Any] | None) -> dict[str, str]:
    """``{step: answer}`` from a submitted form (a multi-select becomes lines)."""
    answers: dict[str, str] = {}
    for step, value in (form_value or {}).items():
        if isinstance(value, list):
            answers[str(step)] = "\n".join(str(v) for v in value)
        elif value is not None:
            answers[str(step)] = str(value)
    return answers
