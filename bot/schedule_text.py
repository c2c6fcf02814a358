"""``cadence ritual list``: the schedules in force, in words, with when each fires next."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from conversations.i18n import t
from conversations.ritual_loader import RitualCatalog
from scheduler.calendars import WorkCalendar
from scheduler.schedule import fire_time, period_bounds
from scheduler.schedules import Schedule, ScheduleBook


def next_fire(schedule: Schedule, *, now: datetime, tz: str, calendar: WorkCalendar) -> datetime | None:
    """The first fire time at or after ``now`` for someone in ``tz`` on ``calendar`` (within a year)."""
    day = now.astimezone(ZoneInfo(tz)).date()
    for _ in range(60):  # a weekday rule can skip a few weeks of holidays; a year of quarters is 4
        moment = fire_time(schedule.rule, period_start=day, tz=tz, calendar=calendar)
        if moment is not None and moment >= now:
            return moment
        day = period_bounds(schedule.rule.period, day)[1] + timedelta(days=1)
    return None


def _when(schedule: Schedule, locale: str) -> str:
    if schedule.when == "weekday":
        return t(f"cli.when_weekday_{schedule.weekday}", locale)
    return t(f"cli.when_{schedule.when}", locale)


def _audience(schedule: Schedule, locale: str) -> str:
    who = schedule.who
    if who.everyone:
        return t("cli.audience_everyone", locale)
    parts = list(who.departments) + list(who.people)
    return ", ".join(parts[:6]) + (f" (+{len(parts) - 6})" if len(parts) > 6 else "")


def schedules_text(
    book: ScheduleBook, catalog: RitualCatalog, *, now: datetime, tz: str, country: str, locale: str
) -> str:
    """Every schedule on its own lines, then the company's days off."""
    if not book.schedules:
        return t("cli.no_schedules", locale)
    calendar = WorkCalendar(country, company_days_off=book.days_off)
    lines = []
    for schedule in book.schedules:
        ritual = catalog.rituals[schedule.ritual]
        upcoming = next_fire(schedule, now=now, tz=tz, calendar=calendar)
        shown = upcoming.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if upcoming else "—"
        days = ritual.due_days if schedule.deadline_days is None else schedule.deadline_days
        lines.append(
            t(
                "cli.schedule_line" if schedule.enabled else "cli.schedule_line_off",
                locale,
                title=ritual.title.get(locale),
                key=ritual.key,
                when=_when(schedule, locale),
                at=schedule.at.strftime("%H:%M"),
                audience=_audience(schedule, locale),
                days=days,
                hours=f"{schedule.reminders.after_hours:g}",
                max=schedule.reminders.max,
                next=shown,
                tz=tz,
                country=country or "—",
            )
        )
    days_off = ", ".join(d.isoformat() for d in book.days_off) or "—"
    lines.append(t("cli.days_off", locale, days=days_off))
    return "\n".join(lines)
