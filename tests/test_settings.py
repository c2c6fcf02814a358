"""Settings from the environment and ``.env``: defaults, database URLs, nested sections, and refusing
placeholder secrets for enabled platforms."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from pydantic import ValidationError

from bot.settings import Settings
from storage.engine import async_url

EXAMPLE_ENV = Path(__file__).resolve().parents[1] / ".env.example"
SECTIONS = ("SLACK", "FEISHU", "DINGTALK", "JIRA")
TOP_LEVEL = (
    "DATABASE_URL",
    "DEFAULT_LOCALE",
    "DEFAULT_TIMEZONE",
    "RITUALS_DIR",
    "LOG_LEVEL",
    "MAX_MESSAGE_CHARS",
    "SNOOZE_MINUTES",
    "HTTP_HOST",
    "HTTP_PORT",
)
# values that look like real credentials (random, not from any account)
REAL = {
    "SLACK_BOT_TOKEN": "xoxb-2718281828-3141592653-Zq8Lw2XvR7tYbN4cKm9PdHs1",
    "SLACK_APP_TOKEN": "xapp-1-A0CADENCE-1618033988-Kp3Lm8Qz2Wx7Rv4Ty9Nb6Hc",
    "FEISHU_APP_ID": "cli_a4f3b2c1d0e9f8a7",
    "FEISHU_APP_SECRET": "Vb7Kp2Qx9Lm4Tz8Rw3Ny6Hs1Jd5Fg0Ca",
    "DINGTALK_CLIENT_ID": "dingq7z1x9w3v5u2t8s4",
    "DINGTALK_CLIENT_SECRET": "N3k8Qp2Wm7Xz4Lr9Tv6Yb1Hc5Jd0Fg8Sa2Ke7Uo4Pi9Ly3Mw6Qn1Rb5Tc8Vd0Xe",
}
PLATFORM_SECRETS = {
    "SLACK": ("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN"),
    "FEISHU": ("FEISHU_APP_ID", "FEISHU_APP_SECRET"),
    "DINGTALK": ("DINGTALK_CLIENT_ID", "DINGTALK_CLIENT_SECRET"),
}
PLACEHOLDERS = ["", "   ", "changeme", "xoxb-your-bot-token", "<your token>", "your_secret_here", "..."]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting from the machine's environment or a stray ``.env``: each test says what it sets."""
    for name in list(os.environ):
        if name.upper() in TOP_LEVEL or name.upper().startswith(tuple(f"{s}_" for s in SECTIONS)):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refusal(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    """The message Settings() refuses ``env`` with."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        Settings()
    return str(caught.value)


def test_defaults_use_a_sqlite_file_in_the_working_directory(clean_environment: Path) -> None:
    settings = Settings()

    assert settings.database_url == "sqlite:///cadence.db"
    assert async_url(settings.database_url) == "sqlite+aiosqlite:///cadence.db"
    assert settings.default_locale == "zh-CN"
    assert settings.default_timezone == "Asia/Shanghai"
    assert settings.rituals_dir is None
    assert settings.enabled_platforms() == []
    assert not any(getattr(settings, s.lower()).enabled for s in SECTIONS)


@pytest.mark.parametrize(
    ("url", "driver_url"),
    [
        ("sqlite:///x.db", "sqlite+aiosqlite:///x.db"),
        ("sqlite:////var/lib/cadence/cadence.db", "sqlite+aiosqlite:////var/lib/cadence/cadence.db"),
        ("postgresql://user@host:5432/db", "postgresql+asyncpg://user@host:5432/db"),
        ("postgres://user@host:5432/db", "postgresql+asyncpg://user@host:5432/db"),
        # a password with an escaped character reaches the driver unchanged (and unmasked)
        (
            "postgresql://cadence:p%40ss@db.internal/cadence",
            "postgresql+asyncpg://cadence:p%40ss@db.internal/cadence",
        ),
    ],
)
def test_database_urls_are_accepted_and_mapped_to_async_drivers(
    monkeypatch: pytest.MonkeyPatch, url: str, driver_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", url)
    settings = Settings()
    assert settings.database_url == url
    assert async_url(settings.database_url) == driver_url


def test_an_unsupported_database_is_refused_naming_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    message = refusal(monkeypatch, DATABASE_URL="mysql://cadence@db.internal/cadence")
    assert "DATABASE_URL" in message
    assert "mysql" in message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("", id="empty"),
        pytest.param("cadence.db", id="bare-file"),
        pytest.param("not a url", id="text"),
    ],
)
def test_an_unparseable_database_url_is_refused_naming_database_url(
    monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """``DATABASE_URL=`` (left empty in .env) or a bare file name must be a settings error, not a crash."""
    message = refusal(monkeypatch, DATABASE_URL=url)
    assert "DATABASE_URL" in message


@pytest.mark.parametrize("section", list(PLATFORM_SECRETS))
@pytest.mark.parametrize("placeholder", PLACEHOLDERS)
def test_an_enabled_platform_refuses_placeholder_secrets(
    monkeypatch: pytest.MonkeyPatch, section: str, placeholder: str
) -> None:
    secrets = PLATFORM_SECRETS[section]
    env = {name: REAL[name] for name in secrets}
    env[secrets[-1]] = placeholder
    message = refusal(monkeypatch, **{f"{section}_ENABLED": "true"}, **env)
    assert secrets[-1] in message
    # a secret that is fine is not blamed
    assert all(name not in message for name in secrets[:-1])


@pytest.mark.parametrize("section", list(PLATFORM_SECRETS))
def test_an_enabled_platform_without_any_secret_names_every_missing_one(
    monkeypatch: pytest.MonkeyPatch, section: str
) -> None:
    message = refusal(monkeypatch, **{f"{section}_ENABLED": "true"})
    assert all(name in message for name in PLATFORM_SECRETS[section])


@pytest.mark.parametrize("section", list(PLATFORM_SECRETS))
def test_an_enabled_platform_with_real_looking_secrets_is_accepted(
    monkeypatch: pytest.MonkeyPatch, section: str
) -> None:
    monkeypatch.setenv(f"{section}_ENABLED", "true")
    for name in PLATFORM_SECRETS[section]:
        monkeypatch.setenv(name, REAL[name])

    settings = Settings()

    nested = getattr(settings, section.lower())
    assert nested.enabled is True
    for name in PLATFORM_SECRETS[section]:
        assert getattr(nested, name.removeprefix(f"{section}_").lower()) == REAL[name]
    assert settings.enabled_platforms() == [section.lower()]


def test_a_platform_not_enabled_may_keep_placeholders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_ENABLED", "false")
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-your-bot-token")
    monkeypatch.setenv("FEISHU_APP_SECRET", "changeme")
    monkeypatch.setenv("DINGTALK_CLIENT_ID", "<your client id>")

    settings = Settings()

    assert settings.slack.bot_token == "xoxb-your-bot-token"
    assert settings.enabled_platforms() == []


def test_nested_variables_land_in_their_section(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "SLACK_API_URL": "http://127.0.0.1:8123/api/",
        "SLACK_SIGNING_SECRET": "8f14e45fceea167a5a36dedd4bea2543",
        "SLACK_COMMAND": "/jiepai",
        "FEISHU_DOMAIN": "https://open.larksuite.com",
        "FEISHU_ENCRYPT_KEY": "k3y",
        "DINGTALK_ROBOT_CODE": "dingrobot42",
        "DINGTALK_API_URL": "http://127.0.0.1:8124",
        "JIRA_BASE_URL": "https://example.atlassian.net",
        "JIRA_API_TOKEN": "ATATT3xFfGF0-not-a-placeholder",
        "JIRA_EMAIL": "li.wei@example.com",
        "JIRA_ENABLED": "true",
        "MAX_MESSAGE_CHARS": "5000",
        "DEFAULT_LOCALE": "en",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    assert (settings.slack.api_url, settings.slack.signing_secret, settings.slack.command) == (
        "http://127.0.0.1:8123/api/",
        "8f14e45fceea167a5a36dedd4bea2543",
        "/jiepai",
    )
    assert (settings.feishu.domain, settings.feishu.encrypt_key) == ("https://open.larksuite.com", "k3y")
    assert (settings.dingtalk.robot_code, settings.dingtalk.api_url) == (
        "dingrobot42",
        "http://127.0.0.1:8124",
    )
    assert (settings.jira.enabled, settings.jira.base_url) == (True, "https://example.atlassian.net")
    assert (settings.max_message_chars, settings.default_locale) == (5000, "en")
    # Jira is a task source, not a chat platform
    assert settings.enabled_platforms() == []
    assert settings.enabled_task_sources() == ["jira"]


def test_task_sources_ride_on_their_platforms_app(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "FEISHU_TASKS_ENABLED": "true",
        "FEISHU_APP_ID": "cli_a1b2c3d4e5",
        "FEISHU_APP_SECRET": "Zx81kq0b7Lw2mN5pQr9sT4uV",
        "FEISHU_TASKS_INTERVAL_MINUTES": "15",
        "DINGTALK_TODOS_ENABLED": "true",
        "DINGTALK_TODOS_RATE_PER_S": "",
        "DINGTALK_CLIENT_ID": "dingq8b2w7xk",
        "DINGTALK_CLIENT_SECRET": "u7Hc2LmQ9wE4rT1yP6sD3fG8",
    }.items():
        monkeypatch.setenv(name, value)

    settings = Settings()

    # the sources read tasks with the chat apps' credentials; the chat platforms themselves stay off
    assert settings.enabled_task_sources() == ["feishu_task", "dingtalk_todo"]
    assert settings.enabled_platforms() == []
    assert (settings.feishu.tasks_interval_minutes, settings.dingtalk.todos_rate_per_s) == (15.0, None)


def test_a_task_source_without_its_apps_credentials_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DINGTALK_TODOS_ENABLED", "true")

    with pytest.raises(ValidationError) as refused:
        Settings()

    assert "DINGTALK_TODOS_ENABLED needs DINGTALK_CLIENT_ID, DINGTALK_CLIENT_SECRET" in str(refused.value)


def test_jira_needs_an_email_and_token_on_cloud_and_a_token_on_data_center(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JIRA_ENABLED", "true")
    monkeypatch.setenv("JIRA_BASE_URL", "https://jira.example.local")
    with pytest.raises(ValidationError) as cloud:
        Settings()
    monkeypatch.setenv("JIRA_DEPLOYMENT", "datacenter")
    with pytest.raises(ValidationError) as datacenter:
        Settings()
    monkeypatch.setenv("JIRA_BEARER_TOKEN", "NjE2MzQ4NTk0OTg1OkFhcUo1")

    assert "JIRA_EMAIL, JIRA_API_TOKEN is missing" in str(cloud.value)
    assert "JIRA_BEARER_TOKEN is missing" in str(datacenter.value)
    assert Settings().jira.deployment == "datacenter"


def test_the_dotenv_file_in_the_working_directory_is_read(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / ".env").write_text(
        "DATABASE_URL=sqlite:///from-dotenv.db\n"
        "DEFAULT_LOCALE=en\n"
        "SLACK_ENABLED=true\n"
        f"SLACK_BOT_TOKEN={REAL['SLACK_BOT_TOKEN']}\n"
        f"SLACK_APP_TOKEN={REAL['SLACK_APP_TOKEN']}\n"
        "RITUALS_DIR=/etc/cadence/rituals\n",
        encoding="utf-8",
    )

    settings = Settings()

    assert settings.database_url == "sqlite:///from-dotenv.db"
    assert settings.default_locale == "en"
    assert (settings.slack.enabled, settings.slack.bot_token) == (True, REAL["SLACK_BOT_TOKEN"])
    assert settings.rituals_dir == Path("/etc/cadence/rituals")

    # the environment wins over the file
    monkeypatch.setenv("DEFAULT_LOCALE", "zh-CN")
    assert Settings().default_locale == "zh-CN"


def test_a_placeholder_in_the_dotenv_file_is_refused(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text(
        "FEISHU_ENABLED=true\nFEISHU_APP_ID=cli_a4f3b2c1d0e9f8a7\nFEISHU_APP_SECRET=your-app-secret\n",
        encoding="utf-8",
    )
    with pytest.raises(ValidationError) as caught:
        Settings()
    assert "FEISHU_APP_SECRET" in str(caught.value)
    assert "FEISHU_APP_ID" not in str(caught.value)


def test_the_shipped_example_works_as_a_dotenv_file(clean_environment: Path) -> None:
    shutil.copy(EXAMPLE_ENV, clean_environment / ".env")

    settings = Settings()

    assert settings.database_url == "sqlite:///cadence.db"
    assert settings.enabled_platforms() == []
    assert settings.slack.api_url == "https://slack.com/api/"
    assert settings.feishu.domain == "https://open.feishu.cn"


def test_slack_with_a_signing_secret_instead_of_an_app_token_runs_in_http_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SLACK_ENABLED", "true")
    monkeypatch.setenv("SLACK_BOT_TOKEN", REAL["SLACK_BOT_TOKEN"])
    monkeypatch.setenv("SLACK_SIGNING_SECRET", "8f14e45fceea167a5a36dedd4bea2543")
    settings = Settings()
    assert settings.slack.http_mode
    monkeypatch.setenv("SLACK_APP_TOKEN", REAL["SLACK_APP_TOKEN"])
    assert not Settings().slack.http_mode
