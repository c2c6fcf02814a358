"""Forms for platforms that have them: who is asking, then what conversations.forms says.

Opening a form must happen within the platform's 3 seconds (Slack's trigger_id), and a submitted
form must be checked in the acknowledgement; both only read, so they run here directly. Storing the
answers goes through the journal like every other event.
"""

from __future__ import annotations

from conversations import forms
from conversations.engine import Engine
from conversations.forms import Form
from storage import people
from storage.engine import Database


class FormService:
    """Read-only form look-ups for the platform adapters."""

    def __init__(self, db: Database, engine: Engine) -> None:
        self.db, self.engine = db, engine

    async def form(
        self, *, platform: str, user_id: str, email: str | None, assignment_id: int
    ) -> Form | None:
        """The form for the person's assignment, or None if it is not theirs to answer now."""
        async with self.db.sessions() as session:
            person = await people.resolve(session, platform=platform, external_id=user_id, email=email)
            if person is None or not person.active:
                return None
            return await forms.form_for(session, self.engine, person, assignment_id)

    async def check(
        self, *, platform: str, user_id: str, email: str | None, assignment_id: int, answers: dict[str, str]
    ) -> dict[str, str] | None:
        """``{step: why}`` for answers that cannot be taken; None if the assignment is not theirs."""
        async with self.db.sessions() as session:
            person = await people.resolve(session, platform=platform, external_id=user_id, email=email)
            if person is None or not person.active:
                return None
            return await forms.check(session, self.engine, person, assignment_id, answers)
