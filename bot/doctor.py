"""``cadence doctor``: check each configured edge (database, Slack, Feishu) and say what to fix."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from aiohttp import ClientError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.platforms.feishu_api import FeishuApi, FeishuApiError
from bot.platforms.feishu_webhook import PATH as FEISHU_WEBHOOK_PATH
from bot.platforms.slack import slack_error
from bot.settings import Settings, is_placeholder
from conversations.i18n import t
from storage.engine import Database
from storage.migrate import current_revision

MANIFEST = Path(__file__).resolve().parent / "platforms" / "slack_manifest.yaml"

# Feishu's long-connection bootstrap (lark-oapi ``ws/client.py::_get_conn_url``, ``ws/const.py``): 1 and
# 1000040343 are Feishu being busy (the SDK retries them); 1000040350: the app has its 50 connections
FEISHU_WS_ENDPOINT = "/callback/ws/endpoint"
FEISHU_WS_BUSY = frozenset({1, 1000040343})
FEISHU_WS_TOO_MANY = 1000040350
# "Access denied. One of the following scopes is required: [a, b]" (the app's own, or a user's)
FEISHU_PERMISSION_DENIED = frozenset({99991672, 99991679})
# contact v3 "no dept authority error": the department is outside the app's contact range
FEISHU_NO_DEPT_AUTHORITY = 40004
_SCOPE_LIST = re.compile(r"\[([^\]]*)\]")
_FEISHU_MSG = re.compile(r"^Feishu error -?\d+: (.*) \(HTTP \d+, [A-Z]+ \S+\)$", re.DOTALL)


@dataclass(frozen=True)
class Finding:
    """One check: what was checked, whether it is fine, and what to do if not.

    ``warning``: it works, but something is worth changing (shown with ⚠; not a failure).
    """

    subject: str
    ok: bool
    detail: str
    warning: bool = False


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


@dataclass(frozen=True)
class _Probe:
    """A cheap read-only call that fails with a permission code when the app lacks ``scope``."""

    method: str
    path: str
    params: dict[str, Any]
    body: dict[str, Any] | None
    scope: str  # what to grant when Feishu's answer names none


# what Cadence itself calls: batch_get_id (an email to an open_id, before a message goes out), the
# contact API (a sender's email; the org sync); both refuse with 99991672 without the scope
_FEISHU_PROBES = (
    _Probe(
        "POST",
        "/open-apis/contact/v3/users/batch_get_id",
        {"user_id_type": "open_id"},
        {"emails": ["cadence-doctor@example.com"], "include_resigned": False},
        "contact:user.id:readonly",
    ),
    _Probe(
        "GET",
        "/open-apis/contact/v3/departments/0/children",
        {"department_id_type": "open_department_id", "page_size": 1},
        None,
        "contact:contact.base:readonly",
    ),
)


def feishu_error(exc: FeishuApiError) -> str:
    """Feishu's code and message (``10014 app secret invalid``), or what went wrong on the way."""
    if exc.code != -1:
        match = _FEISHU_MSG.match(str(exc))
        return f"{exc.code} {match.group(1).strip()}".strip() if match else str(exc.code)
    cause = exc.__cause__
    if cause is not None:
        return f"{type(cause).__name__}: {cause}" if str(cause) else type(cause).__name__
    return str(exc)


def scope_named(message: str, default: str) -> str:
    """The first scope Feishu's permission error names (its least-privileged one), else ``default``."""
    match = _SCOPE_LIST.search(message)
    named = [s.strip() for s in match.group(1).split(",") if s.strip()] if match else []
    return named[0] if named else default


async def check_feishu(settings: Settings, locale: str) -> list[Finding]:
    """The app's credentials work at FEISHU_DOMAIN, its connection can be had, and it has the permissions."""
    feishu = settings.feishu
    url = feishu.base_url
    api = FeishuApi(url, app_id=feishu.app_id, app_secret=feishu.app_secret)
    try:
        try:
            await api.token()
        except FeishuApiError as exc:
            # one finding: with no token nothing else can be checked
            return [_feishu_token_refused(exc, url, locale)]
        findings = [
            Finding("FEISHU_APP_SECRET", True, t("doctor.feishu_ok", locale, app_id=feishu.app_id, url=url))
        ]
        if feishu.connection == "webhook":
            findings.extend(_feishu_webhook(settings, locale))
        else:
            findings.append(await _feishu_long_connection(settings, locale))
        findings.append(await _feishu_permissions(api, locale))
        return findings
    finally:
        await api.close()


def _feishu_token_refused(exc: FeishuApiError, url: str, locale: str) -> Finding:
    error = feishu_error(exc)
    if not exc.reached or exc.status == 0:
        return Finding("FEISHU_DOMAIN", False, t("doctor.feishu_unreachable", locale, url=url, error=error))
    if exc.code == -1 or exc.status >= 500 or exc.rate_limited:
        # not a verdict on the credentials: something other than Feishu answered, or Feishu is busy
        return Finding("FEISHU_DOMAIN", False, t("doctor.feishu_not_api", locale, url=url, error=error))
    # 10014 (app id not exists / app secret invalid), 10003 (invalid param: a malformed app id), …
    return Finding("FEISHU_APP_SECRET", False, t("doctor.feishu_credentials_bad", locale, error=error))


async def _feishu_long_connection(settings: Settings, locale: str) -> Finding:
    """What lark-oapi's ``ws.Client`` asks first: a connection URL for the app id and secret."""
    feishu = settings.feishu
    url = feishu.base_url + FEISHU_WS_ENDPOINT
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, connect=5.0), trust_env=False) as client:
            response = await client.post(
                url,
                json={"AppID": feishu.app_id, "AppSecret": feishu.app_secret},
                headers={"locale": "zh"},
            )
        answer = response.json() if response.status_code == 200 else None
    except (httpx.HTTPError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        return Finding("FEISHU_CONNECTION", False, t("doctor.feishu_ws_failed", locale, url=url, error=error))
    code = answer.get("code") if isinstance(answer, dict) else None
    if not isinstance(answer, dict) or not isinstance(code, int):
        error = f"HTTP {response.status_code}"
        return Finding("FEISHU_CONNECTION", False, t("doctor.feishu_ws_failed", locale, url=url, error=error))
    data = answer.get("data")
    if code == 0 and isinstance(data, dict) and data.get("URL"):
        return Finding("FEISHU_CONNECTION", True, t("doctor.feishu_ws_ok", locale))
    error = f"{code} {answer.get('msg') or ''}".strip()
    if code == FEISHU_WS_TOO_MANY:
        return Finding("FEISHU_CONNECTION", False, t("doctor.feishu_ws_too_many", locale, error=error))
    if code in FEISHU_WS_BUSY:
        return Finding("FEISHU_CONNECTION", False, t("doctor.feishu_ws_busy", locale, error=error))
    return Finding("FEISHU_CONNECTION", False, t("doctor.feishu_ws_refused", locale, error=error))


def _feishu_webhook(settings: Settings, locale: str) -> list[Finding]:
    """Webhook mode: the token (required) and encrypt key (recommended) set; where Feishu must post."""
    feishu = settings.feishu
    findings = []
    if is_placeholder(feishu.verification_token):
        findings.append(Finding("FEISHU_VERIFICATION_TOKEN", False, t("doctor.feishu_token_missing", locale)))
    address = {"host": settings.http_host, "port": settings.http_port, "path": FEISHU_WEBHOOK_PATH}
    findings.append(Finding("FEISHU_CONNECTION", True, t("doctor.feishu_webhook_ok", locale, **address)))
    if is_placeholder(feishu.encrypt_key):
        findings.append(
            Finding("FEISHU_ENCRYPT_KEY", True, t("doctor.feishu_unsigned", locale), warning=True)
        )
    return findings


async def _feishu_permissions(api: FeishuApi, locale: str) -> Finding:
    """Each probe answers, or the scopes to grant; a contact range short of the whole org is a warning."""
    missing: list[str] = []
    outside_range = False
    for probe in _FEISHU_PROBES:
        try:
            await api.call(probe.method, probe.path, params=probe.params, json_body=probe.body)
        except FeishuApiError as exc:
            if exc.code in FEISHU_PERMISSION_DENIED:
                missing.append(scope_named(str(exc), probe.scope))
            elif exc.code == FEISHU_NO_DEPT_AUTHORITY:
                outside_range = True
            else:
                error = feishu_error(exc)
                return Finding("FEISHU_APP_ID", False, t("doctor.feishu_check_failed", locale, error=error))
    if missing:
        scopes = ", ".join(dict.fromkeys(missing))
        return Finding("FEISHU_APP_ID", False, t("doctor.feishu_scopes", locale, scopes=scopes))
    if outside_range:
        return Finding("FEISHU_APP_ID", True, t("doctor.feishu_contact_range", locale), warning=True)
    return Finding("FEISHU_APP_ID", True, t("doctor.feishu_permissions_ok", locale))


async def run_checks(settings: Settings) -> list[Finding]:
    """Every check that applies to these settings."""
    locale = settings.default_locale
    findings = [await check_database(settings, locale), check_schedules(settings, locale)]
    if settings.slack.enabled:
        findings.extend(await check_slack(settings, locale))
    if settings.feishu.enabled:
        findings.extend(await check_feishu(settings, locale))
    if not settings.enabled_platforms():
        findings.append(Finding("*_ENABLED", True, t("doctor.no_platform", locale)))
    return findings


def report(findings: list[Finding]) -> str:
    """The findings as lines a person can act on."""
    return "\n".join(f"{_mark(f)} {f.subject}: {f.detail}" for f in findings)


def _mark(finding: Finding) -> str:
    if not finding.ok:
        return "✗"
    return "⚠" if finding.warning else "✓"
