"""``cadence doctor``: check each configured edge (database, Slack, Feishu, DingTalk) and say what to fix."""

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

from bot.platforms.dingtalk import DingtalkPlatform
from bot.platforms.dingtalk_api import DingtalkApi, DingtalkApiError
from bot.platforms.dingtalk_directory import (
    DEPARTMENT_SCOPES,
    DEPARTMENTS_PATH,
    EMAIL_SCOPES,
    PAGE_SIZE,
    PERMISSION_DENIED,
    ROOT_DEPARTMENT,
    USER_SCOPES,
    USERS_PATH,
)
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
# DingTalk's oapi refuses a call the app has no permission for with 60011 ("没有调用该接口的权限"), or
# with 88 and the reason in a sub-code (``ding talk error[subcode=60011,submsg=…]``); 88 also wraps
# other reasons (subcode 40014: a bad token), so 88 counts only with subcode 60011 or none
DINGTALK_PERMISSION_DENIED = frozenset(str(code) for code in PERMISSION_DENIED)
DINGTALK_NO_PERMISSION = "60011"
DINGTALK_WRAPPED = "88"
DINGTALK_NO_SUCH_USER = "60121"  # topapi/v2/user/get: the app may read users, this one does not exist
USER_GET_PATH = "/topapi/v2/user/get"  # what the platform asks for a sender's email
PROBE_USERID = "cadence-doctor-probe"  # looked up when the directory lists nobody
MEMBER_SCOPES = ("qyapi_get_member",)  # 成员信息读权限: topapi/v2/user/get
_DINGTALK_SUBCODE = re.compile(r"subcode=(-?\d+)")
_DINGTALK_SCOPES = re.compile(r"\bqyapi_[A-Za-z0-9_]+")
_DINGTALK_MSG = re.compile(r"^DingTalk error (\S+): (.*) \(HTTP \d+, [A-Z]+ \S+\)$", re.DOTALL)
_DINGTALK_STREAM_REFUSED = "DingTalk refused the stream: "


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


def dingtalk_error(exc: DingtalkApiError) -> str:
    """DingTalk's code and message (``invalidClientSecret 无效的clientSecret``), or what went wrong."""
    match = _DINGTALK_MSG.match(str(exc))
    if match:
        return f"{match.group(1)} {match.group(2).strip()}".strip()
    if exc.__cause__ is not None:
        return _reason(exc.__cause__)
    return str(exc)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _dingtalk_on_the_way(exc: DingtalkApiError) -> bool:
    """Nothing (or nothing whole) came back: a refused connection, a timeout, a connection broken off."""
    return not exc.reached or isinstance(exc.__cause__, httpx.HTTPError)


async def check_dingtalk(settings: Settings, locale: str) -> list[Finding]:
    """The app's client id and secret get a token, Stream mode may connect, the directory may be read;
    without a card template, a warning that prompts go out as markdown."""
    dingtalk = settings.dingtalk
    # the platform's own API client and Stream ticket request: what `cadence run` does first
    platform = DingtalkPlatform(dingtalk)
    try:
        try:
            await platform.api.token()
        except DingtalkApiError as exc:
            # with no token nothing else can be checked
            findings = [_dingtalk_token_refused(exc, dingtalk.api_url, locale)]
        else:
            values = {"client_id": dingtalk.client_id, "url": dingtalk.api_url, "robot": dingtalk.robot}
            findings = [
                Finding("DINGTALK_CLIENT_SECRET", True, t("doctor.dingtalk_ok", locale, **values)),
                await _dingtalk_stream(platform, locale),
                await _dingtalk_permissions(platform.api, locale),
            ]
    finally:
        await platform.stop()
    template = dingtalk.card_template_id.strip()
    if template:
        findings.append(
            Finding("DINGTALK_CARD_TEMPLATE_ID", True, t("doctor.dingtalk_cards", locale, template=template))
        )
    else:
        findings.append(
            Finding("DINGTALK_CARD_TEMPLATE_ID", True, t("doctor.dingtalk_no_cards", locale), warning=True)
        )
    return findings


def _dingtalk_token_refused(exc: DingtalkApiError, url: str, locale: str) -> Finding:
    error = dingtalk_error(exc)
    if _dingtalk_on_the_way(exc):
        text = t("doctor.dingtalk_unreachable", locale, url=url, setting="DINGTALK_API_URL", error=error)
        return Finding("DINGTALK_API_URL", False, text)
    if not exc.code or exc.status >= 500 or exc.rate_limited:
        # not a verdict on the credentials: something other than DingTalk answered, or DingTalk is busy
        text = t("doctor.dingtalk_not_api", locale, url=url, setting="DINGTALK_API_URL", error=error)
        return Finding("DINGTALK_API_URL", False, text)
    # the new API names the wrong one (invalidClientId / invalidClientSecret); the text names both settings
    lowered = exc.code.lower()
    subject = (
        "DINGTALK_CLIENT_ID" if "clientid" in lowered or "appkey" in lowered else "DINGTALK_CLIENT_SECRET"
    )
    return Finding(subject, False, t("doctor.dingtalk_credentials_bad", locale, error=error))


async def _dingtalk_stream(platform: DingtalkPlatform, locale: str) -> Finding:
    """What the platform asks first when it connects: a Stream ticket for the client id and secret."""
    url = platform.settings.api_url
    try:
        # the platform's own request (it is not connected: this only asks for a ticket, used by no one)
        await platform._open()
    except DingtalkApiError as exc:
        # "HTTP 401 {'code': 'authFailed', 'message': '鉴权失败', …}"
        error = str(exc).removeprefix(_DINGTALK_STREAM_REFUSED)
        return Finding(
            "DINGTALK_API_URL", False, t("doctor.dingtalk_stream_failed", locale, url=url, error=error)
        )
    # an answer that is not JSON (ValueError), or JSON that is not an object (AttributeError)
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        error = _reason(exc)
        return Finding(
            "DINGTALK_API_URL", False, t("doctor.dingtalk_stream_failed", locale, url=url, error=error)
        )
    return Finding("DINGTALK_API_URL", True, t("doctor.dingtalk_stream_ok", locale))


def _dingtalk_denied(exc: DingtalkApiError) -> bool:
    """DingTalk said the app lacks the permission for this call."""
    if exc.code == DINGTALK_WRAPPED:
        sub = _DINGTALK_SUBCODE.search(str(exc))
        return sub is None or sub.group(1) == DINGTALK_NO_PERMISSION
    return exc.code in DINGTALK_PERMISSION_DENIED


def _dingtalk_scopes(exc: DingtalkApiError, default: tuple[str, ...]) -> list[str]:
    """The permissions DingTalk's refusal names (``应用尚未开通所需的权限：[qyapi_…]``), else ``default``."""
    named = _DINGTALK_SCOPES.findall(str(exc))
    return named or list(default)


async def _dingtalk_permissions(api: DingtalkApi, locale: str) -> Finding:
    """The directory calls Cadence makes answer, or the permissions to grant; no emails is a warning.

    The org sync lists departments and their users; the platform reads a sender's email with
    topapi/v2/user/get (a made-up userid when nobody is listed: "no such user" means it may read users).
    """
    missing: list[str] = []
    listed: list[dict[str, Any]] = []
    probes: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...] = (
        (DEPARTMENTS_PATH, {"dept_id": ROOT_DEPARTMENT}, DEPARTMENT_SCOPES),
        (USERS_PATH, {"dept_id": ROOT_DEPARTMENT, "cursor": 0, "size": PAGE_SIZE}, USER_SCOPES),
        (USER_GET_PATH, {}, MEMBER_SCOPES),
    )
    for path, body, needs in probes:
        if path == USER_GET_PATH:
            userids = [str(user["userid"]) for user in listed if user.get("userid")]
            body = {"userid": userids[0] if userids else PROBE_USERID}
        try:
            result = await api.oapi(path, json_body=body)
        except DingtalkApiError as exc:
            if _dingtalk_denied(exc):
                missing.extend(_dingtalk_scopes(exc, needs))
                continue
            if path == USER_GET_PATH and exc.code == DINGTALK_NO_SUCH_USER:
                continue
            return _dingtalk_oapi_failed(exc, api.oapi_url, locale)
        if path == USERS_PATH:
            listed = [user for user in result.get("list") or [] if isinstance(user, dict)]
    if missing:
        scopes = ", ".join(dict.fromkeys(missing))
        return Finding("DINGTALK_CLIENT_ID", False, t("doctor.dingtalk_scopes", locale, scopes=scopes))
    if listed and not any(user.get("email") or user.get("org_email") for user in listed):
        # DingTalk leaves the fields out when the app may not read them; one person without an email
        # says nothing, nobody among the listed says the permission is missing
        text = t("doctor.dingtalk_no_emails", locale, count=len(listed), scopes=", ".join(EMAIL_SCOPES))
        return Finding("DINGTALK_CLIENT_ID", True, text, warning=True)
    return Finding("DINGTALK_CLIENT_ID", True, t("doctor.dingtalk_permissions_ok", locale))


def _dingtalk_oapi_failed(exc: DingtalkApiError, url: str, locale: str) -> Finding:
    error = dingtalk_error(exc)
    if _dingtalk_on_the_way(exc):
        text = t("doctor.dingtalk_unreachable", locale, url=url, setting="DINGTALK_OAPI_URL", error=error)
        return Finding("DINGTALK_OAPI_URL", False, text)
    if not exc.code:
        text = t("doctor.dingtalk_not_api", locale, url=url, setting="DINGTALK_OAPI_URL", error=error)
        return Finding("DINGTALK_OAPI_URL", False, text)
    return Finding("DINGTALK_CLIENT_ID", False, t("doctor.dingtalk_check_failed", locale, error=error))


async def run_checks(settings: Settings) -> list[Finding]:
    """Every check that applies to these settings."""
    locale = settings.default_locale
    findings = [await check_database(settings, locale), check_schedules(settings, locale)]
    if settings.slack.enabled:
        findings.extend(await check_slack(settings, locale))
    if settings.feishu.enabled:
        findings.extend(await check_feishu(settings, locale))
    if settings.dingtalk.enabled:
        findings.extend(await check_dingtalk(settings, locale))
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
