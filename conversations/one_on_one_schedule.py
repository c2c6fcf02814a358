"""``1on1 @name every N`` and ``1on1 @name next DATE TIME``: a manager sets how often they meet a direct
report 1:1, or when they meet next (in the manager's own local time).

The ``oneonone`` command's handler hands these over (``is_schedule_command`` says which are
these); recording a 1:1 is that handler's own business. The scheduler places a pair's meetings
(``scheduler/one_on_ones.py``); a pair this command meets before the scheduler has is made here.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time

from conversations.agenda import settings_for, zone_of
from conversations.agenda_commands import resolve_words
from conversations.answers import normalize
from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.messages import Tone
from conversations.outgoing import Outgoing
from conversations.periods import parse_due
from storage import audit, one_on_one_pairs
from storage import one_on_one_records as records
from storage.clock import utcnow

EVERY_WORDS = ("every", "each", "每隔", "每")
NEXT_WORDS = ("next", "下一次", "下次")
MAX_EVERY_DAYS = 90
DEFAULT_EVERY_DAYS = 14  # a pair made here before the scheduler has made it (the model's default)
_EVERY = re.compile(
    r"^(?:every|each|每隔|每)\s*(\d{1,3})\s*(d|days?|天|日|w|wks?|weeks?|周|星期|个星期)?$", re.IGNORECASE
)
_WEEKS = ("w", "wk", "wks", "week", "weeks", "周", "星期", "个星期")
_NEXT = re.compile(r"^(?:next|下一次|下次)\s*(.*)$", re.IGNORECASE)
_GLUED = re.compile(r"^(?:每隔|每|下一次|下次)\d")  # "每2周", "下次12-03": the number glued on
_WHEN = re.compile(r"^(\S+?)(?:[T\s]+(\d{1,2})(?:[:：](\d{2})|点(?:(\d{1,2})分?)?))?$")


def _schedule_at(cmd: Command) -> int | None:
    """Where the schedule's words start in ``cmd.args``: the first ``every``/``next`` word after the
    name (which may be several words, "@Emma Smith every 14"), or None when there is none."""
    for index, arg in enumerate(cmd.args[1:], start=1):
        word = normalize(arg).lower()
        if word in EVERY_WORDS or word in NEXT_WORDS or _GLUED.match(word):
            return index
    return None


def _rest(cmd: Command) -> str:
    at = _schedule_at(cmd)
    return normalize(" ".join(cmd.args[at if at is not None else 1 :]))


def is_schedule_command(cmd: Command) -> bool:
    """Whether ``1on1 @name …`` is about the pair's schedule (every / next) rather than a record."""
    return _schedule_at(cmd) is not None


def parse_every(text: str) -> int | None:
    """Days between 1:1s from "every 14", "every 2 weeks", "每 7 天", "每2周"; None if unreadable."""
    match = _EVERY.match(normalize(text))
    if match is None:
        return None
    days = int(match.group(1)) * (7 if (match.group(2) or "").lower() in _WEEKS else 1)
    return days if 1 <= days <= MAX_EVERY_DAYS else None


def parse_when(text: str, *, timezone: str, now: datetime, default_time: time) -> datetime | None:
    """A meeting time in the manager's time zone, as UTC: "2026-12-03 15:00", "12-03 15:00",
    "12月3日 15点", or "2026-12-03" (at ``default_time``); None if unreadable."""
    match = _WHEN.match(normalize(text))
    if match is None:
        return None
    zone = zone_of(timezone)
    day = parse_due(match.group(1), today=now.astimezone(zone).date())
    if day is None:
        return None
    at = default_time
    if match.group(2) is not None:
        hour, minute = int(match.group(2)), int(match.group(3) or match.group(4) or 0)
        if hour > 23 or minute > 59:
            return None
        at = time(hour, minute)
    return datetime.combine(day, at, zone).astimezone(UTC)


async def set_cadence(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``1on1 @name every N`` / ``1on1 @name next DATE TIME``, for the person's direct manager."""
    at = _schedule_at(cmd)
    if len(cmd.args) < 2 or at is None:
        return ctx.say("agenda.cadence_usage", Tone.ERROR)
    name = list(cmd.args[:at])
    if not await records.has_reports(ctx.session, manager_id=ctx.person.id):
        # refused before the lookup: whether a name is in the org is not everyone's to learn
        await audit.write(
            ctx.session,
            actor_id=ctx.person.id,
            action="one_on_one.cadence.refused",
            detail={"mention": " ".join(name)[:200]},
        )
        return ctx.say("agenda.cadence_not_a_manager", Tone.ERROR)
    subject = await resolve_words(ctx, name, usage="agenda.cadence_usage")
    if isinstance(subject, list):
        return subject
    if subject.manager_id != ctx.person.id:
        await audit.write(
            ctx.session, actor_id=ctx.person.id, action="one_on_one.cadence.refused", subject_id=subject.id
        )
        return ctx.say("agenda.cadence_not_manager", Tone.ERROR, name=subject.name)
    rest = _rest(cmd)
    now = utcnow()
    every = parse_every(rest) if _NEXT.match(rest) is None else None
    next_at = None
    if every is None:
        nxt = _NEXT.match(rest)
        if nxt is None:
            bad = rest.split(maxsplit=1)[1] if len(rest.split()) > 1 else rest
            return ctx.say("agenda.bad_every", Tone.ERROR, value=bad[:40])
        settings = settings_for(ctx.engine)
        next_at = parse_when(
            nxt.group(1), timezone=ctx.person.timezone, now=now, default_time=settings.meeting_time
        )
        if next_at is None:
            return ctx.say("agenda.bad_next", Tone.ERROR, value=nxt.group(1)[:40])
        if next_at <= now:
            return ctx.say("agenda.next_past", Tone.ERROR, when=_local(next_at, ctx.person.timezone))
    pair = await _pair(ctx, subject.id)
    await one_on_one_pairs.set_cadence(ctx.session, pair_id=pair.id, every_days=every, next_at=next_at)
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="one_on_one.cadence",
        subject_id=subject.id,
        detail={"every_days": every, "next_at": next_at.isoformat() if next_at else None},
    )
    if next_at is not None:
        lead = f"{pair.lead_hours:g}"
        when = _local(next_at, ctx.person.timezone)
        return ctx.say(
            "agenda.next_set", Tone.SUCCESS, name=subject.name, when=when, days=pair.every_days, lead=lead
        )
    assert every is not None
    if pair.next_at is None or pair.next_at <= now:
        return ctx.say("agenda.every_set_unplaced", Tone.SUCCESS, name=subject.name, days=every)
    when = _local(pair.next_at, ctx.person.timezone)
    return ctx.say("agenda.every_set", Tone.SUCCESS, name=subject.name, days=every, next=when)


async def _pair(ctx: CommandContext, report_id: int) -> one_on_one_pairs.PairRow:
    """The active pair of the person speaking and their report, made or switched on if need be."""
    pair = await one_on_one_pairs.pair_of(ctx.session, manager_id=ctx.person.id, report_id=report_id)
    if pair is None:
        row = {
            "manager_id": ctx.person.id,
            "report_id": report_id,
            "every_days": DEFAULT_EVERY_DAYS,
            "lead_hours": 2.0,
            "created_at": utcnow(),
        }
        await one_on_one_pairs.add_pairs(ctx.session, rows=[row])
    elif not pair.active:
        await one_on_one_pairs.set_active(ctx.session, pair_ids=[pair.id], active=True)
    found = await one_on_one_pairs.pair_of(ctx.session, manager_id=ctx.person.id, report_id=report_id)
    assert found is not None
    return found


def _local(moment: datetime, timezone: str) -> str:
    return moment.astimezone(zone_of(timezone)).strftime("%Y-%m-%d %H:%M")
