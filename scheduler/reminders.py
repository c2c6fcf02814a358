"""Nudges for unfinished check-ins, and the manager's digest once a deadline has passed.

Each cycle carries its reminder policy (from its schedule; HR-started cycles use the settings'
default). A nudge goes out ``after_hours`` after the prompt and as often again, at most ``max``
times, never after the deadline; one that falls in quiet hours, on a day off or during leave is
moved to the next allowed moment instead of being sent. Keys are unique per nudge number, so a
crash and a re-run never send one twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from conversations.i18n import t
from conversations.messages import Message, Tone
from conversations.outgoing import Outgoing, outbox_rows
from conversations.periods import local_date
from conversations.ritual_loader import RitualCatalog
from conversations.ritual_model import Ritual
from conversations.timing import Timing
from storage import cycles, outbox, people, scheduling
from storage.cycles import ritual_body
from storage.engine import Database
from storage.models import Cycle

DIGEST_NAMES = 15  # a longer list is cut with "and N more": the status command shows everyone


@dataclass(frozen=True)
class Policy:
    """How a cycle nudges."""

    after: timedelta
    max: int

    @classmethod
    def of(cls, cycle: Cycle, default: Policy) -> Policy:
        """The cycle's own policy, or the default for cycles without one (started by HR)."""
        raw: Any = (cycle.scope or {}).get("reminders")
        if not isinstance(raw, dict):
            return default
        return cls(after=timedelta(hours=float(raw.get("after_hours", 24))), max=int(raw.get("max", 0)))


class Reminders:
    """Sends due nudges and post-deadline digests; the leader runs it every minute."""

    def __init__(
        self, db: Database, catalog: RitualCatalog, timing: Timing, *, platform: str, default: Policy
    ) -> None:
        self.db, self.catalog, self.timing = db, catalog, timing
        self.platform, self.default = platform, default
        self._rituals: dict[int, Ritual] = {}

    async def run(self, now: datetime) -> tuple[int, int]:
        """Nudges and digests queued at ``now``."""
        nudged = digests = 0
        async with self.db.sessions() as session:
            open_cycles = await cycles.open_cycles(session)
        for cycle in open_cycles:
            nudged += await self._nudge_cycle(cycle, now)
        async with self.db.sessions() as session:
            past = await scheduling.cycles_past_deadline(session, now=now)
        for cycle in past:
            digests += await self._digest(cycle, now)
        return nudged, digests

    async def _ritual(self, cycle: Cycle) -> Ritual:
        if cycle.ritual_id not in self._rituals:
            async with self.db.sessions() as session:
                body = await ritual_body(session, ritual_id=cycle.ritual_id)
            self._rituals[cycle.ritual_id] = Ritual.model_validate(body)
        return self._rituals[cycle.ritual_id]

    async def _nudge_cycle(self, cycle: Cycle, now: datetime) -> int:
        assert cycle.id is not None
        policy = Policy.of(cycle, self.default)
        if policy.max <= 0 or (cycle.due_at is not None and cycle.due_at <= now):
            return 0
        ritual = await self._ritual(cycle)
        sent = 0
        async with self.db.sessions() as session, session.begin():
            due = await scheduling.reminders_due(
                session, cycle_id=cycle.id, now=now, first_after=now - policy.after, limit_sent=policy.max
            )
            by_id = {p.id: p for p in await people.by_ids(session, person_ids=[d.person_id for d in due])}
            out: list[Outgoing] = []
            for row in due:
                person = by_id.get(row.person_id)
                if person is None:
                    continue
                allowed = self.timing.allowed_from(person, now, workdays=True)
                if allowed > now:
                    await scheduling.set_reminder(
                        session, assignment_id=row.assignment_id, next_at=allowed, sent=False
                    )
                    continue
                number = row.reminders_sent + 1
                following = now + policy.after if number < policy.max else None
                await scheduling.set_reminder(
                    session, assignment_id=row.assignment_id, next_at=following, sent=True
                )
                title = ritual.title.get(person.locale)
                due_text = local_date(cycle.due_at, person.timezone)
                text = t("sched.nudge", person.locale, title=title, due=due_text)
                hint = t("chat.resume_hint", person.locale)
                message = Message(text=text, hint=hint, tone=Tone.PROMPT)
                key = f"c{cycle.id}:nudge:{row.assignment_id}:{number}"
                out.append(Outgoing(person.id, key, message, kind="reminder"))
                sent += 1
            await outbox.enqueue(session, rows=outbox_rows(out, platform=self.platform))
        return sent

    async def _digest(self, cycle: Cycle, now: datetime) -> int:
        """One message per manager naming their people who have not submitted; once per cycle."""
        assert cycle.id is not None
        ritual = await self._ritual(cycle)
        first_part = ritual.parts[0].id
        async with self.db.sessions() as session, session.begin():
            if not await scheduling.mark_digest_sent(session, cycle_id=cycle.id, now=now):
                return 0
            missing: dict[int, list[str]] = {}
            rows = await cycles.completion(session, cycle_id=cycle.id)
            unanswered = ("pending", "active", "snoozed", "paused")
            open_ids = [r.person_id for r in rows if r.part == first_part and r.status in unanswered]
            for person in await people.by_ids(session, person_ids=open_ids):
                if person.manager_id is not None:
                    missing.setdefault(person.manager_id, []).append(person.name)
            out: list[Outgoing] = []
            for manager in await people.by_ids(session, person_ids=list(missing)):
                if not manager.active:
                    continue
                names = sorted(missing[manager.id])
                separator = "、" if manager.locale.startswith("zh") else ", "
                shown = separator.join(names[:DIGEST_NAMES])
                if len(names) > DIGEST_NAMES:
                    shown = t(
                        "sched.digest_more", manager.locale, names=shown, more=len(names) - DIGEST_NAMES
                    )
                text = t(
                    "sched.digest",
                    manager.locale,
                    title=ritual.title.get(manager.locale),
                    period=cycle.period,
                    due=local_date(cycle.due_at, manager.timezone),
                    names=shown,
                )
                # the digest waits for the manager's working hours like everything else
                due_at = self.timing.allowed_from(manager, now, workdays=True)
                out.append(
                    Outgoing(
                        manager.id,
                        f"c{cycle.id}:digest:m{manager.id}",
                        Message(text=text, tone=Tone.PLAIN),
                        kind="digest",
                        due_at=due_at,
                    )
                )
            await outbox.enqueue(session, rows=outbox_rows(out, platform=self.platform))
        return len(out)
