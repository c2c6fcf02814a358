"""``cadence outbox``: list the messages delivery gave up on (dead letters) and queue them again."""

from __future__ import annotations

import asyncio
import sys
import unicodedata
from datetime import UTC, datetime

import click

from bot.settings import Settings
from conversations.i18n import t
from storage.dead_letters import DeadRow

_MAX_ID = 2**31 - 1  # ids are 32-bit integer columns on both databases
_STATUS_TEXT = {
    "pending": "outbox.status_pending",
    "sending": "outbox.status_sending",
    "sent": "outbox.status_sent",
    "obsolete": "outbox.status_obsolete",
    "dead": "outbox.status_dead",
}
_KEY_WIDTH = 40
_ERROR_WIDTH = 80


def _settings() -> Settings:
    # imported here: bot.cli registers this group, so importing it at the top would be circular
    from bot.cli import _settings as read_settings

    return read_settings()


def _width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _clip(text: str, limit: int) -> str:
    """One line of at most ``limit`` columns, with … where it was cut."""
    line = " ".join(text.split())
    if _width(line) <= limit:
        return line
    out, used = [], 0
    for c in line:
        w = _width(c)
        if used + w > limit - 1:
            break
        out.append(c)
        used += w
    return "".join(out) + "…"


def _when(at: datetime) -> str:
    aware = at if at.tzinfo is not None else at.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%d %H:%M")


def _recipient(row: DeadRow) -> str:
    if row.person_email is not None:
        return f"{row.person_name} <{row.person_email}>"
    return row.recipient or "—"


def render_dead(rows: list[DeadRow], *, total: int, locale: str) -> str:
    """The dead letters as an aligned table with headers in ``locale``, and how to retry them."""
    if not rows:
        return t("outbox.failed_none", locale)
    headers = [
        t("outbox.col_id", locale),
        t("outbox.col_platform", locale),
        t("outbox.col_kind", locale),
        t("outbox.col_person", locale),
        t("outbox.col_attempts", locale),
        t("outbox.col_created", locale),
        t("outbox.col_key", locale),
        t("outbox.col_error", locale),
    ]
    body = [
        [
            str(r.id),
            r.platform,
            r.kind,
            _clip(_recipient(r), 60),
            str(r.attempts),
            _when(r.created_at),
            _clip(r.key, _KEY_WIDTH),
            _clip(r.last_error or "—", _ERROR_WIDTH),
        ]
        for r in rows
    ]
    widths = [max(_width(line[i]) for line in [headers, *body]) for i in range(len(headers))]

    def line(cells: list[str]) -> str:
        return "  ".join(c + " " * (w - _width(c)) for c, w in zip(cells, widths, strict=True)).rstrip()

    table = [line(headers), line(["-" * w for w in widths]), *(line(cells) for cells in body)]
    title = t("outbox.failed_title", locale, total=total, shown=len(rows))
    return "\n".join([title, "", *table, "", t("outbox.failed_hint", locale)])


@click.group()
def outbox() -> None:
    """The outbox: messages delivery gave up on, and sending them again."""


@outbox.command("failed")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1, 10_000), help="Show at most this many."
)
def outbox_failed(limit: int) -> None:
    """List dead messages (oldest first): recipient, attempts and the last error."""
    from storage.dead_letters import count_by_status, list_dead
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()

    async def run() -> tuple[list[DeadRow], int]:
        database = Database(settings.database_url, pool_size=1)
        try:
            await upgrade(database.engine)
            async with database.sessions() as session:
                rows = await list_dead(session, limit=limit)
                total = (await count_by_status(session, statuses=["dead"]))["dead"]
            return rows, total
        finally:
            await database.dispose()

    rows, total = asyncio.run(run())
    click.echo(render_dead(rows, total=total, locale=settings.default_locale))


@outbox.command("retry")
@click.argument("ids", nargs=-1, type=click.IntRange(1, _MAX_ID))
@click.option("--all", "every", is_flag=True, help="Re-queue every dead message.")
def outbox_retry(ids: tuple[int, ...], every: bool) -> None:
    """Queue dead messages IDS (or --all) to be sent again now, from the first attempt."""
    from storage import audit
    from storage.dead_letters import requeue_rows, status_of
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()
    locale = settings.default_locale
    if not ids and not every:
        raise click.UsageError(t("outbox.retry_needs_ids", locale))
    if ids and every:
        raise click.UsageError(t("outbox.retry_ids_and_all", locale))
    wanted = sorted(set(ids)) if ids else None

    async def run() -> tuple[list[int], list[int], dict[int, str]]:
        database = Database(settings.database_url, pool_size=1)
        try:
            await upgrade(database.engine)
            async with database.sessions() as session, session.begin():
                requeued = await requeue_rows(session, ids=wanted)
                left = [i for i in wanted or [] if i not in set(requeued)]
                found = await status_of(session, ids=left)
                unknown = [i for i in left if i not in found]
                # every retry is an operator's action on other people's messages: it is audited
                await audit.write(
                    session,
                    actor_id=None,
                    action="outbox.retry",
                    detail={
                        "ids": requeued,
                        "all": wanted is None,
                        "unknown": unknown,
                        "not_dead": sorted(found),
                    },
                )
            return requeued, unknown, found
        finally:
            await database.dispose()

    requeued, unknown, not_dead = asyncio.run(run())
    if requeued:
        click.echo(
            t("outbox.retry_done", locale, count=len(requeued), ids=", ".join(str(i) for i in requeued))
        )
    else:
        click.echo(t("outbox.retry_nothing", locale))
    if unknown:
        click.echo(t("outbox.retry_unknown", locale, ids=", ".join(str(i) for i in unknown)), err=True)
    if not_dead:
        items = ", ".join(
            f"{i} ({t(_STATUS_TEXT[s], locale) if s in _STATUS_TEXT else s})"
            for i, s in sorted(not_dead.items())
        )
        click.echo(t("outbox.retry_not_dead", locale, items=items), err=True)
    if unknown or not_dead:
        sys.exit(1)
