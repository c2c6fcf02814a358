"""``cadence sync run`` and ``cadence sync status`` as an operator uses them, against the Jira fake."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from bot import settings as settings_module
from bot.cli import main
from conversations.i18n import t
from tests.cli_env import isolate
from tests.fakes.jira import JiraFake
from tests.harness import SAMPLE_ORG

LI_LEI = "5f8a1b2c3d4e5f6a7b8c9d02"  # his Jira account id in examples/org.yaml


class FakeInThread:
    """The Jira fake on a loop of its own: the CLI runs ``asyncio.run`` in the test's thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.fake = JiraFake(time_zone="Asia/Shanghai")
        self.call(self.fake.start())

    def call(self, coro: Any) -> Any:
        done: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return done.result(timeout=30)

    def do(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            return fn(*args, **kwargs)

        return self.call(run())

    def close(self) -> None:
        self.call(self.fake.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


@pytest.fixture
def jira() -> Iterator[FakeInThread]:
    server = FakeInThread()
    fake = server.fake
    days_ago = datetime.now(UTC) - timedelta(days=2)
    server.do(fake.add_project, "PAY", "Payments")
    server.do(fake.add_user, LI_LEI, "Li Lei", "li.lei@example.com")
    server.do(fake.add_user, "712020:ghost", "Guest Contractor", "guest@contractor.example")
    for n, who in enumerate([LI_LEI, LI_LEI, "712020:ghost"]):
        at = days_ago + timedelta(hours=n)
        server.do(fake.add_issue, "PAY", f"Issue {n}", assignee=who, created=at, updated=at)
    yield server
    server.close()


def cadence(*args: str, url: str, locale: str = "en", **env: str) -> Result:
    settings_module.get_settings.cache_clear()
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": url, "DEFAULT_LOCALE": locale, **env})


def jira_env(server: FakeInThread) -> dict[str, str]:
    return {
        "JIRA_ENABLED": "true",
        "JIRA_BASE_URL": server.fake.url,
        "JIRA_EMAIL": server.fake.email,
        "JIRA_API_TOKEN": server.fake.api_token,
        "JIRA_JQL": "project = PAY",
    }


def test_sync_run_then_status_on_each_database(db_url: str, jira: FakeInThread) -> None:
    imported = cadence("org", "import", str(SAMPLE_ORG), url=db_url)
    assert imported.exit_code == 0, imported.output

    ran = cadence("sync", "run", url=db_url, **jira_env(jira))
    status = cadence("sync", "status", url=db_url, locale="zh-CN", **jira_env(jira))

    assert ran.exit_code == 0, ran.output
    lines = ran.output.strip().splitlines()
    assert lines[0] == t("sync.reading", "en", source="Jira")
    assert lines[1].startswith("Jira: full sync done — 3 read, 3 new or changed, 0 deleted, ")
    assert lines[2] == (
        "  1 assignee(s) match nobody in the org (add them, or check their email in the org file): "
        "Guest Contractor <guest@contractor.example>"
    )
    assert status.exit_code == 0, status.output
    assert "Jira：上次运行" in status.output and "（全量，正常）" in status.output
    assert "已存储 3 项（另有已删除 0 项）" in status.output
    assert "有 1 位负责人在组织中找不到对应的人" in status.output


def test_sync_run_with_no_source_switched_on_says_what_to_set(isolated: Path) -> None:
    result = cadence("sync", "run", url=f"sqlite:///{isolated / 'cli.db'}")

    assert result.exit_code == 1
    assert t("sync.none_enabled", "en") in result.output


def test_sync_run_of_a_source_not_switched_on_names_its_setting(isolated: Path, jira: FakeInThread) -> None:
    result = cadence("sync", "run", "dingtalk_todo", url=f"sqlite:///{isolated / 'cli.db'}", **jira_env(jira))

    assert result.exit_code == 1
    assert "DingTalk todos is not switched on: set DINGTALK_TODOS_ENABLED=true" in result.output


def test_a_refused_token_fails_the_run_and_status_names_the_error(isolated: Path, jira: FakeInThread) -> None:
    url = f"sqlite:///{isolated / 'cli.db'}"
    env = jira_env(jira) | {"JIRA_API_TOKEN": "revoked-token-123"}

    ran = cadence("sync", "run", "jira", url=url, **env)
    status = cadence("sync", "status", url=url, **env)

    assert ran.exit_code == 1
    assert "Jira: sync failed after 0 items read" in ran.output
    assert "JIRA_EMAIL" in ran.output  # the error names the settings to check
    assert "(full, failed)" in status.output
    assert "JIRA_EMAIL" in status.output
