"""One agenda end to end, the same for ``agenda @person`` and the scheduled card: gather the data, apply
the rules, render for the reader; and the record of it kept with the meeting (``OneOnOne.agenda``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.agenda import AgendaData, AgendaSettings, gather
from conversations.agenda_render import render, topic_texts
from conversations.agenda_rules import Topic, suggest
from conversations.messages import Message
from conversations.topic_rewriter import TopicText
from storage import one_on_one_pairs, people
from storage.people import PersonRow

VERSION = 1


@dataclass(frozen=True)
class Prepared:
    """An agenda's data and its rule topics, before it is worded for a reader."""

    person: PersonRow
    data: AgendaData
    topics: list[Topic]

    def texts(self, locale: str) -> list[TopicText]:
        """The topics worded in ``locale`` (what a rewriter may reword)."""
        return topic_texts(self.topics, locale)

    def card(self, texts: Sequence[TopicText], *, reader: PersonRow) -> Message:
        """The card as ``reader`` (the manager, or whoever asked) sees it."""
        return render(
            self.data, texts, locale=reader.locale, timezone=reader.timezone, person_name=self.person.name
        )

    def record(self, texts: Sequence[TopicText], *, locale: str) -> dict[str, Any]:
        """What the meeting row keeps: the rule topics (with what each was worded as) and the counts."""
        data = self.data
        return {
            "version": VERSION,
            "made_at": data.now.astimezone(UTC).isoformat(),
            "locale": locale,
            "topics": [
                {**topic.to_json(), "text": text.text, "reason": text.reason}
                for topic, text in zip(self.topics, texts, strict=True)
            ],
            "counts": {
                "done": len(data.done),
                "in_progress": data.in_progress,
                "overdue": len(data.overdue),
                "stuck": len(data.stuck),
                "open_actions": len(data.actions),
                "key_events": len(data.events),
                "recaps": len(data.recaps),
            },
        }


async def prepare(
    session: AsyncSession,
    *,
    person: PersonRow,
    now: datetime,
    sources: Sequence[str],
    settings: AgendaSettings,
    manager: PersonRow | None = None,
    meeting_at: datetime | None = None,
    period_days: int | None = None,
) -> Prepared | None:
    """The agenda about ``person`` for a 1:1 with ``manager`` (default: their manager now). Without a
    meeting time given, the pair's next meeting (if one is set and ahead) is the one it is for."""
    if manager is None:
        manager = await people.manager_of(session, person_id=person.id)
    if manager is not None and meeting_at is None:
        pair = await one_on_one_pairs.pair_of(session, manager_id=manager.id, report_id=person.id)
        if pair is not None and pair.active:
            period_days = period_days or pair.every_days
            meeting_at = pair.next_at if pair.next_at is not None and pair.next_at > now else None
    data = await gather(
        session,
        person=person,
        manager=manager,
        now=now,
        sources=sources,
        settings=settings,
        period_days=period_days,
        meeting_at=meeting_at,
    )
    return None if data is None else Prepared(person, data, suggest(data))
