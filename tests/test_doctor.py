"""``cadence doctor`` as an operator runs it: the database and Slack checked, and what to fix said plainly.

The real ``slack_sdk`` talks to the Slack fake over a real socket. The command runs ``asyncio.run``
itself, so the fake serves from an event loop of its own on a background thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from click.testing import CliRunner, Result

from bot import settings as settings_module
from bot.cli import main
from bot.doctor import required_slack_scopes, run_checks
from bot.settings import Settings, SlackSettings
from conversations.i18n import t
from storage.migrate import revisions
from tests.cli_env import isolate
from tests.fakes.slack import DEFAULT_SCOPES, SlackFake
from tests.harness import test_settings as settings_for
from tests.slack_rig import APP_TOKEN, BOT_TOKEN

T = TypeVar("T")


class ThreadedFake:
    """A SlackFake serving from its own event loop on a daemon thread (the CLI owns the main loop)."""

    def __init__(self, **options: Any) -> None:
        self.fake = SlackFake(users={"emma.smith@example.com": "U01EMMA"}, **options)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="slack-fake", daemon=True)
        self._thread.start()
        self._call(self.fake.start)

    def _call(self, coroutine: Callable[[], Coroutine[Any, Any, T]]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine(), self._loop).result(timeout=10)

    def close(self) -> None:
        try:
            self._call(self.fake.stop)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No .env, no platform or proxy settings from the machine, settings read anew."""
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


@pytest.fixture
def slack() -> Iterator[Callable[..., SlackFake]]:
    """Start a Slack fake (with options such as ``scopes=``); every one started is stopped afterwards."""
    started: list[ThreadedFake] = []

    def start(**options: Any) -> SlackFake:
        started.append(ThreadedFake(**options))
        return started[-1].fake

    yield start
    for threaded in started:
        threaded.close()


@pytest.fixture
def sqlite_db(sqlite_template: Path, tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own."""
    target = tmp_path / "doctor.db"
    target.write_bytes(sqlite_template.read_bytes())
    return f"sqlite:///{target}"


def doctor(url: str, *, locale: str = "en", **env: str) -> Result:
    """``cadence doctor`` as a fresh process runs it: settings read anew from the environment."""
    settings_module.get_settings.cache_clear()
    return CliRunner().invoke(main, ["doctor"], env={"DATABASE_URL": url, "DEFAULT_LOCALE": locale, **env})


def slack_env(fake: SlackFake | None = None, **overrides: str) -> dict[str, str]:
    """The environment of a Socket Mode install pointed at ``fake``."""
    env = {
        "SLACK_ENABLED": "true",
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_APP_TOKEN": APP_TOKEN,
        "SLACK_API_URL": fake.base_url if fake is not None else "",
    }
    env.update(overrides)
    return env


def lines(result: Result) -> dict[str, str]:
    """Each finding's line by its subject (``✓ SLACK_BOT_TOKEN: …`` → ``{"SLACK_BOT_TOKEN": "✓ …"}``)."""
    found = {}
    for line in result.output.splitlines():
        mark, _, rest = line.partition(" ")
        subject, _, detail = rest.partition(": ")
        if mark in ("✓", "✗"):
            found[subject] = f"{mark} {detail}"
    return found


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---- all good ---------------------------------------------------------------------------------


def test_everything_configured_right_is_all_ticks(db_url: str, slack: Callable[..., SlackFake]) -> None:
    fake = slack()

    result = doctor(db_url, **slack_env(fake))

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == {"DATABASE_URL", "SCHEDULER_FILE", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"}, (
        result.output
    )
    assert all(line.startswith("✓") for line in found.values()), result.output
    assert found["DATABASE_URL"] == "✓ " + t("doctor.db_ok", "en", revision=revisions()[-1])
    assert found["SLACK_BOT_TOKEN"] == "✓ " + t("doctor.slack_ok", "en", team="Cadence (fake)")
    assert found["SLACK_APP_TOKEN"] == "✓ " + t("doctor.slack_socket_ok", "en")
    # what Slack saw: auth.test with the bot token, apps.connections.open with the app-level token
    (auth,) = fake.calls_to("auth.test")
    assert auth.headers["authorization"] == f"Bearer {BOT_TOKEN}"
    (opened,) = fake.calls_to("apps.connections.open")
    assert opened.headers["authorization"] == f"Bearer {APP_TOKEN}"


def test_without_a_chat_platform_it_checks_the_database_and_says_the_console_is_used(sqlite_db: str) -> None:
    result = doctor(sqlite_db)

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["DATABASE_URL"].startswith("✓")
    assert found["*_ENABLED"] == "✓ " + t("doctor.no_platform", "en")
    assert "SLACK_BOT_TOKEN" not in found
    assert found["SCHEDULER_FILE"].startswith("✓ 3 ritual schedule(s) running from ")


def test_a_broken_schedules_file_is_named_with_its_line(sqlite_db: str, tmp_path: Path) -> None:
    broken = tmp_path / "schedules.yaml"
    broken.write_text("schedules:\n  - ritual: weekly_recap\n    when: monthly\n    at: '10:00'\n")

    result = doctor(sqlite_db, SCHEDULER_FILE=str(broken))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["SCHEDULER_FILE"].startswith(f"✗ {broken}:3: schedules.0.when: Input should be")
    assert found["DATABASE_URL"].startswith("✓")


def test_it_speaks_the_default_locale(sqlite_db: str, slack: Callable[..., SlackFake]) -> None:
    result = doctor(sqlite_db, locale="zh-CN", **slack_env(slack()))

    assert result.exit_code == 0, result.output
    assert t("doctor.slack_ok", "zh-CN", team="Cadence (fake)") in result.output
    assert t("doctor.slack_socket_ok", "zh-CN") in result.output


# ---- Slack problems ---------------------------------------------------------------------------


def test_a_bot_token_slack_refuses_is_named_with_slacks_error(
    sqlite_db: str, slack: Callable[..., SlackFake]
) -> None:
    fake = slack()
    fake.fail("auth.test", "invalid_auth")  # a revoked or mistyped xoxb- token

    result = doctor(sqlite_db, **slack_env(fake))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DATABASE_URL"].startswith("✓")
    assert found["SLACK_BOT_TOKEN"] == "✗ " + t("doctor.slack_token_bad", "en", error="invalid_auth")
    assert "xoxb-" in found["SLACK_BOT_TOKEN"]  # it says which token to copy, and from where
    assert "Traceback" not in result.output


def test_an_app_level_token_in_place_of_the_bot_token_is_refused(
    sqlite_db: str, slack: Callable[..., SlackFake]
) -> None:
    fake = slack()

    result = doctor(sqlite_db, **slack_env(fake, SLACK_BOT_TOKEN=APP_TOKEN))

    assert result.exit_code == 1, result.output
    assert lines(result)["SLACK_BOT_TOKEN"] == "✗ " + t(
        "doctor.slack_token_bad", "en", error="not_allowed_token_type"
    )


def test_missing_scopes_are_named(sqlite_db: str, slack: Callable[..., SlackFake]) -> None:
    fake = slack(scopes=tuple(s for s in DEFAULT_SCOPES if s != "users:read.email"))

    result = doctor(sqlite_db, **slack_env(fake))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["SLACK_BOT_TOKEN"] == "✗ " + t("doctor.slack_scopes", "en", scopes="users:read.email")
    assert "slack_manifest.yaml" in found["SLACK_BOT_TOKEN"]
    # the app-level token is still checked: one run shows everything there is to fix
    assert found["SLACK_APP_TOKEN"].startswith("✓")


def test_several_missing_scopes_are_all_named(sqlite_db: str, slack: Callable[..., SlackFake]) -> None:
    fake = slack(scopes=("chat:write", "commands"))

    result = doctor(sqlite_db, **slack_env(fake))

    assert result.exit_code == 1, result.output
    missing = sorted(required_slack_scopes() - {"chat:write", "commands"})
    assert missing == ["im:history", "im:write", "users:read", "users:read.email"]
    assert lines(result)["SLACK_BOT_TOKEN"] == "✗ " + t(
        "doctor.slack_scopes", "en", scopes=", ".join(missing)
    )


def test_the_manifest_asks_for_exactly_the_scopes_the_fake_grants_by_default() -> None:
    # the all-good test above relies on it; a scope added to the manifest must be added to the fake
    assert required_slack_scopes() == set(DEFAULT_SCOPES)


def test_a_bad_app_level_token_is_named(sqlite_db: str, slack: Callable[..., SlackFake]) -> None:
    fake = slack()
    fake.fail("apps.connections.open", "invalid_auth")

    result = doctor(sqlite_db, **slack_env(fake))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["SLACK_BOT_TOKEN"].startswith("✓")
    assert found["SLACK_APP_TOKEN"] == "✗ " + t("doctor.slack_app_token_bad", "en", error="invalid_auth")
    assert "connections:write" in found["SLACK_APP_TOKEN"]


def test_the_bot_token_in_place_of_the_app_level_token_is_named(
    sqlite_db: str, slack: Callable[..., SlackFake]
) -> None:
    fake = slack()

    result = doctor(sqlite_db, **slack_env(fake, SLACK_APP_TOKEN=BOT_TOKEN))

    assert result.exit_code == 1, result.output
    assert lines(result)["SLACK_APP_TOKEN"] == "✗ " + t(
        "doctor.slack_app_token_bad", "en", error="not_allowed_token_type"
    )


def test_slack_unreachable_names_the_url_to_check(sqlite_db: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}/api/"

    result = doctor(sqlite_db, **slack_env(None, SLACK_API_URL=url))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DATABASE_URL"].startswith("✓")
    assert found["SLACK_API_URL"].startswith("✗ ")
    assert url in found["SLACK_API_URL"]
    assert "SLACK_API_URL" in found["SLACK_API_URL"]  # says which setting to check
    assert "Traceback" not in result.output


def test_slack_unreachable_is_one_finding_not_three(sqlite_db: str) -> None:
    result = doctor(sqlite_db, **slack_env(None, SLACK_API_URL=f"http://127.0.0.1:{closed_port()}/api/"))

    assert set(lines(result)) == {"DATABASE_URL", "SCHEDULER_FILE", "SLACK_API_URL"}, result.output


def test_an_api_url_that_is_not_slacks_web_api_is_named(
    sqlite_db: str, slack: Callable[..., SlackFake]
) -> None:
    # a common slip: the site root instead of its /api/ path; the server answers 404 in plain text
    url = slack().url + "/"

    result = doctor(sqlite_db, **slack_env(None, SLACK_API_URL=url))

    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 1, result.output
    assert "SLACK_API_URL" in result.output


# ---- database problems ------------------------------------------------------------------------


def test_an_empty_database_says_to_run_db_upgrade_and_is_left_as_it_was(
    isolated: Path, slack: Callable[..., SlackFake]
) -> None:
    url = f"sqlite:///{isolated / 'empty.db'}"

    result = doctor(url, **slack_env(slack()))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DATABASE_URL"] == "✗ " + t("doctor.db_empty", "en")
    assert "cadence db upgrade" in found["DATABASE_URL"]
    # the other checks still run
    assert found["SLACK_BOT_TOKEN"].startswith("✓")
    # doctor only looks: the database is still empty
    assert lines(doctor(url))["DATABASE_URL"] == "✗ " + t("doctor.db_empty", "en")


def test_an_empty_database_is_explained_in_chinese_too(isolated: Path) -> None:
    result = doctor(f"sqlite:///{isolated / 'empty.db'}", locale="zh-CN")

    assert result.exit_code == 1, result.output
    assert t("doctor.db_empty", "zh-CN") in result.output


def test_an_unreachable_postgresql_is_named_without_a_traceback(isolated: Path) -> None:
    result = doctor(f"postgresql://cadence@127.0.0.1:{closed_port()}/cadence")

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DATABASE_URL"].startswith("✗ cannot reach the database")
    assert "Traceback" not in result.output


def test_invalid_settings_are_a_clear_error(isolated: Path) -> None:
    # Slack switched on with a placeholder token copied from an example file
    result = doctor(
        f"sqlite:///{isolated / 'x.db'}",
        SLACK_ENABLED="true",
        SLACK_BOT_TOKEN="xoxb-your-token",
        SLACK_APP_TOKEN="",
    )

    assert result.exit_code == 1
    assert "invalid settings" in result.output
    assert "SLACK_BOT_TOKEN" in result.output
    assert "Traceback" not in result.output


# ---- the checks as a function -----------------------------------------------------------------


async def test_run_checks_reports_each_problem_as_a_finding(db_url: str) -> None:
    async with SlackFake(scopes=("chat:write",)) as fake:
        settings: Settings = settings_for(db_url)
        settings.slack = SlackSettings(
            enabled=True, bot_token=BOT_TOKEN, app_token=APP_TOKEN, api_url=fake.base_url
        )
        fake.fail("apps.connections.open", "invalid_auth")

        findings = await run_checks(settings)

    assert [(f.subject, f.ok) for f in findings] == [
        ("DATABASE_URL", True),
        ("SCHEDULER_FILE", True),
        ("SLACK_BOT_TOKEN", False),
        ("SLACK_APP_TOKEN", False),
    ]
    assert "users:read.email" in findings[2].detail
