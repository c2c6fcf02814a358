"""``cadence sync``: run the task sources now (with a progress line) and show how each one stands."""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta

import click
from sqlalchemy.ext.asyncio import AsyncSession

from bot.settings import Settings
from connectors.sync import RunReport, SourceSync, SyncOptions
from conversations.i18n import t
from storage import sync_state

TASK_SOURCES = ("jira", "feishu_task", "dingtalk_todo")
ENABLE_SETTING = {
    "jira": "JIRA_ENABLED",
    "feishu_task": "FEISHU_TASKS_ENABLED",
    "dingtalk_todo": "DINGTALK_TODOS_ENABLED",
}


def _settings() -> Settings:
    # imported here: bot.cli registers this group, so importing it at the top would be circular
    from bot.cli import _settings as read_settings

    return read_settings()


def _name(source: str, locale: str) -> str:
    return t(f"sync.source_{source}", locale)


def _when(moment: datetime | None, locale: str) -> str:
    if moment is None:
        return "—"
    if moment <= datetime.now(UTC):
        return t("sync.next_now", locale)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def format_report(report: RunReport, locale: str) -> list[str]:
    """What a run did, in a few lines: the counts, the errors, the people nobody matched."""
    values = {
        "source": _name(report.source, locale),
        "kind": t(f"sync.kind_{report.kind}", locale),
        "read": report.items_read,
        "changed": report.items_changed,
        "deleted": report.items_deleted,
        "requests": report.requests,
    }
    lines = [t(f"sync.run_{report.status}", locale, **values)]
    lines += [t("sync.error_line", locale, error=error) for error in report.errors]
    if report.unknown_count:
        names = ", ".join(
            f"{p.get('name') or p['id']}" + (f" <{p['email']}>" if p.get("email") else "")
            for p in report.unknown_people.values()
        )
        lines.append(t("sync.unknown_people", locale, count=report.unknown_count, names=names))
    return lines


@click.group()
def sync() -> None:
    """Task sources (Jira, Feishu tasks, DingTalk todos) read into each person's record."""


@sync.command("run")
@click.argument("source", required=False, type=click.Choice(TASK_SOURCES), metavar="[SOURCE]")
@click.option("--full", is_flag=True, help="Ignore the cursors and read everything again.")
@click.option("--reconcile", is_flag=True, help="Also look for items deleted at the source now.")
def sync_run(source: str | None, full: bool, reconcile: bool) -> None:
    """Sync every switched-on source now, or only SOURCE (jira, feishu_task, dingtalk_todo)."""
    from bot.task_sources import build_task_sources
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()
    locale = settings.default_locale
    enabled = settings.enabled_task_sources()
    if not enabled:
        raise click.ClickException(t("sync.none_enabled", locale))
    if source is not None and source not in enabled:
        raise click.ClickException(
            t("sync.not_enabled", locale, source=_name(source, locale), setting=ENABLE_SETTING[source])
        )
    terminal = sys.stderr.isatty()
    options = SyncOptions(full=full, reconcile=True if reconcile else None)

    async def run() -> list[RunReport]:
        database = Database(settings.database_url)
        sources = build_task_sources(settings, database, only=[source] if source else None)
        reports = []
        try:
            await upgrade(database.engine)
            for name, connector in sources.connectors.items():
                label = _name(name, locale)
                click.echo(t("sync.reading", locale, source=label), err=True)
                drawn: list[int] = []

                def progress(count: int, label: str = label, drawn: list[int] = drawn) -> None:
                    if terminal:  # redrawn in place on a terminal; logs get only the final line
                        drawn[:] = [count]
                        click.echo(
                            "\r" + t("sync.progress", locale, source=label, count=count), nl=False, err=True
                        )

                report = await SourceSync(database, connector, options, progress=progress).run()
                if drawn:
                    click.echo(err=True)
                click.echo("\n".join(format_report(report, locale)))
                reports.append(report)
        finally:
            await sources.close()
            await database.dispose()
        return reports

    reports = asyncio.run(run())
    if any(r.status == "failed" for r in reports):
        sys.exit(1)


@sync.command("status")
def sync_status() -> None:
    """Each source's last run (items, errors), what is stored, and when it runs next."""
    from bot.task_sources import intervals
    from storage import tasks
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()
    locale = settings.default_locale
    enabled = settings.enabled_task_sources()
    if not enabled:
        click.echo(t("sync.status_none", locale))
        return
    every = intervals(settings)

    async def run() -> list[str]:
        database = Database(settings.database_url)
        try:
            await upgrade(database.engine)
            async with database.sessions() as session:
                runs = {run.source: run for run in await sync_state.latest_runs(session)}
                counts = await tasks.count_items(session, sources=enabled)
                lines = []
                for source in enabled:
                    lines += await _status_lines(
                        session, source, runs.get(source), counts, every[source], locale
                    )
            return lines
        finally:
            await database.dispose()

    click.echo("\n".join(asyncio.run(run())))


async def _status_lines(
    session: AsyncSession,
    source: str,
    run: sync_state.RunView | None,
    counts: dict[str, tuple[int, int]],
    every: timedelta,
    locale: str,
) -> list[str]:
    name = _name(source, locale)
    if run is None:
        return [t("sync.status_never", locale, source=name, next=t("sync.next_now", locale))]
    live, gone = counts.get(source, (0, 0))
    lines = [
        t(
            "sync.status_line",
            locale,
            source=name,
            started=run.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            kind=t(f"sync.kind_{run.kind}", locale),
            status=t(f"sync.status_{run.status}", locale),
            read=run.items_read,
            changed=run.items_changed,
            deleted=run.items_deleted,
            requests=run.requests,
            live=live,
            gone=gone,
            next=_when(run.started_at + every, locale),
        )
    ]
    if run.status == "failed" and run.error:
        lines.append(t("sync.error_line", locale, error=run.error.splitlines()[0][:300]))
    lines += [
        t("sync.failing_scope", locale, scope=scope, count=count, error=(error or "")[:300])
        for scope, count, error in await sync_state.failing_scopes(session, source=source)
    ]
    if run.unknown_people:
        names = ", ".join(str(p.get("name") or p.get("id")) for p in run.unknown_people)
        lines.append(t("sync.unknown_people", locale, count=len(run.unknown_people), names=names))
    return lines
