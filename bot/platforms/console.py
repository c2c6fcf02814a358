"""The console platform: the same interface as Slack, Feishu and DingTalk, in a terminal.

Buttons become numbered choices (typing the number answers), updates become a short "saved" line.
Everything sent is also kept in ``transcript`` so tests and the scripted demo can read it back.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from bot.platforms.base import EventHandler, IncomingEvent, Platform
from conversations.messages import Message, Tone

_MARKS = {Tone.SUCCESS: "✓ ", Tone.WARNING: "! ", Tone.ERROR: "✗ "}


@dataclass(frozen=True)
class Said:
    """One message as the console showed it."""

    recipient: str
    text: str
    message: Message
    updated: bool = False


def render(message: Message) -> str:
    """A message as terminal text, buttons numbered."""
    return _MARKS.get(message.tone, "") + message.plain_text()


def render_update(message: Message) -> str:
    """An update of an earlier message: just what changed."""
    if message.fields:
        field = message.fields[0]
        return f"{_MARKS.get(message.tone, '')}{field.label}: {field.value}"
    return render(message)


class ConsolePlatform(Platform):
    """Chat in a terminal (or in memory, for tests and the scripted demo)."""

    name = "console"

    def __init__(self, write: Callable[[str], None] | None = None) -> None:
        self._write = write
        self._on_event: EventHandler | None = None
        self._ids = itertools.count(1)
        self.transcript: list[Said] = []

    async def start(self, on_event: EventHandler) -> None:
        """Remember where typed lines go."""
        self._on_event = on_event

    async def stop(self) -> None:
        """Nothing to disconnect."""
        self._on_event = None

    async def say(self, email: str, text: str, *, event_id: str | None = None) -> None:
        """A person (by email) types ``text``."""
        await self._emit(
            IncomingEvent("console", event_id or uuid.uuid4().hex, email, "text", text=text, email=email)
        )

    async def click(self, email: str, action: str, *, event_id: str | None = None) -> None:
        """A person clicks a button whose action value is ``action``."""
        await self._emit(
            IncomingEvent(
                "console", event_id or uuid.uuid4().hex, email, "action", action=action, email=email
            )
        )

    async def _emit(self, event: IncomingEvent) -> None:
        if self._on_event is None:
            raise RuntimeError("console platform is not started")
        await self._on_event(event)

    def _show(self, said: Said) -> None:
        self.transcript.append(said)
        if self._write is not None:
            arrow = "  ↳" if said.updated else "→"
            body = said.text.replace("\n", "\n    ")
            self._write(f"{arrow} [{said.recipient}]\n    {body}")

    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Show a new message."""
        self._show(Said(recipient, render(message), message))
        return f"console-{next(self._ids)}"

    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        """Show that an earlier message changed."""
        self._show(Said(recipient, render_update(message), message, updated=True))

    def said_to(self, recipient: str) -> list[str]:
        """Everything shown to one person, in order."""
        return [s.text for s in self.transcript if s.recipient == recipient]
