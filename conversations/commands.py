"""Run a parsed command for a person: help, cycle start/status/remind/close, me, me tasks, connect
tasks, lang, view, away."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from zoneinfo import ZoneInfo

from conversations import (
    agenda_commands,
    cycle_service,
    hr_stats,
    one_on_one_commands,
    peer_feedback_commands,
    permissions,
    record_commands,
    status_views,
    task_evidence,
)
from conversations.answers import normalize, small_number
from conversations.away import parse_away
from conversations.command_parser import Command, CommandError, parse_command
from conversations.commands_base import CommandContext
from conversations.i18n import normalize_locale, t
from conversations.messages import Field_, Message, Tone
from conversations.outgoing import Outgoing
from conversations.periods import default_due, end_of_day, local_date, parse_due, period_label
from conversations.task_evidence import RECENT_DAYS
from storage import audit, cycles, people
from storage.clock import utcnow
from storage.models import Cycle

log = logging.getLogger(__name__)


Handler = Callable[[CommandContext, Command], Awaitable[list[Outgoing]]]


async def run_command(ctx: CommandContext, text: str) -> list[Outgoing]:
    """Parse and run ``text``; every failure becomes a reply naming what was wrong."""
    parsed = parse_command(text)
    if isinstance(parsed, CommandError):
        return ctx.say(parsed.key, Tone.ERROR, **parsed.values)
    key = f"{parsed.name}.{parsed.sub}" if parsed.sub else parsed.name
    return await HANDLERS[key](ctx, parsed)


async def _help(ctx: CommandContext, _: Command) -> list[Outgoing]:
    sections = ["cmd.help_everyone"]
    if await people.reports_of(ctx.session, manager_id=ctx.person.id):
        sections.append("cmd.help_manager")
    if ctx.person.is_hr:
        sections.append("cmd.help_hr")
    text = "\n\n".join(t(s, ctx.person.locale) for s in sections)
    return [ctx.replies(Message(title=t("cmd.help_title", ctx.person.locale), text=text))]


async def _refuse(
    ctx: CommandContext, action: str, needed: str, *, detail: dict[str, object] | None = None
) -> list[Outgoing]:
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action=f"{action}.refused",
        detail={"needed": needed, **(detail or {})},
    )
    return ctx.say("cmd.not_allowed", Tone.ERROR, role=t(f"cmd.role_{needed}", ctx.person.locale))


def _split_list(raw: str | None) -> list[str]:
    return [x.strip() for x in (raw or "").replace("，", ",").split(",") if x.strip()]


async def _cycle_start(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    if not ctx.person.is_hr:
        return await _refuse(ctx, "cycle.start", "hr")
    if len(cmd.args) != 1:
        return ctx.say("cmd.start_usage", Tone.ERROR)
    ritual = ctx.engine.catalog.find(cmd.args[0])
    if ritual is None:
        return ctx.say("cmd.unknown_ritual", Tone.ERROR, word=cmd.args[0][:40])
    now = utcnow()
    local_today = now.astimezone(ZoneInfo(ctx.person.timezone)).date()
    due_at = default_due(now, days=ritual.due_days, timezone=ctx.person.timezone)
    if "due" in cmd.options:
        day = parse_due(cmd.options["due"], today=local_today)
        if day is None:
            return ctx.say("cmd.bad_due", Tone.ERROR, value=cmd.options["due"][:40])
        if day < local_today:
            return ctx.say("cmd.due_past", Tone.ERROR, value=day.isoformat())
        due_at = end_of_day(day, ctx.person.timezone)
    departments, emails = (
        _split_list(cmd.options.get("dept")),
        [e.lower() for e in _split_list(cmd.options.get("people"))],
    )
    scoped = await cycles.people_in_scope(ctx.session, departments=departments, emails=emails)
    unknown = sorted(set(emails) - {p.email for p in scoped})
    if unknown:
        return ctx.say("cmd.unknown_people", Tone.ERROR, emails=", ".join(unknown[:10]))
    empty_depts = [d for d in departments if not any(p.department.lower() == d.lower() for p in scoped)]
    if empty_depts:
        return ctx.say("cmd.unknown_dept", Tone.ERROR, dept=", ".join(empty_depts))
    if not scoped:
        return ctx.say("cmd.nobody_in_scope", Tone.ERROR)
    scope: dict[str, object] = {"departments": departments, "people": emails}
    try:
        result = await cycle_service.start_cycle(
            ctx.session,
            engine=ctx.engine,
            ritual=ritual,
            period=period_label(ritual.period, local_today),
            people_ids=[p.id for p in scoped],
            due_at=due_at,
            started_by_id=ctx.person.id,
            scope=scope,
        )
    except cycle_service.CycleClosedError as closed:
        title = ritual.title.get(ctx.person.locale)
        return ctx.say(
            "cmd.period_closed", Tone.ERROR, id=closed.cycle.id, title=title, period=closed.cycle.period
        )
    cycle = result.cycle
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="cycle.start",
        detail={
            "cycle": cycle.id,
            "ritual": ritual.key,
            "period": cycle.period,
            "added": result.added,
            **scope,
        },
    )
    due_text = local_date(cycle.due_at or due_at, ctx.person.timezone)
    key = "cmd.started" if result.created else "cmd.extended"
    locale = ctx.person.locale
    text = t(
        key,
        locale,
        id=cycle.id,
        title=ritual.title.get(locale),
        period=cycle.period,
        added=result.added,
        already=result.already,
        started=result.started,
        queued=result.queued,
        due=due_text,
    )
    if result.deferred_until is not None:
        until = result.deferred_until.astimezone(ZoneInfo(ctx.person.timezone)).strftime("%Y-%m-%d %H:%M")
        text += "\n" + t("cmd.deferred", locale, count=result.deferred, until=until)
    reply = [ctx.replies(Message(text=text, tone=Tone.SUCCESS))]
    return result.out + reply


async def _cycle_by_arg(ctx: CommandContext, cmd: Command) -> Cycle | list[Outgoing]:
    cycle_id = small_number(normalize(cmd.args[0]).lstrip("#")) if len(cmd.args) == 1 else None
    if cycle_id is None:
        return ctx.say("cmd.needs_cycle_id", Tone.ERROR, sub=cmd.sub or "")
    cycle = await cycles.get_cycle(ctx.session, cycle_id=cycle_id)
    if cycle is None:
        return ctx.say("cmd.no_such_cycle", Tone.ERROR, id=cmd.args[0].lstrip("#"))
    return cycle


async def _open_cycle_for_hr(ctx: CommandContext, cmd: Command, action: str) -> Cycle | list[Outgoing]:
    """The open cycle an HR command names, or the reply saying why there is none to act on."""
    if not ctx.person.is_hr:
        return await _refuse(ctx, action, "hr")
    cycle = await _cycle_by_arg(ctx, cmd)
    if not isinstance(cycle, list) and cycle.status != "open":
        return ctx.say("cmd.cycle_closed", Tone.ERROR, id=cycle.id)
    return cycle


async def _cycle_remind(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    cycle = await _open_cycle_for_hr(ctx, cmd, "cycle.remind")
    if isinstance(cycle, list):
        return cycle
    out = await cycle_service.remind_cycle(ctx.session, engine=ctx.engine, cycle=cycle)
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="cycle.remind",
        detail={"cycle": cycle.id, "sent": len(out)},
    )
    return out + ctx.say("cmd.reminded", Tone.SUCCESS, id=cycle.id, count=len(out))


async def _cycle_close(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    cycle = await _open_cycle_for_hr(ctx, cmd, "cycle.close")
    if isinstance(cycle, list):
        return cycle
    out = await cycle_service.close_cycle(ctx.session, engine=ctx.engine, cycle=cycle)
    rows = await cycles.completion(ctx.session, cycle_id=cycle.id or 0)
    done = sum(1 for r in rows if r.status == "submitted")
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="cycle.close",
        detail={"cycle": cycle.id, "submitted": done},
    )
    return out + ctx.say("cmd.closed", Tone.SUCCESS, id=cycle.id, done=done, total=len(rows))


async def _cycle_status(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    reports = await people.reports_of(ctx.session, manager_id=ctx.person.id)
    if not ctx.person.is_hr and not reports:
        return await _refuse(ctx, "cycle.status", "manager")
    visible = None if ctx.person.is_hr else reports
    if cmd.args:
        cycle = await _cycle_by_arg(ctx, cmd)
        if isinstance(cycle, list):
            return cycle
        message = await status_views.cycle_detail(
            ctx.session, ctx.engine, cycle, ctx.person.locale, visible, timezone=ctx.person.timezone
        )
    else:
        message = await status_views.open_cycles(ctx.session, ctx.engine, ctx.person.locale, visible)
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="cycle.status",
        detail={"cycle": cmd.args[0] if cmd.args else "open"},
    )
    return [ctx.replies(message)]


async def _me(ctx: CommandContext, _: Command) -> list[Outgoing]:
    return [ctx.replies(await status_views.my_rituals(ctx.session, ctx.engine, ctx.person))]


async def _me_tasks(ctx: CommandContext, _: Command) -> list[Outgoing]:
    """``me tasks``: the person's items of the last two weeks, and anything overdue, with links."""
    sources = ctx.task_sources
    locale = ctx.person.locale
    title = t("tasks.me_title", locale)
    if not sources.enabled:
        return [ctx.replies(Message(title=title, text=t("tasks.none_configured", locale)))]
    now = utcnow()
    window = task_evidence.recent_window(timezone=ctx.person.timezone, now=now)
    found = await task_evidence.gather(
        ctx.session,
        wanted={ctx.person.id: (ctx.person.id, ctx.person.timezone, window)},
        sources=sources.enabled,
        now=now,
    )
    evidence = found[ctx.person.id]
    names = task_evidence.sources_text(evidence.sources, locale)
    # "connect tasks" is the way to a person's Feishu tasks: worth saying where they may be missing
    hint = t("tasks.connect_hint", locale) if sources.needing_auth and sources.auth_links else None
    if evidence.empty:
        text = t("tasks.me_nothing", locale, sources=names, days=RECENT_DAYS)
        return [ctx.replies(Message(title=title, text=text, hint=hint))]
    text = t(
        "tasks.me_head",
        locale,
        sources=names,
        days=RECENT_DAYS,
        period=t("tasks.period", locale, first=evidence.first_day, last=evidence.last_day),
        done=evidence.total(task_evidence.DONE),
        progress=evidence.total(task_evidence.IN_PROGRESS),
        overdue=evidence.total(task_evidence.OVERDUE),
    )
    fields = task_evidence.fields(evidence, locale, ctx.person.timezone)
    return [ctx.replies(Message(title=title, text=text, fields=fields, hint=hint))]


async def _connect_tasks(ctx: CommandContext, _: Command) -> list[Outgoing]:
    """``connect tasks``: a link to let Cadence read the person's tasks, where a source needs one."""
    sources = ctx.task_sources
    locale = ctx.person.locale
    if not sources.enabled:
        return ctx.say("tasks.connect_none")
    needing = sources.needing_auth
    if not needing:
        return ctx.say(
            "tasks.connect_not_needed", sources=task_evidence.sources_text(sources.enabled, locale)
        )
    names = task_evidence.sources_text(needing, locale)
    if sources.auth_links is None:
        return ctx.say("tasks.connect_unavailable", Tone.WARNING, sources=names)
    try:
        link = await sources.auth_links.link(ctx.person.id, locale, session=ctx.session)
    except Exception:  # the provider's trouble (a network call, its database): said, logged, not fatal
        log.exception("making a task authorisation link for person %s failed", ctx.person.id)
        return ctx.say("tasks.connect_failed", Tone.ERROR)
    if not link:
        return ctx.say("tasks.connect_unavailable", Tone.WARNING, sources=names)
    button = Field_(label=names, value=t("tasks.connect_open", locale), url=link)
    message = Message(
        title=t("tasks.connect_title", locale),
        text=t("tasks.connect_text", locale, sources=names),
        fields=(button,),
        tone=Tone.PROMPT,
    )
    return [ctx.replies(message)]


async def _lang(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    word = cmd.args[0] if len(cmd.args) == 1 else ""
    locale = normalize_locale(word, default="")
    if not locale:
        return ctx.say("cmd.lang_usage", Tone.ERROR, value=word[:20])
    await people.set_preferred_locale(ctx.session, person_id=ctx.person.id, locale=locale)
    return [ctx.replies(Message(text=t("cmd.lang_set", locale), tone=Tone.SUCCESS))]


async def _view(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    if not cmd.args:
        return ctx.say("cmd.view_usage", Tone.ERROR)
    email = cmd.args[0].strip().lower()
    reports = await people.reports_of(ctx.session, manager_id=ctx.person.id)
    if not (ctx.person.is_hr or reports or email == ctx.person.email):
        # refused before the lookup: whether an address is in the org is not everyone's to learn
        return await _refuse(ctx, "record.read", "manager", detail={"email": email[:320]})
    subject = await people.by_email(ctx.session, email=email)
    if subject is None:
        return ctx.say("cmd.unknown_person", Tone.ERROR, email=email[:80])
    kind = permissions.RecordKind.RITUAL_ANSWERS
    if not await permissions.may_read(ctx.session, viewer=ctx.person, subject=subject, kind=kind):
        await audit.write(
            ctx.session, actor_id=ctx.person.id, action="record.read.refused", subject_id=subject.id
        )
        return ctx.say("cmd.not_your_report", Tone.ERROR, name=subject.name)
    await audit.write(
        ctx.session,
        actor_id=ctx.person.id,
        action="record.read",
        subject_id=subject.id,
        detail={"via": "view", "kinds": [kind]},
    )
    return [
        ctx.replies(await status_views.person_answers(ctx.session, ctx.engine, subject, ctx.person.locale))
    ]


async def _away(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    if [a.lower() for a in cmd.args] in (["off"], ["clear"], ["none"]):
        return await _returned(ctx, cmd)
    today = utcnow().astimezone(ZoneInfo(ctx.person.timezone)).date()
    # "away 12-10" and "请假 12月10日" read as "until": the lead words are optional here
    until = parse_away(cmd.raw, today=today) or parse_away(f"away until {' '.join(cmd.args)}", today=today)
    if until is None:
        return ctx.say("cmd.away_usage", Tone.ERROR, value=" ".join(cmd.args)[:40])
    await people.set_away_until(ctx.session, person_id=ctx.person.id, until=until)
    return ctx.say("cmd.away_set", Tone.SUCCESS, date=until.isoformat())


async def _returned(ctx: CommandContext, _: Command) -> list[Outgoing]:
    await people.set_away_until(ctx.session, person_id=ctx.person.id, until=None)
    return ctx.say("cmd.away_cleared", Tone.SUCCESS)


HANDLERS: dict[str, Handler] = {
    # the 1:1 assistant: agendas, 1:1 records, notes, peer feedback, records and figures
    "agenda": agenda_commands.agenda,
    "oneonone": one_on_one_commands.oneonone,
    "note": one_on_one_commands.note,
    "feedback": peer_feedback_commands.feedback,
    "record": record_commands.record,
    "stats": hr_stats.stats,
    "help": _help,
    "cycle.start": _cycle_start,
    "cycle.status": _cycle_status,
    "cycle.remind": _cycle_remind,
    "cycle.close": _cycle_close,
    "me": _me,
    "me.tasks": _me_tasks,
    "connect.tasks": _connect_tasks,
    "lang": _lang,
    "view": _view,
    "away": _away,
    "returned": _returned,
}
