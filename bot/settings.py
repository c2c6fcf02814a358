"""Typed settings from the environment and ``.env``, nested per platform and connector.

``SLACK_BOT_TOKEN`` lands in ``settings.slack.bot_token``: one ``_`` after the section name splits it.
Read once through ``get_settings()``; nothing is read at import.
"""

from __future__ import annotations

import re
from datetime import time
from functools import lru_cache
from pathlib import Path
from typing import ClassVar, Literal, Self

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.engine import DatabaseUrlError, async_url

# Values copied from an example file or a tutorial instead of a real secret.
_PLACEHOLDER = re.compile(
    r"^(|changeme|change-me|secret|password|todo|xxx+|\.\.\.|<.*>|your[-_ ].*|.*[-_]here|"
    r"xoxb-your.*|xapp-your.*|xoxb-x+.*|xapp-x+.*|replace[-_ ]?me.*)$",
    re.IGNORECASE,
)


def is_placeholder(value: str | None) -> bool:
    """True for an empty value or one that looks copied from an example."""
    return value is None or bool(_PLACEHOLDER.match(value.strip()))


# FEISHU_DOMAIN's two names: Feishu in mainland China, Lark elsewhere
FEISHU_DOMAINS = {"feishu": "https://open.feishu.cn", "lark": "https://open.larksuite.com"}


class _Section(BaseModel):
    """A platform or connector; its ``secrets`` must be real when it is enabled."""

    enabled: bool = False
    secret_fields: ClassVar[tuple[str, ...]] = ()

    @field_validator(
        "rate_per_s",
        "per_recipient_per_s",
        "tasks_rate_per_s",
        "todos_rate_per_s",
        mode="before",
        check_fields=False,
    )
    @classmethod
    def _blank_is_no_limit(cls, value: object) -> object:
        # `SLACK_RATE_PER_S=` in a .env file means "no cap", not an unreadable number
        return None if isinstance(value, str) and not value.strip() else value

    def missing_secrets(self) -> list[str]:
        """The secrets that are empty or look copied from an example."""
        return [name for name in self.secret_fields if is_placeholder(getattr(self, name))]

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Self:
        if self.enabled:
            bad = self.missing_secrets()
            if bad:
                section = type(self).__name__.removesuffix("Settings").upper()
                names = ", ".join(f"{section}_{n.upper()}" for n in bad)
                raise ValueError(f"{section} is enabled but {names} is missing or a placeholder")
        return self


class SlackSettings(_Section):
    """Slack: Socket Mode with bot + app tokens, or HTTP mode with a signing secret."""

    bot_token: str = ""
    app_token: str = ""
    signing_secret: str = ""
    api_url: str = "https://slack.com/api/"
    command: str = "/cadence"
    # Slack publishes no workspace-wide number for chat.postMessage (its 429s say when); it does say
    # "one message per second per channel"
    rate_per_s: float | None = None
    per_recipient_per_s: float | None = 1.0
    secret_fields = ("bot_token",)

    def missing_secrets(self) -> list[str]:
        """As for every platform, plus: Socket Mode needs the app token, HTTP mode the signing secret."""
        missing = super().missing_secrets()
        if is_placeholder(self.app_token) and is_placeholder(self.signing_secret):
            missing.append("app_token")
        return missing

    @property
    def http_mode(self) -> bool:
        """HTTP mode when a signing secret is set and no app-level token is."""
        return is_placeholder(self.app_token) and not is_placeholder(self.signing_secret)


class FeishuSettings(_Section):
    """Feishu / Lark: the long connection by default; ``FEISHU_CONNECTION=webhook`` serves HTTP instead."""

    app_id: str = ""
    app_secret: str = ""
    # "long": the SDK's WebSocket (no public URL needed); "webhook": Feishu POSTs to /feishu/events
    connection: Literal["long", "webhook"] = "long"
    verification_token: str = ""
    encrypt_key: str = ""
    # "feishu" (open.feishu.cn), "lark" (open.larksuite.com) or a base URL (a proxy, a regional domain)
    domain: str = "feishu"
    # the reference's published limits: 50 requests/s per app, 5/s per user
    rate_per_s: float | None = 50.0
    per_recipient_per_s: float | None = 5.0
    secret_fields = ("app_id", "app_secret")
    # Feishu tasks as a task source (FEISHU_TASKS_ENABLED=true): the app's tasklists, and the tasks of
    # each person who authorised Cadence (``connect tasks`` in chat)
    tasks_enabled: bool = False
    tasks_interval_minutes: float = Field(default=30.0, ge=1.0)
    # Feishu's task detail call allows 10/s; the connector paces that call on its own
    tasks_rate_per_s: float | None = None

    def missing_secrets(self) -> list[str]:
        """As for every platform, plus: webhook mode needs the verification token to check requests."""
        missing = super().missing_secrets()
        if self.connection == "webhook" and is_placeholder(self.verification_token):
            missing.append("verification_token")
        return missing

    @model_validator(mode="after")
    def _tasks_need_the_app(self) -> Self:
        if self.tasks_enabled and not self.enabled:
            bad = [f"FEISHU_{n.upper()}" for n in self.secret_fields if is_placeholder(getattr(self, n))]
            if bad:
                raise ValueError(f"FEISHU_TASKS_ENABLED needs {', '.join(bad)}")
        return self

    @field_validator("domain")
    @classmethod
    def _known_domain(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in FEISHU_DOMAINS:
            return value.lower()
        if not re.fullmatch(r"https?://[^/\s?#]+/?", value):
            raise ValueError(
                "FEISHU_DOMAIN must be feishu, lark or a base URL such as https://open.feishu.cn "
                f"(got {value!r})"
            )
        return value.rstrip("/")

    @property
    def base_url(self) -> str:
        """The Open Platform base URL the domain setting names."""
        return FEISHU_DOMAINS.get(self.domain, self.domain)


class DingtalkSettings(_Section):
    """DingTalk: Stream mode with the app's client id (AppKey) and secret, and its robot code."""

    client_id: str = ""
    client_secret: str = ""
    robot_code: str = ""
    # the new-style OpenAPI (tokens, robot messages, cards, the stream's connection) …
    api_url: str = "https://api.dingtalk.com"
    # … and the older one, for the directory (departments and users)
    oapi_url: str = "https://oapi.dingtalk.com"
    # an interactive card template (卡片平台); empty sends markdown with numbered choices instead
    card_template_id: str = ""
    # DingTalk publishes no per-app number for robot messages; its error codes say when to slow down
    rate_per_s: float | None = None
    per_recipient_per_s: float | None = None
    secret_fields = ("client_id", "client_secret")
    # org sync's managers: "leaders" derives them from department 主管 (no extra calls); "direct" reads
    # each person's 直属主管 with one topapi/v2/user/get call per person (DINGTALK_ORG_MANAGERS)
    org_managers: Literal["leaders", "direct"] = "leaders"
    # DingTalk todos as a task source (DINGTALK_TODOS_ENABLED=true), read per person by unionId
    todos_enabled: bool = False
    todos_interval_minutes: float = Field(default=30.0, ge=1.0)
    todos_rate_per_s: float | None = None

    @model_validator(mode="after")
    def _todos_need_the_app(self) -> Self:
        if self.todos_enabled and not self.enabled:
            bad = [f"DINGTALK_{n.upper()}" for n in self.secret_fields if is_placeholder(getattr(self, n))]
            if bad:
                raise ValueError(f"DINGTALK_TODOS_ENABLED needs {', '.join(bad)}")
        return self

    @property
    def robot(self) -> str:
        """The robot code messages are sent as: an internal app's robot code is its AppKey unless set."""
        return self.robot_code.strip() or self.client_id

    @field_validator("api_url", "oapi_url")
    @classmethod
    def _base_url(cls, value: str) -> str:
        value = value.strip()
        if not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"a DingTalk base URL must look like https://api.dingtalk.com (got {value!r})")
        return value.rstrip("/")


class JiraSettings(_Section):
    """Jira Cloud (email + API token, or an OAuth bearer token) or Data Center (a personal access token)."""

    base_url: str = ""
    deployment: Literal["cloud", "datacenter"] = "cloud"
    email: str = ""
    api_token: str = ""
    # an OAuth 2.0 access token on Cloud (then base_url is https://api.atlassian.com/ex/jira/<cloudid>),
    # a personal access token on Data Center
    bearer_token: str = ""
    # where people open issues when base_url is OAuth's API gateway (https://acme.atlassian.net);
    # empty: base_url
    site_url: str = ""
    # which issues to read, e.g. ``project in (PAY, CORE)``; empty reads every issue the account sees
    jql: str = ""
    interval_minutes: float = Field(default=30.0, ge=1.0)
    # Jira Cloud's API-token traffic has burst limits only; its 429s say when to wait
    rate_per_s: float | None = None
    secret_fields = ("base_url",)

    def missing_secrets(self) -> list[str]:
        """The site, plus either an email and API token or a bearer token."""
        missing = super().missing_secrets()
        if is_placeholder(self.bearer_token):
            if self.deployment == "datacenter":
                missing.append("bearer_token")
            else:
                missing += [n for n in ("email", "api_token") if is_placeholder(getattr(self, n))]
        return missing

    @field_validator("base_url")
    @classmethod
    def _site(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"JIRA_BASE_URL must look like https://acme.atlassian.net (got {value!r})")
        return value.rstrip("/")


class LlmSettings(BaseModel):
    """An optional OpenAI-compatible endpoint that rewords 1:1 agenda topics (``LLM_*``); off when
    LLM_BASE_URL is empty."""

    base_url: str = ""
    model: str = "gpt-4o-mini"
    api_key: str = ""
    timeout_seconds: float = Field(default=10.0, gt=0, le=60)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        value = value.strip()
        if value and not re.fullmatch(r"https?://[^/\s?#]+(/[^\s?#]*)?", value):
            raise ValueError(f"LLM_BASE_URL must look like https://api.openai.com/v1 (got {value!r})")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _real_key(self) -> Self:
        if self.base_url and self.api_key and is_placeholder(self.api_key):
            raise ValueError("LLM_API_KEY looks copied from an example")
        return self


class QuietSettings(BaseModel):
    """Local hours in which nobody is messaged (``QUIET_START``/``QUIET_END``; ``QUIET_ENABLED=false``)."""

    enabled: bool = True
    start: time = time(20, 0)
    end: time = time(9, 0)


class SchedulerSettings(BaseModel):
    """The planner, reminders and leader election (``SCHEDULER_*``)."""

    enabled: bool = True
    # a schedules YAML file; empty uses the built-in scheduler/schedules.yaml
    file: Path | None = None
    tick_seconds: float = Field(default=15.0, ge=1.0, le=300.0)
    # how often a follower tries to become leader: a dead leader is replaced within about this long
    leader_check_seconds: float = Field(default=5.0, ge=0.5, le=25.0)
    # nudges for cycles started by HR (scheduled ones take their schedule's)
    reminder_after_hours: float = Field(default=24.0, gt=0)
    reminder_max: int = Field(default=2, ge=0, le=10)

    @field_validator("file", mode="before")
    @classmethod
    def _blank_is_builtin(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value


class Settings(BaseSettings):
    """Everything Cadence reads from its environment; see .env.example for each setting."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        extra="ignore",
    )

    database_url: str = "sqlite:///cadence.db"
    default_locale: Literal["zh-CN", "en"] = "zh-CN"
    default_timezone: str = "Asia/Shanghai"
    rituals_dir: Path | None = None
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    max_message_chars: int = Field(default=20_000, ge=1_000)
    snooze_minutes: int = Field(default=120, ge=5)
    # how many recipients the delivery worker sends to at once (each recipient's messages stay in order)
    delivery_concurrency: int = Field(default=4, ge=1, le=256)
    # how long a sender owns a claimed message: if its process dies, another sends (after checking the
    # platform does not have it already) once this has passed; longer than any one send may take
    delivery_lease_seconds: float = Field(default=60.0, ge=2.0, le=3600.0)
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8080, ge=0, le=65535)
    # where people's browsers reach `cadence run`'s HTTP port (for the Feishu task authorisation
    # link's callback), e.g. https://cadence.example.com; empty: http://HTTP_HOST:HTTP_PORT
    public_url: str = ""
    quiet: QuietSettings = QuietSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    slack: SlackSettings = SlackSettings()
    feishu: FeishuSettings = FeishuSettings()
    dingtalk: DingtalkSettings = DingtalkSettings()
    jira: JiraSettings = JiraSettings()
    # 1:1s: every manager–report pair meets every N days (per department: JSON {"Sales": 7}); the
    # agenda goes out lead hours before, at the manager's local meeting time
    one_on_one_enabled: bool = True
    one_on_one_every_days: int = Field(default=14, ge=1, le=90)
    one_on_one_every_days_by_department: dict[str, int] = Field(default_factory=dict)
    one_on_one_at: time = time(10, 0)
    one_on_one_lead_hours: float = Field(default=2.0, ge=0, le=72)
    agenda_stuck_days: int = Field(default=7, ge=1, le=90)
    # HR's monthly 1:1 quality sample: the share drawn, and the seed that makes the draw reproducible
    quality_sample_share: float = Field(default=0.10, gt=0, le=1)
    quality_sample_seed: int = Field(default=0, ge=0, lt=2**31)
    # the country whose workday calendar company-wide jobs (the monthly sample) follow
    company_country: str = "CN"
    llm: LlmSettings = LlmSettings()

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        try:
            async_url(value)
        except (DatabaseUrlError, ValueError) as exc:
            raise ValueError(str(exc)) from None
        return value

    def enabled_task_sources(self) -> list[str]:
        """Task sources switched on: ``jira``, ``feishu_task``, ``dingtalk_todo``."""
        switched = {
            "jira": self.jira.enabled,
            "feishu_task": self.feishu.tasks_enabled,
            "dingtalk_todo": self.dingtalk.todos_enabled,
        }
        return [name for name, on in switched.items() if on]

    @property
    def public_base_url(self) -> str:
        return (self.public_url.strip() or f"http://{self.http_host}:{self.http_port}").rstrip("/")

    def enabled_platforms(self) -> list[str]:
        """Chat platforms switched on, in a fixed order."""
        return [name for name in ("slack", "feishu", "dingtalk") if getattr(self, name).enabled]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The settings, read once per process."""
    return Settings()
