"""When a person may be messaged: the rule the scheduler supplies, as seen by conversations.

Conversations may not import the scheduler (DESIGN's import table), yet an HR start and a reminder
must respect quiet hours and leave. The composition root hands the engine an implementation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from storage.people import PersonRow


class Timing(Protocol):
    """Moves a moment to the first one at which a person may be messaged."""

    def allowed_from(self, person: PersonRow, when: datetime, *, workdays: bool) -> datetime:
        """``when`` itself if allowed; else the first allowed moment after it (aware UTC).

        ``workdays`` also moves it off days the person does not work (a scheduled ritual does; an
        HR start by command does not: HR chose the moment).
        """
        ...


class Anytime:
    """No quiet hours, no calendars: every moment is allowed (tests of the conversation alone)."""

    def allowed_from(self, person: PersonRow, when: datetime, *, workdays: bool) -> datetime:
        """Always ``when``."""
        return when


ANYTIME = Anytime()
