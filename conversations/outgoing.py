"""What the engine and the command handlers ask to be sent; the router puts it in the outbox."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from conversations.messages import Message
from storage.people import PersonRow


@dataclass(frozen=True)
class Outgoing:
    """One message for one person, with the key that makes it unique and the state it belongs to."""

    person_id: int | None
    key: str
    message: Message
    kind: str = "reply"
    # tie a prompt to the state it was made for: if the state moves on first, it is not sent
    assignment_id: int | None = None
    assignment_version: int | None = None
    due_at: datetime | None = None
    # the platform's own user id, for someone who is not (yet) a person in the org data
    recipient: str | None = None


# Who is talking, as the engine and commands need it (a plain record read by storage).
PersonContext = PersonRow


class Replies:
    """Numbered reply keys for one inbound event, so replaying the event never sends twice."""

    def __init__(self, prefix: str, person_id: int, *, reply_to: str = "") -> None:
        self._prefix, self._person_id, self._n = prefix, person_id, 0
        # where the platform wants answers to this event (Slack: a slash command's response_url):
        # the replies go there, seen only by the person, instead of into their DM
        self._reply_to = reply_to

    def __call__(self, message: Message) -> Outgoing:
        """An Outgoing reply with the next key."""
        self._n += 1
        if self._reply_to:
            message = message.model_copy(
                update={"ephemeral": True, "meta": {**message.meta, "reply_to": self._reply_to}}
            )
        return Outgoing(self._person_id, f"{self._prefix}:r{self._n}", message)


def outbox_rows(out: list[Outgoing], *, platform: str) -> list[dict[str, Any]]:
    """Outbox rows for what the engine and commands produced."""
    return [
        {
            "idempotency_key": o.key,
            "person_id": o.person_id,
            "platform": platform,
            "kind": o.kind,
            "payload": o.message.model_dump(mode="json"),
            "assignment_id": o.assignment_id,
            "assignment_version": o.assignment_version,
            "due_at": o.due_at,
            "recipient": o.recipient,
        }
        for o in out
    ]
