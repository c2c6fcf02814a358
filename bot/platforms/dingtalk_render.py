"""Render the neutral Message for DingTalk: a robot markdown message, or an interactive card's data.

Markdown messages (``sampleMarkdown``: ``{"title", "text"}``) have no buttons that call the bot
back, so choices are numbered lines the person answers by typing the number or the label (the
engine reads both). ``title`` is what the chat list and the notification show.

Cards use a template made on DingTalk's card platform (``DINGTALK_CARD_TEMPLATE_ID``); Cadence fills
its variables (``cardParamMap``, strings only): ``title``, ``markdown`` (the text and answers),
``hint``, ``status`` ("open" or "done") and ``buttons``, a JSON list of ``{"text", "action"}`` for the
template to show as buttons whose callback sends ``{"action": <action>}`` back. README has the
template's variable list.
"""

from __future__ import annotations

import json
from typing import Any

from conversations.messages import Message, Tone

# DingTalk's markdown message: about 5,000 characters are shown; the title is a short line
_TEXT_LIMIT, _TITLE_LIMIT = 5_000, 60
_MARK = {Tone.SUCCESS: "✅ ", Tone.WARNING: "⚠️ ", Tone.ERROR: "❌ "}
ACTION_PARAM = "action"


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _body(message: Message) -> list[str]:
    lines = [_MARK.get(message.tone, "") + message.text.replace("\n", "  \n")]
    for field in message.fields:
        value = field.value.replace(chr(10), "  " + chr(10))
        if field.url:  # a markdown link; brackets and spaces in the url would end it early
            target = field.url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
            value = f"[{value}]({target})"
        lines.append(f"**{field.label}**  \n{value}")
    return lines


def markdown(message: Message) -> dict[str, str]:
    """``msgParam`` of a ``sampleMarkdown`` message."""
    lines = [f"### {message.title}"] if message.title else []
    lines.extend(_body(message))
    if message.buttons:
        lines.append("\n".join(f"{i}. {button.label}" for i, button in enumerate(message.buttons, start=1)))
    if message.hint:
        lines.append(f"> {message.hint}")
    title = message.title or message.text.strip().split("\n", 1)[0]
    return {"title": _clip(title, _TITLE_LIMIT), "text": _clip("\n\n".join(lines), _TEXT_LIMIT)}


def batch_key(msg_key: str, param: dict[str, str]) -> str:
    """What identical messages share: sent to several people in one call."""
    return msg_key + "\0" + json.dumps(param, ensure_ascii=False, sort_keys=True)


def card_params(message: Message) -> dict[str, str]:
    """``cardParamMap`` for the card template."""
    buttons = [{"text": b.label, "action": b.action.encode()} for b in message.buttons]
    return {
        "title": _clip(message.title or "", 100),
        "markdown": _clip("\n\n".join(_body(message)), _TEXT_LIMIT),
        "hint": message.hint or "",
        "status": "open" if buttons else "done",
        "buttons": json.dumps(buttons, ensure_ascii=False),
    }


def callback_action(content: Any) -> str | None:
    """The action a card callback carries (``cardPrivateData.params.action``), if any."""
    if isinstance(content, str):
        try:
            content = json.loads(content)
        except ValueError:
            return None
    if not isinstance(content, dict):
        return None
    params = (content.get("cardPrivateData") or {}).get("params") or {}
    action = params.get(ACTION_PARAM) if isinstance(params, dict) else None
    return str(action) if action else None
