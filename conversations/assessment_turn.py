"""The quarterly assessment's manager part, shown with the key events noted about the person
(``note @alice …``) in the quarter, beside their own answers: the issue's "it appears in … the
quarterly assessment"."""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from conversations.engine import Turn
from conversations.i18n import t
from conversations.messages import Field_
from storage import audit, people
from storage import one_on_one_records as records
from storage.clock import utcnow

_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
MAX_SHOWN = 20


def quarter_start(period: str, *, today: date) -> date:
    """The first day of the quarter ``2026-Q4`` names (the last 92 days' start for any other label)."""
    match = _QUARTER.match(period)
    if match is None:
        return today - timedelta(days=92)
    return date(int(match.group(1)), (int(match.group(2)) - 1) * 3 + 1, 1)


class AssessmentTurn(Turn):
    """A turn of the quarterly assessment; its manager part opens with the quarter's key events."""

    async def _alongside(self) -> tuple[Field_, ...]:
        shown = await super()._alongside()
        if self.part.audience != "manager":
            return shown
        subject = await people.by_id(self.session, person_id=self.conv.subject_id)
        zone = ZoneInfo(subject.timezone if subject is not None else self.person.timezone)
        now = utcnow()
        first = quarter_start(await self.engine.period(self.session, self.conv.cycle_id), today=now.date())
        since = datetime.combine(first, datetime.min.time(), zone)
        events = await records.key_events(
            self.session, subject_id=self.conv.subject_id, since=since, limit=MAX_SHOWN
        )
        if not events:
            return shown
        await audit.write(
            self.session,
            actor_id=self.person.id,
            action="record.read",
            subject_id=self.conv.subject_id,
            detail={"via": "quarterly assessment", "kinds": ["key_events"]},
        )
        noted = tuple(
            Field_(
                label=t(
                    "oneonone.event_label",
                    self.locale,
                    date=e.created_at.astimezone(zone).strftime("%Y-%m-%d"),
                    author=e.author_name,
                ),
                value=e.text,
            )
            for e in events
        )
        return shown + noted
