"""``stats [ID]``: a cycle's completion, on-time rate and specific feedback, by team and manager, in chat.

HR admins see every team and manager of the latest open cycle (or cycle ID); a manager sees their own
team only: themself and the managers below them, and the total of those. Anyone else is refused.
Every read, and every refusal, is written to the audit log, as for ``view``.
"""

from __future__ import annotations

from conversations import hr_figures
from conversations.answers import normalize, small_number
from conversations.command_parser import Command
from conversations.commands_base import CommandContext
from conversations.hr_figures import Figures, Row
from conversations.i18n import t
from conversations.messages import Field_, Message, Tone
from conversations.outgoing import Outgoing
from conversations.periods import local_date
from storage import audit, cycles, people
from storage.models import Cycle

# rows listed in chat per section; `cadence report` has every one
MAX_ROWS = 25


def _rate(text: str | None, locale: str) -> str:
    return text if text is not None else t("hr.rate_none", locale)


def line(row: Row, locale: str, *, deadline: bool) -> str:
    """One row's figures as a line of text."""
    c = row.counts
    values = {
        "submitted": c.submitted,
        "assigned": c.assigned,
        "completion": _rate(c.completion.text, locale),
        "on_time": c.on_time,
        "on_time_of": c.submitted,
        "on_time_rate": _rate(c.on_time_rate.text, locale),
        "specific": c.specific,
        "items": c.items,
        "specific_share": _rate(c.specific_share.text, locale),
    }
    return t("hr.stats_line" if deadline else "hr.stats_line_no_due", locale, **values)


def _section(title_key: str, rows: tuple[Row, ...], figures: Figures, locale: str) -> list[Field_]:
    if not rows:
        return []
    fields = [Field_(label=t(title_key, locale), value="")]
    fields += [
        Field_(label=hr_figures.row_name(r, locale), value=line(r, locale, deadline=figures.has_deadline))
        for r in rows[:MAX_ROWS]
    ]
    if len(rows) > MAX_ROWS:
        more = t("hr.stats_more", locale, count=len(rows) - MAX_ROWS, id=figures.cycle_id)
        fields.append(Field_(label="…", value=more))
    return fields


def message(figures: Figures, *, title: str, locale: str, timezone: str, team_only: bool) -> Message:
    """The figures as a neutral message: the total in the text, one field per team and manager."""
    total = figures.total.counts
    scope = t("hr.stats_scope_team" if team_only else "hr.stats_scope_all", locale)
    due = local_date(figures.due_at, timezone) if figures.has_deadline else t("hr.no_deadline", locale)
    text = t(
        "hr.stats_head",
        locale,
        scope=scope,
        completion=_rate(total.completion.text, locale),
        on_time=_rate(total.on_time_rate.text if figures.has_deadline else None, locale),
        specific=_rate(total.specific_share.text, locale),
        due=due,
    )
    text += "\n" + line(figures.total, locale, deadline=figures.has_deadline)
    fields = _section("hr.stats_teams", figures.teams, figures, locale)
    fields += _section("hr.stats_managers", figures.managers, figures, locale)
    head = t("hr.stats_title", locale, id=figures.cycle_id, title=title, period=figures.period)
    return Message(title=head, text=text, fields=tuple(fields), hint=t("hr.stats_hint", locale))


async def _which_cycle(ctx: CommandContext, cmd: Command) -> Cycle | list[Outgoing]:
    if len(cmd.args) > 1:
        return ctx.say("hr.stats_usage", Tone.ERROR)
    if cmd.args:
        raw = normalize(cmd.args[0]).lstrip("#")
        cycle_id = small_number(raw)
        if cycle_id is None:
            return ctx.say("hr.stats_usage", Tone.ERROR)
        cycle = await cycles.get_cycle(ctx.session, cycle_id=cycle_id)
        return cycle if cycle is not None else ctx.say("hr.stats_unknown_cycle", Tone.ERROR, id=raw[:20])
    found = await cycles.open_cycles(ctx.session)
    return found[-1] if found else ctx.say("hr.stats_no_cycle")


async def stats(ctx: CommandContext, cmd: Command) -> list[Outgoing]:
    """``stats [ID]`` / ``统计 [编号]``."""
    person = ctx.person
    reports = set() if person.is_hr else await people.reports_of(ctx.session, manager_id=person.id)
    if not person.is_hr and not reports:
        await audit.write(
            ctx.session,
            actor_id=person.id,
            action="stats.refused",
            detail={"needed": "manager", "cycle": cmd.args[0][:20] if cmd.args else "open"},
        )
        return ctx.say("hr.stats_refused", Tone.ERROR)
    cycle = await _which_cycle(ctx, cmd)
    if isinstance(cycle, list):
        return cycle
    # a manager's team: themself and everyone below them who manages someone (their rows' keys)
    managers = None if person.is_hr else {person.id, *reports}
    figures = await hr_figures.load(ctx.session, cycle, managers=managers)
    await audit.write(
        ctx.session,
        actor_id=person.id,
        action="stats",
        detail={"cycle": cycle.id, "scope": "all" if managers is None else "team"},
    )
    ritual = await ctx.engine.ritual(ctx.session, cycle.ritual_id)
    locale = person.locale
    shown = message(
        figures,
        title=ritual.title.get(locale),
        locale=locale,
        timezone=person.timezone,
        team_only=managers is not None,
    )
    return [ctx.replies(shown)]
