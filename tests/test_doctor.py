"""``cadence doctor`` as an operator runs it: the database, Slack, Feishu and DingTalk checked, and
what to fix said plainly.

The real ``slack_sdk`` talks to the Slack fake over a real socket. The command runs ``asyncio.run``
itself, so the fake serves from an event loop of its own on a background thread (the Feishu and
DingTalk fakes always do).
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
from bot.doctor import Finding, report, required_slack_scopes, run_checks, scope_named
from bot.settings import FeishuSettings, Settings, SlackSettings
from conversations.i18n import t
from storage.migrate import revisions
from tests.cli_env import isolate
from tests.fakes.dingtalk import DingTalkFake
from tests.fakes.feishu import FeishuFake
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
        if mark in ("✓", "✗", "⚠"):
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


# ---- Feishu -----------------------------------------------------------------------------------


@pytest.fixture
def feishu() -> Iterator[Callable[..., FeishuFake]]:
    """Start a Feishu fake (it serves from its own thread); every one started is stopped afterwards."""
    started: list[FeishuFake] = []

    def start(**options: Any) -> FeishuFake:
        fake = FeishuFake(**options)
        asyncio.run(fake.start())
        started.append(fake)
        return fake

    yield start
    for fake in started:
        asyncio.run(fake.stop())


def feishu_env(fake: FeishuFake | None = None, **overrides: str) -> dict[str, str]:
    """The environment of a long-connection install pointed at ``fake``."""
    env = {
        "FEISHU_ENABLED": "true",
        "FEISHU_APP_ID": fake.app_id if fake is not None else "cli_a4f3b2c1d0e9f8a7",
        "FEISHU_APP_SECRET": fake.app_secret if fake is not None else "Vb7Kp2Qx9Lm4Tz8Rw3Ny6Hs1Jd5Fg0Ca",
        "FEISHU_DOMAIN": fake.url if fake is not None else "",
    }
    env.update(overrides)
    return env


FEISHU_CHECKS = {"DATABASE_URL", "SCHEDULER_FILE", "FEISHU_APP_SECRET", "FEISHU_CONNECTION", "FEISHU_APP_ID"}


def test_feishu_configured_right_is_all_ticks(sqlite_db: str, feishu: Callable[..., FeishuFake]) -> None:
    fake = feishu()

    result = doctor(sqlite_db, **feishu_env(fake))

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == FEISHU_CHECKS, result.output
    assert found["FEISHU_APP_SECRET"] == "✓ " + t("doctor.feishu_ok", "en", app_id=fake.app_id, url=fake.url)
    assert found["FEISHU_CONNECTION"] == "✓ " + t("doctor.feishu_ws_ok", "en")
    assert found["FEISHU_APP_ID"] == "✓ " + t("doctor.feishu_permissions_ok", "en")
    # what Feishu saw: the token asked for with the app's credentials; the long connection's bootstrap
    # as lark-oapi's ws.Client makes it; the two permission probes with the token
    (token,) = fake.calls_to("/tenant_access_token/internal")
    assert token.body == {"app_id": fake.app_id, "app_secret": fake.app_secret}
    (endpoint,) = fake.calls_to("/callback/ws/endpoint")
    assert endpoint.method == "POST"
    assert endpoint.body == {"AppID": fake.app_id, "AppSecret": fake.app_secret}
    assert endpoint.headers["locale"] == "zh"
    probes = fake.calls_to("/users/batch_get_id") + fake.calls_to("/departments/0/children")
    assert [c.headers["authorization"].startswith("Bearer t-") for c in probes] == [True, True]
    assert fake.connections == 0  # doctor asks for a connection URL, it does not connect


def test_feishu_is_checked_in_chinese_too(sqlite_db: str, feishu: Callable[..., FeishuFake]) -> None:
    fake = feishu()

    result = doctor(sqlite_db, locale="zh-CN", **feishu_env(fake))

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["FEISHU_APP_SECRET"] == "✓ " + t(
        "doctor.feishu_ok", "zh-CN", app_id=fake.app_id, url=fake.url
    )
    assert found["FEISHU_CONNECTION"] == "✓ " + t("doctor.feishu_ws_ok", "zh-CN")
    assert "长连接" in found["FEISHU_CONNECTION"]
    assert found["FEISHU_APP_ID"] == "✓ " + t("doctor.feishu_permissions_ok", "zh-CN")


def test_a_wrong_feishu_app_secret_is_named_with_feishus_error(
    sqlite_db: str, feishu: Callable[..., FeishuFake]
) -> None:
    fake = feishu()

    result = doctor(sqlite_db, **feishu_env(fake, FEISHU_APP_SECRET="Qm3Zt8Wc1Rv6Ny2Lk7Hb4Xs9Jd0Fp5Ga"))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["FEISHU_APP_SECRET"] == "✗ " + t(
        "doctor.feishu_credentials_bad", "en", error="10014 app secret invalid"
    )
    assert "App Secret" in found["FEISHU_APP_SECRET"]  # says what to copy, and from where
    # without a token nothing else can be checked: one finding, and no long connection asked for
    assert set(found) == {"DATABASE_URL", "SCHEDULER_FILE", "FEISHU_APP_SECRET"}, result.output
    assert fake.calls_to("/callback/ws/endpoint") == []
    assert "Traceback" not in result.output


def test_a_wrong_feishu_app_secret_in_chinese(sqlite_db: str, feishu: Callable[..., FeishuFake]) -> None:
    fake = feishu()

    result = doctor(
        sqlite_db, locale="zh-CN", **feishu_env(fake, FEISHU_APP_SECRET="Qm3Zt8Wc1Rv6Ny2Lk7Hb4Xs9")
    )

    assert result.exit_code == 1, result.output
    assert lines(result)["FEISHU_APP_SECRET"] == "✗ " + t(
        "doctor.feishu_credentials_bad", "zh-CN", error="10014 app secret invalid"
    )


def test_an_unreachable_feishu_domain_is_named(sqlite_db: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    result = doctor(sqlite_db, **feishu_env(None, FEISHU_DOMAIN=url))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert set(found) == {"DATABASE_URL", "SCHEDULER_FILE", "FEISHU_DOMAIN"}, result.output
    assert found["FEISHU_DOMAIN"].startswith("✗ cannot reach Feishu at " + url)
    assert "FEISHU_DOMAIN" in found["FEISHU_DOMAIN"]  # says which setting to check
    assert "Traceback" not in result.output


def test_a_feishu_domain_that_is_not_feishus_api_is_named(
    sqlite_db: str, slack: Callable[..., SlackFake]
) -> None:
    # some other web server: it answers the token request with a plain-text 404
    url = slack().url

    result = doctor(sqlite_db, **feishu_env(None, FEISHU_DOMAIN=url))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["FEISHU_DOMAIN"] == "✗ " + t(
        "doctor.feishu_not_api", "en", url=url, error="Feishu answered HTTP 404 without its JSON"
    )
    assert "FEISHU_APP_SECRET" not in found  # not taken for a verdict on the credentials


def test_too_many_long_connections_are_explained(sqlite_db: str, feishu: Callable[..., FeishuFake]) -> None:
    fake = feishu()
    # what Feishu answers when the app already has 50 long connections (HTTP 200, a code)
    fake.fail("/callback/ws/endpoint", code=1000040350, status=200)

    result = doctor(sqlite_db, **feishu_env(fake))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["FEISHU_CONNECTION"] == "✗ " + t(
        "doctor.feishu_ws_too_many", "en", error="1000040350 injected failure 1000040350"
    )
    assert "50" in found["FEISHU_CONNECTION"]
    assert found["FEISHU_APP_SECRET"].startswith("✓")
    assert found["FEISHU_APP_ID"].startswith("✓")  # one run shows everything there is to fix


def test_a_refused_long_connection_suggests_webhook_mode(
    sqlite_db: str, feishu: Callable[..., FeishuFake]
) -> None:
    fake = feishu()
    fake.fail("/callback/ws/endpoint", code=403, status=200)

    result = doctor(sqlite_db, **feishu_env(fake))

    assert result.exit_code == 1, result.output
    detail = lines(result)["FEISHU_CONNECTION"]
    assert detail == "✗ " + t("doctor.feishu_ws_refused", "en", error="403 injected failure 403")
    assert "FEISHU_CONNECTION=webhook" in detail


def test_webhook_mode_without_an_encrypt_key_is_a_warning_with_the_url(
    sqlite_db: str, feishu: Callable[..., FeishuFake]
) -> None:
    fake = feishu()

    result = doctor(
        sqlite_db,
        **feishu_env(
            fake,
            FEISHU_CONNECTION="webhook",
            FEISHU_VERIFICATION_TOKEN=fake.verification_token,
            HTTP_PORT="8443",
        ),
    )

    assert result.exit_code == 0, result.output  # it works: a warning is not a failure
    found = lines(result)
    assert found["FEISHU_ENCRYPT_KEY"] == "⚠ " + t("doctor.feishu_unsigned", "en")
    assert "neither signed nor encrypted" in found["FEISHU_ENCRYPT_KEY"]
    assert found["FEISHU_CONNECTION"] == "✓ " + t(
        "doctor.feishu_webhook_ok", "en", host="127.0.0.1", port=8443, path="/feishu/events"
    )
    assert "http(s)://<your host>:8443/feishu/events" in found["FEISHU_CONNECTION"]
    assert fake.calls_to("/callback/ws/endpoint") == []  # no long connection in webhook mode
    assert found["FEISHU_APP_ID"].startswith("✓")


def test_webhook_mode_with_an_encrypt_key_has_no_warning(
    sqlite_db: str, feishu: Callable[..., FeishuFake]
) -> None:
    fake = feishu()

    result = doctor(
        sqlite_db,
        locale="zh-CN",
        **feishu_env(
            fake,
            FEISHU_CONNECTION="webhook",
            FEISHU_VERIFICATION_TOKEN=fake.verification_token,
            FEISHU_ENCRYPT_KEY=fake.encrypt_key,
        ),
    )

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == FEISHU_CHECKS, result.output
    assert found["FEISHU_CONNECTION"] == "✓ " + t(
        "doctor.feishu_webhook_ok", "zh-CN", host="127.0.0.1", port=8080, path="/feishu/events"
    )


def test_missing_feishu_permissions_are_named(sqlite_db: str, feishu: Callable[..., FeishuFake]) -> None:
    fake = feishu()
    fake.fail("/users/batch_get_id", code=99991672)
    fake.fail("/departments/0/children", code=99991672)

    result = doctor(sqlite_db, **feishu_env(fake))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["FEISHU_APP_ID"] == "✗ " + t(
        "doctor.feishu_scopes", "en", scopes="contact:user.id:readonly, contact:contact.base:readonly"
    )
    assert "publish" in found["FEISHU_APP_ID"]  # a permission takes effect with a new version
    assert found["FEISHU_CONNECTION"].startswith("✓")


def test_a_contact_range_short_of_the_whole_org_is_a_warning(
    sqlite_db: str, feishu: Callable[..., FeishuFake]
) -> None:
    fake = feishu()
    fake.fail("/departments/0/children", code=40004, status=403)  # "no dept authority error"

    result = doctor(sqlite_db, **feishu_env(fake))

    assert result.exit_code == 0, result.output
    detail = lines(result)["FEISHU_APP_ID"]
    assert detail == "⚠ " + t("doctor.feishu_contact_range", "en")
    assert "cadence org sync feishu" in detail


def test_the_scope_feishus_refusal_names_is_the_one_to_grant() -> None:
    refusal = (
        "Feishu error 99991672: Access denied. One of the following scopes is required: "
        "[contact:contact.base:readonly, contact:contact:access_as_app, contact:contact:readonly]."
        "应用尚未开通所需的应用身份权限：[contact:contact.base:readonly, contact:contact:access_as_app] "
        "(HTTP 400, GET /open-apis/contact/v3/departments/0/children)"
    )
    assert scope_named(refusal, "fallback") == "contact:contact.base:readonly"
    assert scope_named("Feishu error 99991672: injected failure 99991672", "fallback") == "fallback"


async def test_webhook_mode_without_a_verification_token_is_refused(sqlite_db: str) -> None:
    # settings refuse this combination when read; a Settings built in code can still carry it
    fake = FeishuFake()
    await fake.start()
    try:
        settings: Settings = settings_for(sqlite_db)
        valid = FeishuSettings(
            enabled=True,
            app_id=fake.app_id,
            app_secret=fake.app_secret,
            domain=fake.url,
            connection="webhook",
            verification_token="v",
        )
        settings.feishu = valid.model_copy(update={"verification_token": ""})

        findings = await run_checks(settings)
    finally:
        await fake.stop()

    by_subject = {f.subject: f for f in findings}
    assert not by_subject["FEISHU_VERIFICATION_TOKEN"].ok
    assert by_subject["FEISHU_VERIFICATION_TOKEN"].detail == t(
        "doctor.feishu_token_missing", settings.default_locale
    )


def test_a_warning_is_marked_apart_from_ticks_and_crosses() -> None:
    text = report(
        [
            Finding("A", True, "fine"),
            Finding("B", False, "broken"),
            Finding("C", True, "works, but", warning=True),
        ]
    )
    assert text.splitlines() == ["✓ A: fine", "✗ B: broken", "⚠ C: works, but"]


# ---- DingTalk ---------------------------------------------------------------------------------


@pytest.fixture
def dingtalk() -> Iterator[Callable[..., DingTalkFake]]:
    """Start a DingTalk fake (it serves from its own thread); every one started is stopped afterwards.

    It lists two people with emails in the top department unless told ``people=False``.
    """
    started: list[DingTalkFake] = []

    def start(*, people: bool = True, **options: Any) -> DingTalkFake:
        fake = DingTalkFake(**options)
        asyncio.run(fake.start())
        started.append(fake)
        if people:
            fake.add_user("u-emma", name="Emma Smith", email="emma.smith@example.com")
            fake.add_user("u-lilei", name="李雷", org_email="li.lei@example.com")
        return fake

    yield start
    for fake in started:
        asyncio.run(fake.stop())


CARD_TEMPLATE = "d3b8c0a1-5e2f-4c7a-9b61-cadence.schema"


def dingtalk_env(fake: DingTalkFake | None = None, **overrides: str) -> dict[str, str]:
    """The environment of a Stream-mode install with a card template, pointed at ``fake``."""
    env = {
        "DINGTALK_ENABLED": "true",
        "DINGTALK_CLIENT_ID": fake.client_id if fake is not None else "dingx7kq2m9vbz4wt3ra",
        "DINGTALK_CLIENT_SECRET": fake.client_secret
        if fake is not None
        else "Rk8vQ2xZ7mN4pL9wT3yH6jB1cF5gD0sA",
        "DINGTALK_API_URL": fake.url if fake is not None else "",
        "DINGTALK_OAPI_URL": fake.url if fake is not None else "",
        "DINGTALK_CARD_TEMPLATE_ID": CARD_TEMPLATE,
    }
    env.update(overrides)
    return env


DINGTALK_CHECKS = {
    "DATABASE_URL",
    "SCHEDULER_FILE",
    "DINGTALK_CLIENT_SECRET",
    "DINGTALK_API_URL",
    "DINGTALK_CLIENT_ID",
    "DINGTALK_CARD_TEMPLATE_ID",
}
WRONG_DINGTALK_SECRET = "Zq4Wc7Lp1Xv9Nb3Tr6Hy2Md8Fs5Kj0Ga"


def test_dingtalk_configured_right_is_all_ticks(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk()

    result = doctor(sqlite_db, **dingtalk_env(fake))

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert set(found) == DINGTALK_CHECKS, result.output
    assert all(line.startswith("✓") for line in found.values()), result.output
    # DINGTALK_ROBOT_CODE is empty: the robot is the app's own (its code is the client id)
    assert found["DINGTALK_CLIENT_SECRET"] == "✓ " + t(
        "doctor.dingtalk_ok", "en", client_id=fake.client_id, url=fake.url, robot=fake.client_id
    )
    assert found["DINGTALK_API_URL"] == "✓ " + t("doctor.dingtalk_stream_ok", "en")
    assert "Stream 模式" in found["DINGTALK_API_URL"]
    assert found["DINGTALK_CLIENT_ID"] == "✓ " + t("doctor.dingtalk_permissions_ok", "en")
    assert found["DINGTALK_CARD_TEMPLATE_ID"] == "✓ " + t(
        "doctor.dingtalk_cards", "en", template=CARD_TEMPLATE
    )
    # what DingTalk saw: the token asked for with the app's credentials; a Stream ticket asked for as
    # the platform asks for it; the directory probes with that token
    (token,) = fake.calls_to("/v1.0/oauth2/accessToken")
    assert token.body == {"appKey": fake.client_id, "appSecret": fake.client_secret}
    (opened,) = fake.open_requests
    assert opened["clientId"] == fake.client_id
    assert {(s["type"], s["topic"]) for s in opened["subscriptions"]} == {
        ("CALLBACK", "/v1.0/im/bot/messages/get"),
        ("CALLBACK", "/v1.0/card/instances/callback"),
    }
    probes = [fake.calls_to(path) for path in ("/department/listsub", "/user/list", "/user/get")]
    assert [len(calls) for calls in probes] == [1, 1, 1]
    tokens = {calls[0].query.get("access_token") for calls in probes}
    assert len(tokens) == 1 and None not in tokens  # one token, the new API's, also for oapi
    assert probes[2][0].body == {"userid": "u-emma"}  # someone the listing showed
    assert fake.connections_opened == 0  # doctor asks for a ticket, it does not connect
    assert fake.batch_sends == []  # and sends nobody anything


def test_dingtalk_is_checked_in_chinese_too(sqlite_db: str, dingtalk: Callable[..., DingTalkFake]) -> None:
    fake = dingtalk()

    result = doctor(sqlite_db, locale="zh-CN", **dingtalk_env(fake, DINGTALK_ROBOT_CODE="ding-robot-7"))

    assert result.exit_code == 0, result.output
    found = lines(result)
    assert found["DINGTALK_CLIENT_SECRET"] == "✓ " + t(
        "doctor.dingtalk_ok", "zh-CN", client_id=fake.client_id, url=fake.url, robot="ding-robot-7"
    )
    assert found["DINGTALK_API_URL"] == "✓ " + t("doctor.dingtalk_stream_ok", "zh-CN")
    assert found["DINGTALK_CLIENT_ID"] == "✓ " + t("doctor.dingtalk_permissions_ok", "zh-CN")
    assert "互动卡片" in found["DINGTALK_CARD_TEMPLATE_ID"]


def test_a_wrong_dingtalk_client_secret_is_named_with_dingtalks_error(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk()

    result = doctor(sqlite_db, **dingtalk_env(fake, DINGTALK_CLIENT_SECRET=WRONG_DINGTALK_SECRET))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DINGTALK_CLIENT_SECRET"] == "✗ " + t(
        "doctor.dingtalk_credentials_bad", "en", error="invalidClientSecret 无效的clientSecret"
    )
    detail = found["DINGTALK_CLIENT_SECRET"]
    assert "DINGTALK_CLIENT_SECRET" in detail and "凭证与基础信息" in detail  # what to copy, and from where
    # without a token nothing else is asked of DingTalk; the card template is still looked at
    assert set(found) == {
        "DATABASE_URL",
        "SCHEDULER_FILE",
        "DINGTALK_CLIENT_SECRET",
        "DINGTALK_CARD_TEMPLATE_ID",
    }
    assert fake.open_requests == []
    assert [c.path for c in fake.calls if c.path.startswith("/topapi/")] == []
    assert "Traceback" not in result.output


def test_a_wrong_dingtalk_client_id_is_named_as_the_client_id(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk()

    result = doctor(
        sqlite_db, locale="zh-CN", **dingtalk_env(fake, DINGTALK_CLIENT_ID="dingx0000000000000000")
    )

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DINGTALK_CLIENT_ID"] == "✗ " + t(
        "doctor.dingtalk_credentials_bad", "zh-CN", error="invalidClientId 无效的clientId"
    )
    assert "DINGTALK_CLIENT_SECRET" not in found


def test_missing_dingtalk_permissions_are_named(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk()
    # 60011 names no permission: the one the call needs is said; 88 with subcode 60011 names it
    fake.fail("/topapi/v2/department/listsub", code=60011, message="没有调用该接口的权限")
    fake.fail(
        "/topapi/v2/user/list",
        code=88,
        message="ding talk error[subcode=60011,submsg=应用尚未开通所需的权限：[qyapi_get_department_member]]",
    )

    result = doctor(sqlite_db, **dingtalk_env(fake))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DINGTALK_CLIENT_ID"] == "✗ " + t(
        "doctor.dingtalk_scopes", "en", scopes="qyapi_get_department_list, qyapi_get_department_member"
    )
    assert "publish a new version" in found["DINGTALK_CLIENT_ID"]  # a permission takes effect with one
    # one run shows everything there is to fix: the rest was still checked
    assert found["DINGTALK_CLIENT_SECRET"].startswith("✓")
    assert found["DINGTALK_API_URL"].startswith("✓")


def test_a_sender_lookup_without_its_permission_is_named(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk(people=False)  # nobody listed: a made-up userid is looked up
    fake.fail("/topapi/v2/user/get", code=60011, message="没有调用该接口的权限")

    result = doctor(sqlite_db, locale="zh-CN", **dingtalk_env(fake))

    assert result.exit_code == 1, result.output
    assert lines(result)["DINGTALK_CLIENT_ID"] == "✗ " + t(
        "doctor.dingtalk_scopes", "zh-CN", scopes="qyapi_get_member"
    )
    (lookup,) = fake.calls_to("/user/get")
    assert lookup.body == {"userid": "cadence-doctor-probe"}


def test_a_directory_without_emails_is_a_warning(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk(people=False)
    # what DingTalk lists when the app may not read emails: the fields left out
    fake.add_user("u-emma", name="Emma Smith")
    fake.add_user("u-lilei", name="李雷")

    result = doctor(sqlite_db, **dingtalk_env(fake))

    assert result.exit_code == 0, result.output
    detail = lines(result)["DINGTALK_CLIENT_ID"]
    assert detail == "⚠ " + t("doctor.dingtalk_no_emails", "en", count=2, scopes="邮箱等个人信息")


def test_without_a_card_template_dingtalk_warns_of_markdown(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk()

    result = doctor(sqlite_db, **dingtalk_env(fake, DINGTALK_CARD_TEMPLATE_ID=""))

    assert result.exit_code == 0, result.output  # it works: a warning is not a failure
    found = lines(result)
    assert set(found) == DINGTALK_CHECKS, result.output
    detail = found["DINGTALK_CARD_TEMPLATE_ID"]
    assert detail == "⚠ " + t("doctor.dingtalk_no_cards", "en")
    assert "markdown messages with numbered choices" in detail
    assert "title, markdown, hint, status and buttons" in detail  # what the template must offer
    assert all(found[s].startswith("✓") for s in DINGTALK_CHECKS - {"DINGTALK_CARD_TEMPLATE_ID"})


def test_without_a_card_template_the_warning_is_in_chinese_too(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    result = doctor(sqlite_db, locale="zh-CN", **dingtalk_env(dingtalk(), DINGTALK_CARD_TEMPLATE_ID=""))

    assert result.exit_code == 0, result.output
    assert lines(result)["DINGTALK_CARD_TEMPLATE_ID"] == "⚠ " + t("doctor.dingtalk_no_cards", "zh-CN")


def test_a_refused_stream_connection_is_named(sqlite_db: str, dingtalk: Callable[..., DingTalkFake]) -> None:
    fake = dingtalk()
    fake.fail("/v1.0/gateway/connections/open", code="authFailed", status=401, message="鉴权失败")

    result = doctor(sqlite_db, **dingtalk_env(fake))

    assert result.exit_code == 1, result.output
    detail = lines(result)["DINGTALK_API_URL"]
    assert detail.startswith(f"✗ asking {fake.url} for a Stream mode connection failed (HTTP 401 ")
    assert "authFailed" in detail and "鉴权失败" in detail
    assert "/v1.0/gateway/connections/open" in detail
    assert lines(result)["DINGTALK_CLIENT_ID"].startswith("✓")


def test_an_unreachable_dingtalk_api_url_is_named(sqlite_db: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}"

    result = doctor(sqlite_db, **dingtalk_env(None, DINGTALK_API_URL=url, DINGTALK_OAPI_URL=url))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert set(found) == {"DATABASE_URL", "SCHEDULER_FILE", "DINGTALK_API_URL", "DINGTALK_CARD_TEMPLATE_ID"}
    assert found["DINGTALK_API_URL"].startswith(f"✗ cannot reach DingTalk at {url} (")
    assert "Check DINGTALK_API_URL" in found["DINGTALK_API_URL"]
    assert "Traceback" not in result.output


def test_an_unreachable_dingtalk_oapi_url_is_named(
    sqlite_db: str, dingtalk: Callable[..., DingTalkFake]
) -> None:
    fake = dingtalk()
    url = f"http://127.0.0.1:{closed_port()}"

    result = doctor(sqlite_db, **dingtalk_env(fake, DINGTALK_OAPI_URL=url))

    assert result.exit_code == 1, result.output
    found = lines(result)
    assert found["DINGTALK_OAPI_URL"].startswith(f"✗ cannot reach DingTalk at {url} (")
    assert "Check DINGTALK_OAPI_URL" in found["DINGTALK_OAPI_URL"]
    assert found["DINGTALK_API_URL"].startswith("✓")  # the new API and the stream are fine
