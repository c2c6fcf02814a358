"""The ``cadence`` command: database, org data, chat, and the demo."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import click
from pydantic import ValidationError

from bot.settings import Settings, get_settings
from conversations.i18n import t
from conversations.ritual_loader import RitualFileError


def _settings() -> Settings:
    try:
        return get_settings()
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        ]
        raise click.ClickException("invalid settings (environment or .env):\n" + "\n".join(lines)) from None


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log more.")
def main(verbose: bool) -> None:
    """Cadence (节拍): performance rituals in Slack, Feishu and DingTalk."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    # APScheduler logs every job run at INFO: several lines a second of nothing
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


@main.group()
def db() -> None:
    """The database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations to DATABASE_URL."""
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()

    async def run() -> list[str]:
        database = Database(settings.database_url)
        try:
            return await upgrade(database.engine)
        finally:
            await database.dispose()

    applied = asyncio.run(run())
    click.echo(
        t("cli.migrated", settings.default_locale, revisions=", ".join(applied))
        if applied
        else t("cli.up_to_date", settings.default_locale)
    )


@main.group()
def org() -> None:
    """Org data: people, managers, departments."""


@org.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def org_import(file: Path) -> None:
    """Upsert people from a CSV or YAML FILE; refuses the whole file on any problem."""
    from conversations.org_service import OrgImportError, format_problems, format_report, import_org_file
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()
    locale = settings.default_locale

    async def run() -> str:
        database = Database(settings.database_url)
        try:
            await upgrade(database.engine)
            return format_report(await import_org_file(database, file), locale)
        finally:
            await database.dispose()

    try:
        click.echo(asyncio.run(run()))
    except OrgImportError as exc:
        click.echo(format_problems(exc, locale), err=True)
        sys.exit(1)


# directories `cadence org sync SOURCE` reads: the module in bot/platforms offering
# `read_configured_directory(settings, progress=...)`; adding a source is one line here
ORG_SYNC_SOURCES = {
    "dingtalk": "bot.platforms.dingtalk_directory",
    "feishu": "bot.platforms.feishu_directory",
}


@org.command("sync")
@click.argument("source", type=click.Choice(sorted(ORG_SYNC_SOURCES)), metavar="SOURCE")
def org_sync(source: str) -> None:
    """Upsert people from a platform's directory (SOURCE); people who left it are deactivated."""
    import importlib

    from conversations.org_sync import (
        DirectoryError,
        OrgSyncError,
        describe_directory_error,
        format_sync_refusal,
        format_sync_report,
        sync_directory,
    )
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()
    locale = settings.default_locale
    reader = importlib.import_module(ORG_SYNC_SOURCES[source])
    platform = t(f"orgsync.platform_{source}", locale)
    terminal = sys.stderr.isatty()
    drawn: list[int] = []  # set while a terminal's progress line is open

    def progress(count: int) -> None:
        # a counter redrawn in place on a terminal; logs and pipes get only the final count
        if terminal:
            drawn[:] = [count]
            line = t("orgsync.read_progress", locale, platform=platform, count=count)
            click.echo("\r" + line, nl=False, err=True)

    async def run() -> str:
        click.echo(t("orgsync.reading", locale, platform=platform), err=True)
        try:
            directory = await reader.read_configured_directory(settings, progress=progress)
        finally:
            if drawn:
                click.echo(err=True)
        if not terminal:
            count = len(directory.people)
            click.echo(t("orgsync.read_progress", locale, platform=platform, count=count), err=True)
        database = Database(settings.database_url)
        try:
            await upgrade(database.engine)
            report = await sync_directory(
                database,
                platform=source,
                people=directory.people,
                source=source,
                default_timezone=settings.default_timezone,
                default_locale=locale,
            )
            return format_sync_report(report, locale)
        finally:
            await database.dispose()

    try:
        click.echo(asyncio.run(run()))
    except DirectoryError as exc:
        click.echo(describe_directory_error(exc, locale), err=True)
        sys.exit(1)
    except OrgSyncError as exc:
        click.echo(format_sync_refusal(exc, locale), err=True)
        sys.exit(1)


@org.command("show")
def org_show() -> None:
    """Print the org tree."""
    from conversations.org_service import org_tree_text
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()

    async def run() -> str:
        database = Database(settings.database_url)
        try:
            await upgrade(database.engine)
            return await org_tree_text(database, locale=settings.default_locale)
        finally:
            await database.dispose()

    click.echo(asyncio.run(run()))


@main.group()
def ritual() -> None:
    """Ritual schedules: when each ritual runs by itself."""


@ritual.command("list")
@click.option(
    "--country", default="", metavar="CODE", help="Whose calendar 'next' uses (e.g. CN, US, GB-ENG)."
)
def ritual_list(country: str) -> None:
    """Show the schedules in force and when each fires next (in DEFAULT_TIMEZONE)."""
    from bot.schedule_text import schedules_text
    from conversations.ritual_loader import load_catalog
    from scheduler.schedules import ScheduleFileError, load_schedules
    from storage.clock import utcnow

    settings = _settings()
    try:
        catalog = load_catalog(settings.rituals_dir)
        book = load_schedules(settings.scheduler.file, catalog=catalog)
    except (RitualFileError, ScheduleFileError) as exc:
        raise click.ClickException(str(exc)) from None
    text = schedules_text(
        book,
        catalog,
        now=utcnow(),
        tz=settings.default_timezone,
        country=country.strip().upper(),
        locale=settings.default_locale,
    )
    click.echo(text)


@ritual.command("check")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path), required=False)
def ritual_check(file: Path | None) -> None:
    """Validate a schedules FILE (default: the one in force) against the rituals."""
    from conversations.ritual_loader import load_catalog
    from scheduler.schedules import BUILTIN_FILE, ScheduleFileError, load_schedules

    settings = _settings()
    path = file or settings.scheduler.file or BUILTIN_FILE
    try:
        book = load_schedules(path, catalog=load_catalog(settings.rituals_dir))
    except (RitualFileError, ScheduleFileError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(t("cli.schedule_ok", settings.default_locale, path=path, count=len(book.schedules)))


@main.command()
@click.option("--as", "as_email", metavar="EMAIL", help="Chat in the console as this person.")
def run(as_email: str | None) -> None:
    """Run Cadence: migrate, then serve the enabled platforms (the console when none is)."""
    from bot.console_chat import NotInOrgError, chat

    settings = _settings()
    enabled = settings.enabled_platforms()
    ready = {"slack"}
    if set(enabled) - ready:
        raise click.ClickException(
            t(
                "cli.platform_not_ready",
                settings.default_locale,
                platforms=", ".join(sorted(set(enabled) - ready)),
            )
        )
    from scheduler.schedules import ScheduleFileError

    if not enabled and not as_email:
        raise click.ClickException(t("cli.run_needs_as", settings.default_locale))
    try:
        if enabled:
            from bot.app import serve

            # the service logs at LOG_LEVEL (-v still shows INFO when LOG_LEVEL is stricter); the
            # console chat keeps the terminal quiet
            root = logging.getLogger()
            root.setLevel(min(root.level, logging.getLevelNamesMapping()[settings.log_level]))
            asyncio.run(serve(settings))
        else:
            asyncio.run(chat(settings, as_email or ""))
    except (RitualFileError, ScheduleFileError, NotInOrgError) as exc:
        # a broken rituals or schedules file stops the start with the file and line to fix
        raise click.ClickException(str(exc)) from None


@main.command()
def doctor() -> None:
    """Check the database and each enabled platform, and say what to fix."""
    from bot.doctor import report, run_checks

    findings = asyncio.run(run_checks(_settings()))
    click.echo(report(findings))
    if not all(f.ok for f in findings):
        sys.exit(1)


@main.command()
@click.option("--scripted", is_flag=True, help="Play a whole session by itself and check it.")
@click.option("--keep", is_flag=True, help="Keep the demo database folder afterwards.")
def demo(scripted: bool, keep: bool) -> None:
    """Try Cadence in the terminal with a sample org of 20 people (a throw-away SQLite file)."""
    from bot.demo import run_demo

    sys.exit(asyncio.run(run_demo(scripted=scripted, keep=keep)))


# ---- cadence outbox: dead letters (the commands live in bot/outbox_cli.py) ----------------------
from bot.outbox_cli import outbox  # noqa: E402  (imports this module's _settings lazily)

main.add_command(outbox)

# ---- cadence sync: task sources (the commands live in bot/sync_cli.py) ----------------------------
from bot.sync_cli import sync  # noqa: E402  (imports this module's _settings lazily)

main.add_command(sync)

# ---- cadence report: a cycle's HR figures as CSV or XLSX (the command lives in bot/report_cli.py) --
from bot.report_cli import report  # noqa: E402  (imports this module's _settings lazily)

main.add_command(report)


if __name__ == "__main__":
    main()
