"""The small interface every chat platform implements, and the neutral inbound event."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from conversations.messages import Message


def _storable(text: str) -> str:
    """``text`` as valid UTF-8: a lone surrogate (legal in JSON, not in UTF-8) becomes U+FFFD."""
    if text.isascii():
        return text
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


@dataclass(frozen=True)
class IncomingEvent:
    """Something a person did on a platform, already parsed out of the platform's payload."""

    platform: str
    event_id: str
    user_id: str
    # "home": the person opened the app's home screen (Slack App Home); "form": a submitted form,
    # its answers as JSON in ``text``
    kind: Literal["text", "action", "home", "form"]
    text: str = ""
    action: str = ""
    tenant: str = ""
    email: str | None = None
    # where replies to this event go, when the platform says (Slack: a slash command's response_url)
    reply_to: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_payload(self, *, max_chars: int) -> dict[str, Any]:
        """The journal's copy; text beyond ``max_chars`` is not kept (it would be refused anyway)."""
        return {
            "platform": _storable(self.platform),
            "event_id": _storable(self.event_id),
            "user_id": _storable(self.user_id),
            "kind": self.kind,
            "text": _storable(self.text[: max_chars + 1]),
            "text_length": len(self.text),
            "action": _storable(self.action[:2000]),
            "tenant": _storable(self.tenant),
            "email": _storable(self.email) if self.email is not None else None,
            "reply_to": self.reply_to[:2000],
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> IncomingEvent:
        """Rebuild an event from its journal copy (to replay it after a crash)."""
        return cls(
            platform=payload["platform"],
            event_id=payload["event_id"],
            user_id=payload["user_id"],
            kind=payload["kind"],
            text=payload.get("text", ""),
            action=payload.get("action", ""),
            tenant=payload.get("tenant", ""),
            email=payload.get("email"),
            reply_to=payload.get("reply_to", ""),
            extra={"text_length": payload.get("text_length", len(payload.get("text", "")))},
        )


class EventHandler(Protocol):
    """Where a platform hands its events (``App.on_event``).

    ``acknowledge`` is awaited once the event is journaled: a platform that must not acknowledge
    before then (so that nothing acknowledged can be lost) waits for it.
    """

    def __call__(
        self, event: IncomingEvent, *, acknowledge: Callable[[], Awaitable[None]] | None = None
    ) -> Coroutine[Any, Any, None]: ...


async def hand_over(
    on_event: EventHandler, event: IncomingEvent, *, working: set[asyncio.Task[None]], metrics: Any = None
) -> None:
    """Hand ``event`` to Cadence and return once it is journaled (the platform acknowledges after).

    So an acknowledged event is always journaled; its processing goes on in the background (kept in
    ``working``, for ``stop`` to wait on) without holding the acknowledgement up. If it fails before
    it is journaled, this raises: the platform must not acknowledge, and will deliver it again.
    """
    journaled = asyncio.Event()
    received = time.monotonic()

    async def acknowledge() -> None:
        journaled.set()
        if metrics is not None:
            metrics.acked(time.monotonic() - received)

    work = asyncio.create_task(on_event(event, acknowledge=acknowledge))
    working.add(work)
    work.add_done_callback(working.discard)
    waiting = asyncio.create_task(journaled.wait())
    await asyncio.wait({work, waiting}, return_when=asyncio.FIRST_COMPLETED)
    waiting.cancel()
    if not journaled.is_set():
        await work


class SendError(RuntimeError):
    """A send failed; ``retry_after`` (seconds) when the platform said when to try again.

    ``permanent``: no retry will help. ``in_doubt``: the platform may have accepted the message before
    the failure (the connection broke or timed out after the request went out, or the platform
    answered with a server error), so ask ``Platform.find_sent`` before sending it again.
    ``unreachable``: this platform user cannot be messaged at all (DingTalk ``invalidStaffIdList``,
    Feishu 230013 outside the app's availability range or 230053 stopped the bot, Slack
    ``user_not_found``): permanent, and the person's identity on the platform is marked unreachable
    until a message reaches them again, which HR sees in the cycle status.
    ``reason``: a short code for why, kept on the outbox row and put in words on the cycle status:
    "quota" (the app's API quota is used up: give a long ``retry_after``, e.g. until it renews),
    "rate_limit", "unreachable", "rejected", ... (``storage.outbox.REASONS``); when not given, delivery
    derives one (``reason_code``).
    """

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        permanent: bool = False,
        in_doubt: bool = False,
        unreachable: bool = False,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after, self.in_doubt, self.unreachable = retry_after, in_doubt, unreachable
        self.permanent = permanent or unreachable
        self.reason = reason or ("unreachable" if unreachable else None)

    def reason_code(self) -> str:
        """``reason`` if the platform gave one, else what the kind of failure says."""
        if self.reason:
            return self.reason
        if self.retry_after is not None:
            return "rate_limit"
        return "rejected" if self.permanent else "failed"


class Platform(ABC):
    """A chat platform adapter: receive events, send and update messages."""

    name: str
    # set by the composition root: form look-ups (bot.forms.FormService) for platforms with forms,
    # and the process's counters (bot.health.Metrics)
    forms: Any = None
    metrics: Any = None
    # set by the composition root: extra routes for a platform that serves HTTP itself
    extra_routes: Any = None

    @abstractmethod
    async def start(self, on_event: EventHandler) -> None:
        """Connect and start handing events to ``on_event``."""

    @abstractmethod
    async def stop(self) -> None:
        """Disconnect."""

    @abstractmethod
    async def send(self, recipient: str, message: Message, *, key: str) -> str:
        """Send ``message`` to ``recipient``; returns the platform's message id."""

    async def lookup(self, email: str) -> str | None:
        """The platform's user id for an email, where the platform can tell (else None)."""
        return None

    async def find_sent(self, recipient: str, key: str) -> str | None:
        """The message id ``send`` returned for ``key`` to ``recipient``, if that message is there.

        For a send whose outcome is unknown: the process died after the platform may have accepted
        the message but before the outbox row was marked sent, or ``send`` raised a ``SendError`` with
        ``in_doubt``. A found id means "already delivered: record it, do not send again". None means
        "not found, or this platform cannot tell": send again (at least once, possibly twice). This
        default cannot tell; a platform that can look (Slack: its recent DM messages, each carrying
        its key as metadata) overrides it. Raises ``SendError`` when the platform could not be asked.
        """
        return None

    @abstractmethod
    async def update(self, recipient: str, message_id: str, message: Message, *, key: str) -> None:
        """Replace an earlier message (e.g. a question, now showing the saved answer)."""
