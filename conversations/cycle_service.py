"""Start, remind and close cycles: shared by HR's chat commands and, later, the scheduler's planner."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from conversations.engine import Engine
from conversations.i18n import t
from conversations.messages import Message, Tone
from conversations.outgoing import Outgoing
from conversations.periods import local_date
from conversations.ritual_loader import digest
from conversations.ritual_model import Ritual
from storage import assignments, cycles, people
from storage.clock import utcnow
from storage.models import Cycle


class CycleClosedError(RuntimeError):
    """The ritual's cycle for this period exists and was closed: it is not started again."""

    def __init__(self, cycle: Cycle) -> None:
        super().__init__(f"cycle {cycle.id} ({cycle.ritual_key} {cycle.period}) is closed")
        self.cycle = cycle


@dataclass
class StartResult:
    """What starting (or extending) a cycle did."""

    cycle: Cycle
    created: bool
    added: int
    already: int
    started: int
    queued: int
    out: list[Outgoing]
    # people in quiet hours or on leave: their part starts at their next allowed moment
    deferred: int = 0
    deferred_until: datetime | None = None


async def start_cycle(
    session: AsyncSession,
    *,
    engine: Engine,
    ritual: Ritual,
    period: str,
    people_ids: list[int],
    due_at: datetime | None,
    started_by_id: int | None,
    scope: dict[str, object],
) -> StartResult:
    """Open the cycle of ``ritual`` for ``period`` (or reuse it) and give each person their part."""
    body = ritual.model_dump(mode="json", by_alias=True)
    ritual_id = await cycles.ensure_ritual_definition(
        session, key=ritual.key, digest=digest(ritual), body=body
    )
    cycle, created = await cycles.find_or_create_cycle(
        session,
        ritual_key=ritual.key,
        ritual_id=ritual_id,
        period=period,
        scope=scope,
        due_at=due_at,
        started_by_id=started_by_id,
    )
    assert cycle.id is not None
    if cycle.status != "open":
        raise CycleClosedError(cycle)
    result = StartResult(cycle, created, 0, 0, 0, 0, [])
    first_part = ritual.parts[0].id
    now = utcnow()
    for person_id in people_ids:
        person = await people.by_id(session, person_id=person_id)
        assert person is not None
        # HR chose the moment, so weekends count; quiet hours and leave still hold it back
        allowed = engine.timing.allowed_from(person, now, workdays=False)
        starts_at = allowed if allowed > now else None
        new = await assignments.create_assignment(
            session,
            cycle_id=cycle.id,
            person_id=person_id,
            subject_id=person_id,
            part=first_part,
            starts_at=starts_at,
        )
        if new is None:
            result.already += 1
            continue
        result.added += 1
        if starts_at is not None:
            result.deferred += 1
            result.deferred_until = max(result.deferred_until or starts_at, starts_at)
            continue
        opened = await engine.start_next(session, person=person, key_prefix=f"c{cycle.id}:p{person_id}")
        if opened:
            result.started += 1
            result.out.extend(opened)
        else:
            result.queued += 1
            title = ritual.title.get(person.locale)
            notice = Message(text=t("cmd.queued_notice", person.locale, title=title), tone=Tone.PLAIN)
            result.out.append(Outgoing(person_id, f"c{cycle.id}:p{person_id}:queued", notice, kind="notice"))
    return result


async def remind_cycle(session: AsyncSession, *, engine: Engine, cycle: Cycle) -> list[Outgoing]:
    """A reminder to everyone in the cycle who has not submitted yet."""
    assert cycle.id is not None
    ritual = await engine.ritual(session, cycle.ritual_id)
    out: list[Outgoing] = []
    now = utcnow()
    for row in await cycles.completion(session, cycle_id=cycle.id):
        if row.status not in assignments.OPEN:
            continue
        count = await cycles.count_reminder(session, assignment_id=row.assignment_id)
        person = await people.by_id(session, person_id=row.person_id)
        assert person is not None
        due = local_date(cycle.due_at, person.timezone)
        text = t("cmd.reminder", person.locale, title=ritual.title.get(person.locale), due=due)
        # a queued ritual has nothing to resume yet: it starts when the current one is done
        hint = t("chat.resume_hint" if row.status != "pending" else "cmd.queued_hint", person.locale)
        message = Message(text=text, hint=hint, tone=Tone.PROMPT)
        # HR's reminder goes now, except to someone in quiet hours or on leave: at their next moment
        due_at = engine.timing.allowed_from(person, now, workdays=False)
        key = f"c{cycle.id}:remind:{row.assignment_id}:{count}"
        out.append(Outgoing(row.person_id, key, message, kind="reminder", due_at=due_at))
    return out


async def close_cycle(session: AsyncSession, *, engine: Engine, cycle: Cycle) -> list[Outgoing]:
    """Close a cycle; people whose conversation it ends move on to their next queued ritual."""
    assert cycle.id is not None
    freed = await cycles.close_cycle(session, cycle_id=cycle.id)
    out: list[Outgoing] = []
    for person_id in freed:
        person = await people.by_id(session, person_id=person_id)
        if person is not None:
            out.extend(await engine.start_next(session, person=person, key_prefix=f"c{cycle.id}:closed"))
    return out
