"""Inbound path: journal the event, then run it as a command or a conversation turn, in one transaction.

The journal row is committed first (so the platform can be acknowledged and a crash loses nothing);
the work and the messages it causes are committed together with the row's "processed" mark, so a
replay after a crash redoes exactly the work that was lost, and the outbox keys make it send once.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bot.intake import Acknowledge, Intake, Known, clear_marks
from bot.platforms.base import IncomingEvent
from conversations import quality_sampling
from conversations.command_parser import looks_like_command
from conversations.commands import CommandContext, run_command
from conversations.engine import Engine
from conversations.i18n import t
from conversations.messages import Action, Message, Tone
from conversations.outgoing import Outgoing, PersonContext, Replies, outbox_rows
from conversations.status_views import home
from storage import journal, outbox, people
from storage.assignments import StaleStateError, holding_conversation
from storage.engine import Database

log = logging.getLogger(__name__)
_ATTEMPTS = 3


class Router:
    """Turns inbound events into state changes and outbox rows."""

    def __init__(self, db: Database, engine: Engine, *, default_locale: str, max_message_chars: int) -> None:
        self.db, self.engine = db, engine
        self.default_locale, self.max_message_chars = default_locale, max_message_chars
        self._intake = Intake(self)
        self.outbox_rows = outbox_rows

    async def receive(self, event: IncomingEvent, *, acknowledge: Acknowledge | None = None) -> bool:
        """Journal and process one event; False when it is a re-delivery of one already seen.

        ``acknowledge`` is awaited as soon as the event is journaled (before it is processed): that
        is when a platform may be told the event arrived.
        """
        payload = event.to_payload(max_chars=self.max_message_chars)
        return await self._intake.submit(event, payload, acknowledge)

    async def replay_unprocessed(self) -> int:
        """Process events journaled before a crash but never processed; returns how many."""
        replayed, last_id = 0, 0
        while True:
            async with self.db.sessions() as session:
                pending = await journal.unprocessed(session, after_id=last_id)
            if not pending:
                return replayed
            for journal_id, _platform, payload in pending:
                await self.process(journal_id, IncomingEvent.from_payload(payload))
            replayed, last_id = replayed + len(pending), pending[-1][0]

    async def process(
        self, journal_id: int, event: IncomingEvent, *, arrived: datetime | None = None
    ) -> None:
        """Run one journaled event; a failure is recorded and answered, never swallowed.

        ``arrived``: when the event reached this process, if known (see ``clear_marks``).
        """
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                async with self.db.sessions() as session, session.begin():
                    # claim the row first: another process replaying the same row waits on this
                    # row lock, then finds it processed and does nothing
                    if not await journal.claim(session, journal_id=journal_id):
                        return
                    out = await self.handle(session, journal_id, event)
                    await outbox.enqueue(session, rows=outbox_rows(out, platform=event.platform))
                    # one event alone (a replay, or a batch that failed): the statement is no
                    # burden here, and whoever wrote is reachable
                    await clear_marks(session, [(event, arrived)])
                return
            except (StaleStateError, IntegrityError) as exc:
                # another process moved this conversation, or started one for the same person (the
                # one-active-per-person index), between our read and our write: read again
                log.info("conversation moved under event %s (attempt %d): %s", event.event_id, attempt, exc)
            except Exception as exc:
                log.exception("event %s failed", event.event_id)
                await self._record_failure(journal_id, event, exc, arrived)
                return
        await self._record_failure(journal_id, event, RuntimeError("conversation kept changing"), arrived)

    async def _record_failure(
        self, journal_id: int, event: IncomingEvent, exc: Exception, arrived: datetime | None
    ) -> None:
        async with self.db.sessions() as session, session.begin():
            person = await self._person(session, event)
            locale = person.locale if person else self.default_locale
            message = Message(text=t("router.failed", locale), tone=Tone.ERROR)
            recipient = None if person else event.user_id
            row = Outgoing(
                person.id if person else None, f"in{journal_id}:failed", message, recipient=recipient
            )
            await outbox.enqueue(session, rows=outbox_rows([row], platform=event.platform))
            await journal.mark_failed(session, journal_id=journal_id, error=f"{type(exc).__name__}: {exc}")
            if person is not None:
                await clear_marks(session, [(event, arrived)])  # what they wrote failed, but they wrote

    async def _person(self, session: AsyncSession, event: IncomingEvent) -> PersonContext | None:
        person = await people.resolve(
            session,
            platform=event.platform,
            external_id=event.user_id,
            tenant=event.tenant,
            email=event.email,
        )
        return person if person is not None and person.active else None

    async def handle(
        self, session: AsyncSession, journal_id: int, event: IncomingEvent, known: Known | None = None
    ) -> list[Outgoing]:
        """What one journaled event does, in the caller's transaction (which has claimed it).

        ``known`` is the person and conversation when the caller read them for a whole batch.
        """
        if known is not None:
            person = known.person if known.person is not None and known.person.active else None
        else:
            person = await self._person(session, event)
        if person is None:
            return [await self._unknown_user(session, journal_id, event)]
        replies = Replies(f"in{journal_id}", person.id, reply_to=event.reply_to)
        length = int(event.extra.get("text_length", len(event.text)))
        if length > self.max_message_chars:
            message = Message(
                text=t(
                    "chat.too_big", person.locale, length=f"{length:,}", limit=f"{self.max_message_chars:,}"
                ),
                tone=Tone.ERROR,
            )
            return [replies(message)]
        if event.kind == "form":
            form = json.loads(event.text)
            answers = {str(step): str(value) for step, value in form["answers"].items()}
            return await self.engine.on_form(
                session,
                person=person,
                assignment_id=int(form["assignment_id"]),
                answers=answers,
                replies=replies,
            )
        if event.kind == "home":
            return [replies(await home(session, self.engine, person))]
        if event.kind == "action":
            action = Action.decode(event.action)
            if action is None:
                return [replies(Message(text=t("chat.already_answered", person.locale), tone=Tone.WARNING))]
            if action.step == quality_sampling.ACTION_STEP:  # HR scoring a sampled 1:1 record
                return await quality_sampling.on_action(
                    session, person=person, action=action, replies=replies
                )
            return await self.engine.on_action(session, person=person, action=action, replies=replies)
        if looks_like_command(event.text):
            ctx = CommandContext(session=session, person=person, replies=replies, engine=self.engine)
            return await run_command(ctx, event.text)
        conv = known.conv if known is not None else await holding_conversation(session, person_id=person.id)
        if conv is None:
            # a reviewer's typed score or comment for a sampled 1:1 record, when one is waiting
            taken = await quality_sampling.on_text(session, person=person, text=event.text, replies=replies)
            if taken is not None:
                return taken
            ctx = CommandContext(session=session, person=person, replies=replies, engine=self.engine)
            return await run_command(ctx, event.text)
        return await self.engine.on_text(session, person=person, text=event.text, replies=replies, conv=conv)

    async def _unknown_user(self, session: AsyncSession, journal_id: int, event: IncomingEvent) -> Outgoing:
        admins = await people.hr_admins(session)
        contact = ", ".join(f"{a.name} <{a.email}>" for a in admins[:3])
        text = "\n".join(
            t("router.unknown_user", loc, contact=contact or t("router.hr_contact", loc))
            for loc in ("zh-CN", "en")
        )
        message = Message(text=text, tone=Tone.WARNING)
        return Outgoing(None, f"in{journal_id}:unknown", message, recipient=event.user_id)
