"""The neutral message model: what a person sees, before any platform renders it.

Every platform turns a ``Message`` into its own widgets (Block Kit, Feishu card, DingTalk markdown,
console text). Buttons carry an ``Action`` that names the assignment, step and state version they
were made for, so a click on an old message is recognised instead of corrupting state.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class Tone(StrEnum):
    """How a platform may colour or mark a message."""

    PLAIN = "plain"
    PROMPT = "prompt"
    SUCCESS = "success"
    WARNING = "warning"
    ERROR = "error"


_MAX_ID = 2**31  # ids and versions are 32-bit integer columns on both databases


class Action(BaseModel):
    """What a button press means; serialised into the platform's callback value."""

    model_config = ConfigDict(frozen=True)
    assignment_id: int
    step: str
    version: int
    value: str

    def encode(self) -> str:
        """A compact callback value (< 2000 chars, Slack's limit for a button value)."""
        return f"v1|{self.assignment_id}|{self.step}|{self.version}|{self.value}"

    @classmethod
    def decode(cls, raw: str) -> Action | None:
        """The action a callback value stands for, or None if it is not ours."""
        parts = raw.split("|", 4)
        if len(parts) != 5 or parts[0] != "v1":
            return None
        try:
            assignment_id, version = int(parts[1]), int(parts[3])
        except ValueError:
            return None
        if not (0 < assignment_id < _MAX_ID and 0 <= version < _MAX_ID):
            return None  # forged: no row has such an id
        return cls(assignment_id=assignment_id, step=parts[2], version=version, value=parts[4])


class Button(BaseModel):
    """A choice the person can click, or type (by number or by label) where buttons don't exist."""

    model_config = ConfigDict(frozen=True)
    label: str
    action: Action
    primary: bool = False


class Field_(BaseModel):
    """A labelled value in a summary (question → answer); with ``url``, the value links there
    (a task in Jira, an authorisation page): each platform renders the link natively."""

    model_config = ConfigDict(frozen=True)
    label: str
    value: str
    url: str | None = None


class Message(BaseModel):
    """One message to one person."""

    model_config = ConfigDict(frozen=True)
    text: str
    title: str | None = None
    hint: str | None = None
    tone: Tone = Tone.PLAIN
    fields: tuple[Field_, ...] = ()
    buttons: tuple[Button, ...] = ()
    # a long ritual may offer to be answered in one form where the platform has forms
    form_assignment_id: int | None = None
    ephemeral: bool = False
    # the idempotency key of an earlier message this one replaces (e.g. a prompt marked "saved")
    replaces: str | None = None
    meta: dict[str, str] = Field(default_factory=dict)

    def plain_text(self) -> str:
        """The whole message as text; buttons become numbered choices a typed reply can answer."""
        lines: list[str] = []
        if self.title:
            lines.append(f"【{self.title}】")
        lines.append(self.text)
        for field in self.fields:
            link = f" <{field.url}>" if field.url else ""
            lines.append(f"  • {field.label}: {field.value}{link}")
        for i, button in enumerate(self.buttons, start=1):
            lines.append(f"  [{i}] {button.label}")
        if self.hint:
            lines.append(f"  ({self.hint})")
        return "\n".join(lines)
