"""The ``cadence`` command as an operator uses it: migrate, import and show the org, run the demo,
start a console chat, and clear errors for bad settings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from bot import settings as settings_module
from bot.cli import main
from conversations.i18n import t
from storage.migrate import revisions
from tests.cli_env import isolate
from tests.harness import SAMPLE_ORG

BROKEN_ORG = """\
email,name,manager_email,department,title,timezone,country,locale,roles
chen.jie@example.com,陈杰,,Executive,CEO,Asia/Shanghai,CN,zh-CN,manager
not-an-email,Bad Row,chen.jie@example.com,Engineering,Engineer,Asia/Shanghai,CN,zh-CN,
li.lei@example.com,李雷,chen.jie@example.com,Engineering,Engineer,Mars/Olympus,CN,zh-CN,
"""


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """A working directory of its own (no .env), no platform settings from the machine, fresh settings."""
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


def cadence(*args: str, url: str, locale: str = "en", input: str | None = None, **env: str) -> Result:
    """Run ``cadence ARGS`` as a fresh process would: settings read anew from the environment."""
    settings_module.get_settings.cache_clear()
    runner = CliRunner()
    return runner.invoke(
        main, list(args), env={"DATABASE_URL": url, "DEFAULT_LOCALE": locale, **env}, input=input
    )


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_db_upgrade_migrates_then_says_up_to_date(isolated: Path) -> None:
    url = sqlite_url(isolated)

    first = cadence("db", "upgrade", url=url)
    second = cadence("db", "upgrade", url=url)

    assert first.exit_code == 0, first.output
    assert first.output.strip() == t("cli.migrated", "en", revisions=", ".join(revisions()))
    assert (isolated / "cli.db").exists()
    assert second.exit_code == 0, second.output
    assert second.output.strip() == t("cli.up_to_date", "en")


def test_db_upgrade_speaks_the_default_locale(isolated: Path) -> None:
    result = cadence("db", "upgrade", url=sqlite_url(isolated), locale="zh-CN")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == t("cli.migrated", "zh-CN", revisions=", ".join(revisions()))


def test_org_import_show_and_reimport_on_each_database(db_url: str) -> None:
    upgraded = cadence("db", "upgrade", url=db_url)
    assert upgraded.exit_code == 0, upgraded.output
    assert upgraded.output.strip() == t("cli.up_to_date", "en")

    first = cadence("org", "import", str(SAMPLE_ORG), url=db_url)
    again = cadence("org", "import", str(SAMPLE_ORG), url=db_url)
    shown = cadence("org", "show", url=db_url)

    assert first.exit_code == 0, first.output
    assert "Imported org.yaml: 20 people — 20 added, 0 changed, 0 deactivated, 0 reactivated." in first.output
    assert "• li.lei@example.com" in first.output
    assert again.exit_code == 0, again.output
    assert again.output.strip() == "Imported org.yaml: 20 people, and everything was already up to date."
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == "Org chart (20 active people)"
    assert lines[1].startswith("陈杰 <chen.jie@example.com>")
    assert all(line.startswith(("├─ ", "└─ ", "│", "   ")) for line in lines[2:] if line)
    assert any("李雷 <li.lei@example.com>" in line for line in lines)


def test_org_import_on_a_new_sqlite_file_migrates_it_first(isolated: Path) -> None:
    result = cadence("org", "import", str(SAMPLE_ORG), url=sqlite_url(isolated))
    assert result.exit_code == 0, result.output
    assert "20 added" in result.output


def test_a_broken_org_file_is_refused_with_its_line_numbers_and_changes_nothing(isolated: Path) -> None:
    url = sqlite_url(isolated)
    broken = isolated / "people.csv"
    broken.write_text(BROKEN_ORG, encoding="utf-8")

    result = cadence("org", "import", str(broken), url=url)

    assert result.exit_code == 1
    assert "nothing was changed" in result.stderr
    assert "Line 3: email not-an-email is not a valid email address" in result.stderr
    assert "Line 4: Mars/Olympus is not an IANA time zone" in result.stderr
    assert result.stdout == ""
    shown = cadence("org", "show", url=url)
    assert shown.output.strip() == t("org.tree_empty", "en")


def test_org_import_of_a_missing_file_is_a_usage_error(isolated: Path) -> None:
    result = cadence("org", "import", str(isolated / "nope.yaml"), url=sqlite_url(isolated))
    assert result.exit_code == 2
    assert "nope.yaml" in result.output
    assert "does not exist" in result.output


def test_org_show_on_an_empty_database_says_how_to_import(isolated: Path) -> None:
    result = cadence("org", "show", url=sqlite_url(isolated), locale="zh-CN")
    assert result.exit_code == 0, result.output
    assert result.output.strip() == t("org.tree_empty", "zh-CN")


def test_the_scripted_demo_passes(isolated: Path) -> None:
    # the demo uses a throw-away database of its own whatever DATABASE_URL says
    result = cadence("demo", "--scripted", url=sqlite_url(isolated))
    assert result.exit_code == 0, result.output
    ok, failed = (t(f"cli.scripted_{k}", "zh-CN").split("：")[0] for k in ("ok", "failed"))
    assert ok in result.output
    assert failed not in result.output
    assert not (isolated / "cli.db").exists()


def test_run_without_as_and_without_a_platform_explains_itself(isolated: Path) -> None:
    result = cadence("run", url=sqlite_url(isolated))
    assert result.exit_code == 1
    assert t("cli.run_needs_as", "en") in result.output


def test_run_with_an_enabled_platform_says_it_is_not_available_yet(isolated: Path) -> None:
    result = cadence(
        "run",
        "--as",
        "li.lei@example.com",
        url=sqlite_url(isolated),
        FEISHU_ENABLED="true",
        FEISHU_APP_ID="cli_a4f3b2c1d0e9f8a7",
        FEISHU_APP_SECRET="Vb7Kp2Qx9Lm4Tz8Rw3Ny6Hs1Jd5Fg0Ca",
    )
    assert result.exit_code == 1
    assert t("cli.platform_not_ready", "en", platforms="feishu") in result.output


def test_run_as_a_person_chats_in_the_console(isolated: Path) -> None:
    url = sqlite_url(isolated)
    assert cadence("org", "import", str(SAMPLE_ORG), url=url).exit_code == 0

    result = cadence("run", "--as", "emma.smith@example.com", url=url, input="help\n:quit\n")

    assert result.exit_code == 0, result.output
    assert "You are Emma Smith <emma.smith@example.com>" in result.output
    assert t("cmd.help_title", "en") in result.output


def test_run_as_someone_not_in_the_org_fails(isolated: Path) -> None:
    url = sqlite_url(isolated)
    assert cadence("org", "import", str(SAMPLE_ORG), url=url).exit_code == 0

    result = cadence("run", "--as", "nobody@example.com", url=url, input=":quit\n")

    assert t("cli.not_in_org", "en", email="nobody@example.com") in result.output
    assert result.exit_code != 0, "the session asked for did not run, so the command must not report success"


def test_run_with_a_broken_rituals_dir_names_file_and_line(isolated: Path) -> None:
    rituals = isolated / "rituals"
    rituals.mkdir()
    (rituals / "weekly.yaml").write_text(
        "key: weekly_recap\nversion: 2\nperiod: fortnight\ntitle: {zh-CN: 周报, en: Weekly}\n"
        "steps:\n  - id: wins\n    type: text\n    prompt: {zh-CN: 完成了什么, en: Done}\n",
        encoding="utf-8",
    )
    result = cadence(
        "run",
        "--as",
        "li.lei@example.com",
        url=sqlite_url(isolated),
        RITUALS_DIR=str(rituals),
        input=":quit\n",
    )
    assert result.exit_code == 1
    assert f"{rituals / 'weekly.yaml'}:3: period" in result.output


def test_an_unsupported_database_url_is_a_clear_error(isolated: Path) -> None:
    result = cadence("db", "upgrade", url="mysql://cadence@127.0.0.1/cadence")
    assert result.exit_code == 1
    assert "invalid settings" in result.output
    assert "DATABASE_URL must start with sqlite:/// or postgresql://" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    "url", [pytest.param("", id="empty"), pytest.param("cadence.db", id="bare-file-name")]
)
def test_an_unparseable_database_url_is_a_clear_error(isolated: Path, url: str) -> None:
    result = cadence("db", "upgrade", url=url)
    assert result.exit_code == 1
    assert "DATABASE_URL" in result.output, f"no clear message; the command died with {result.exception!r}"
