"""Schedules as data: the shipped file, files with mistakes (named by line), and the ritual commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bot import settings as settings_module
from bot.cli import main
from conversations.ritual_loader import load_catalog
from scheduler.schedules import ScheduleFileError, load_schedules, parse_schedules
from tests.cli_env import isolate

CATALOG = load_catalog()
GOOD = """
days_off: [2026-12-31]
schedules:
  - ritual: weekly_recap
    when: weekday
    weekday: 4
    at: "17:30"
    audience: {departments: [Engineering]}
    reminders: {after_hours: 2, max: 1}
"""


def test_the_shipped_schedules_cover_every_built_in_ritual() -> None:
    book = load_schedules(None, catalog=CATALOG)
    assert sorted(s.ritual for s in book.enabled()) == sorted(CATALOG.rituals)


def test_a_valid_file_reads_into_rules_and_audiences() -> None:
    book = parse_schedules(GOOD, Path("s.yaml"), catalog=CATALOG)
    (schedule,) = book.schedules
    assert (schedule.rule.kind, schedule.rule.weekday, schedule.at.isoformat()) == ("weekday", 4, "17:30:00")
    assert schedule.who.departments == ("Engineering",) and not schedule.who.everyone
    assert [d.isoformat() for d in book.days_off] == ["2026-12-31"]


def one(
    ritual: str = "weekly_recap", when: str = "last_workday_of_week", at: str = "16:00", more: str = ""
) -> str:
    """A file with one schedule (line 2: ritual, 3: when, 4: at, 5: ``more``)."""
    return f"schedules:\n  - ritual: {ritual}\n    when: {when}\n    at: '{at}'\n{more}"


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("schedules:\n  - ritual: [unclosed\n", 3, "not valid YAML"),
        (one(ritual="weekly"), 2, "no ritual 'weekly'"),
        (one(when="weekday"), 2, "weekday is required"),
        (one(when="last_workday_of_month"), 3, "per week"),
        (one(at="25:00"), 4, "at"),
        (one(when="fortnightly"), 3, "when"),
        (one(more="    reminders: {max: 50}\n"), 5, "reminders.max"),
        ("- just a list\n", 1, "expected a mapping"),
    ],
)
def test_a_mistake_is_named_with_its_line(text: str, line: int, words: str) -> None:
    with pytest.raises(ScheduleFileError) as caught:
        parse_schedules(text, Path("mine.yaml"), catalog=CATALOG)
    assert caught.value.line == line, str(caught.value)
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"mine.yaml:{line}: ")


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    isolate(monkeypatch, tmp_path)
    settings_module.get_settings.cache_clear()
    yield tmp_path
    settings_module.get_settings.cache_clear()


def run_cli(*args: str, **env: str) -> tuple[int, str]:
    settings_module.get_settings.cache_clear()
    result = CliRunner().invoke(main, list(args), env={"DEFAULT_LOCALE": "en", **env})
    return result.exit_code, result.output


def test_ritual_list_says_when_each_ritual_runs_next(isolated: Path) -> None:
    path = isolated / "mine.yaml"
    path.write_text(GOOD, encoding="utf-8")
    code, output = run_cli(
        "ritual", "list", "--country", "US", SCHEDULER_FILE=str(path), DEFAULT_TIMEZONE="America/New_York"
    )
    assert code == 0, output
    assert "Weekly recap (weekly_recap): every Friday that is a workday, 17:30" in output
    assert "for Engineering" in output and "a reminder 2 h after, at most 1" in output
    assert "(America/New_York, calendar US)" in output
    assert "Company days off: 2026-12-31" in output


def test_ritual_check_refuses_a_broken_file_and_run_will_not_start_with_it(isolated: Path) -> None:
    path = isolated / "broken.yaml"
    path.write_text("schedules:\n  - ritual: weekly\n    when: last_workday_of_week\n    at: '16:00'\n")
    code, output = run_cli("ritual", "check", str(path))
    assert code == 1 and f"{path}:2: no ritual 'weekly'" in output
    code, output = run_cli(
        "run",
        "--as",
        "someone@example.com",
        SCHEDULER_FILE=str(path),
        DATABASE_URL=f"sqlite:///{isolated}/x.db",
    )
    assert code == 1 and f"{path}:2: no ritual 'weekly'" in output
    code, output = run_cli("ritual", "check")
    assert code == 0 and "schedules.yaml: 3 schedule(s), all valid." in output, output
