"""``cadence doctor``: check each configured edge (database, Slack) and say what to fix."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platforms.slack import slack_error
from bot.settings import Settings
from conversations.i18n import t
from storage.engine import Database
from storage.migrate import current_revision

MANIFEST = Path(__file__).resolve().parent / "platforms" / "slack_manifest.yaml"


@dataclass(frozen=True)
class Finding:
    """One check: what was checked, whether it is fine, and what to do if not."""

    subject: str
    ok: bool
    detail: str


def required_slack_scopes() -> set[str]:
    """The bot scopes the shipped manifest asks for (what the adapter uses)."""
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    return set(manifest["oauth_config"]["scopes"]["bot"])


async def check_database(settings: Settings, locale: str) -> Finding:
    """The database answers and its schema is current."""
    database = Database(settings.database_url, pool_size=1)
    try:
        revision = await current_revision(database.engine)
    except Exception as exc:  # any driver error means "not reachable as configured"
        return Finding(
            "DATABASE_URL", False, t("doctor.db_unreachable", locale, error=f"{type(exc).__name__}: {exc}")
        )
    finally:
        await database.dispose()
    if revision is None:
        return Finding("DATABASE_URL", False, t("doctor.db_empty", locale))
    return Finding("DATABASE_URL", True, t("doctor.db_ok", locale, revision=revision))


async def check_slack(settings: Settings, locale: str) -> list[Finding]:
    """The bot token works and has every scope; the app-level token may open Socket Mode."""
    client = AsyncWebClient(token=settings.slack.bot_token, base_url=settings.slack.api_url, timeout=10)
    findings = []
    try:
        auth = await client.auth_test()
    except SlackApiError as exc:
        if (
            not isinstance(exc.response.data, dict)
            or exc.response.status_code == 429
            or exc.response.status_code >= 500
        ):
            # not a verdict on the token: something other than Slack's API answered, or Slack is busy
            error = slack_error(exc)
            return [
                Finding(
                    "SLACK_API_URL",
                    False,
                    t("doctor.slack_not_api", locale, url=settings.slack.api_url, error=error),
                )
            ]
        return [
            Finding("SLACK_BOT_TOKEN", False, t("doctor.slack_token_bad", locale, error=slack_error(exc)))
        ]
    except (ClientError, TimeoutError) as exc:
        return [
            Finding(
                "SLACK_API_URL",
                False,
                t("doctor.slack_unreachable", locale, url=settings.slack.api_url, error=exc),
            )
        ]
    granted = {s.strip() for s in (auth.headers.get("x-oauth-scopes") or "").split(",") if s.strip()}
    missing = sorted(required_slack_scopes() - granted)
    team = auth.get("team") or auth.get("team_id")
    if missing:
        findings.append(
            Finding("SLACK_BOT_TOKEN", False, t("doctor.slack_scopes", locale, scopes=", ".join(missing)))
        )
    else:
        findings.append(Finding("SLACK_BOT_TOKEN", True, t("doctor.slack_ok", locale, team=team)))
    if settings.slack.http_mode:
        return findings
    try:
        await AsyncWebClient(base_url=settings.slack.api_url, timeout=10).apps_connections_open(
            app_token=settings.slack.app_token
        )
        findings.append(Finding("SLACK_APP_TOKEN", True, t("doctor.slack_socket_ok", locale)))
    except SlackApiError as exc:
        error = slack_error(exc)
        findings.append(
            Finding("SLACK_APP_TOKEN", False, t("doctor.slack_app_token_bad", locale, error=error))
        )
    return findings


def check_schedules(settings: Settings, locale: str) -> Finding:
    """The rituals and the schedules file in force load, or the file and line to fix."""
    from conversations.ritual_loader import RitualFileError, load_catalog
    from scheduler.schedules import BUILTIN_FILE, ScheduleFileError, load_schedules

    path = settings.scheduler.file or BUILTIN_FILE
    try:
        book = load_schedules(path, catalog=load_catalog(settings.rituals_dir))
    except (RitualFileError, ScheduleFileError) as exc:
        return Finding("SCHEDULER_FILE", False, t("doctor.schedules_bad", locale, error=str(exc)))
    running = len(book.enabled()) if settings.scheduler.enabled else 0
    return Finding("SCHEDULER_FILE", True, t("doctor.schedules_ok", locale, count=running, path=path))


async def run_checks(settings: Settings) -> list[Finding]:
    """Every check that applies to these settings."""
    locale = settings.default_locale
    findings = [await check_database(settings, locale), check_schedules(settings, locale)]
    if settings.slack.enabled:
        findings.extend(await check_slack(settings, locale))
    if not settings.enabled_platforms():
        findings.append(Finding("*_ENABLED", True, t("doctor.no_platform", locale)))
    return findings


def report(findings: list[Finding]) -> str:
    """The findings as lines a person can act on."""
    return "\n".join(f"{'✓' if f.ok else '✗'} {f.subject}: {f.detail}" for f in findings)
