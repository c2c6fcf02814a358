"""``cadence report --cycle ID --format csv|xlsx``: a cycle's figures per team and manager, as a file.

The figures and what they count are ``conversations.hr_figures``'s; this module only writes them.
CSV is written as UTF-8 with a byte order mark: Excel opens a CSV without one in the system's legacy
code page (GBK on Chinese Windows, cp1252 in the West), which garbles every Chinese name, while the
BOM makes it read UTF-8; other tools (pandas, LibreOffice, Python's csv with ``utf-8-sig``) skip it.
"""

from __future__ import annotations

import asyncio
import csv
import io
from pathlib import Path

import click

from bot.settings import Settings
from conversations.hr_figures import Cell, Figures, Ratio
from conversations.i18n import t

FORMATS = ("csv", "xlsx")


def _settings() -> Settings:
    # imported here: bot.cli registers this command, so importing it at the top would be circular
    from bot.cli import _settings as read_settings

    return read_settings()


# a text cell starting with one of these is a formula to Excel (names come from platform directories,
# which their owners edit): such cells are written with a leading apostrophe, shown as plain text
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _plain(value: Cell) -> Cell:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def _csv_cell(value: Cell) -> Cell:
    if value is None:
        return ""
    return (value.text or "") if isinstance(value, Ratio) else _plain(value)


def csv_text(headers: list[str], rows: list[list[Cell]]) -> str:
    """The table as CSV text (rates as "66.7%", which Excel reads as a percentage; none: empty)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # RFC 4180's line ends, as Excel writes them
    writer.writerow(headers)
    for row in rows:
        writer.writerow(
            ["" if c is None else (c.text or "") if isinstance(c, Ratio) else _plain(c) for c in row]
        )
    return buffer.getvalue()


def write_csv(path: Path, headers: list[str], rows: list[list[Cell]]) -> None:
    """The table to ``path`` as UTF-8 CSV with a BOM (see the module docstring for why)."""
    path.write_text(csv_text(headers, rows), encoding="utf-8-sig", newline="")


def write_xlsx(path: Path, headers: list[str], rows: list[list[Cell]], *, sheet: str) -> None:
    """The table to ``path`` as an Excel workbook: numbers as numbers, rates as percentages."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    book = Workbook()
    ws = book.active
    assert ws is not None  # a new workbook has its one sheet
    ws.title = sheet[:31]  # Excel's limit for a sheet name
    ws.append(headers)
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for row in rows:
        ws.append([c.value if isinstance(c, Ratio) else _plain(c) for c in row])
        for column, value in enumerate(row, start=1):
            if isinstance(value, Ratio):
                ws.cell(row=ws.max_row, column=column).number_format = "0.0%"
    ws.freeze_panes = "A2"
    for column, header in enumerate(headers, start=1):
        widest = max([len(header), *(len(str(r[column - 1] or "")) for r in rows)])
        ws.column_dimensions[get_column_letter(column)].width = min(40, widest + 4)
    book.save(path)


def _cycle_id(raw: str, locale: str) -> int:
    value = raw.strip().lstrip("#")
    if not (value.isascii() and value.isdigit() and 0 < len(value) <= 9):
        raise click.BadParameter(t("hr.report_bad_cycle", locale, value=raw[:40]), param_hint="--cycle")
    return int(value)


@click.command("report")
@click.option(
    "--cycle", "cycle_arg", required=True, metavar="ID", help="The cycle's number (as in 'cycle status')."
)
@click.option(
    "--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True, help="The file's format."
)
@click.option(
    "--output",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Where to write it (default: cadence-cycle-ID.FORMAT here).",
)
def report(cycle_arg: str, fmt: str, output: Path | None) -> None:
    """Completion, on-time rate and share of specific feedback of a cycle, per team and per manager."""
    from conversations import hr_figures
    from storage import audit, cycles
    from storage.engine import Database
    from storage.migrate import upgrade

    settings = _settings()
    locale = settings.default_locale
    cycle_id = _cycle_id(cycle_arg, locale)
    path = output or Path(f"cadence-cycle-{cycle_id}.{fmt}")

    async def run() -> Figures | None:
        database = Database(settings.database_url, pool_size=1)
        try:
            await upgrade(database.engine)
            async with database.sessions() as session, session.begin():
                cycle = await cycles.get_cycle(session, cycle_id=cycle_id)
                if cycle is None:
                    return None
                figures = await hr_figures.load(session, cycle)
                # an export of everyone's figures is an HR action: audited (the CLI has no person)
                await audit.write(
                    session,
                    actor_id=None,
                    action="report.export",
                    detail={"cycle": cycle_id, "format": fmt, "output": str(path)[:300]},
                )
                return figures
        finally:
            await database.dispose()

    figures = asyncio.run(run())
    if figures is None:
        raise click.ClickException(t("hr.report_no_cycle", locale, id=cycle_id))
    headers, rows = hr_figures.table(figures, locale)
    if fmt == "csv":
        write_csv(path, headers, rows)
    else:
        write_xlsx(path, headers, rows, sheet=t("hr.sheet_title", locale, id=cycle_id))
    click.echo(
        t(
            "hr.report_written",
            locale,
            path=path,
            id=cycle_id,
            period=figures.period,
            teams=len(figures.teams),
            managers=len(figures.managers),
        )
    )
