"""The task sources the settings switch on: connectors, their sync schedule, Feishu's per-person grants."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from bot.settings import Settings
from bot.task_links import FeishuTaskLinks
from connectors.base import Connector
from storage.engine import Database

# Feishu's tasklist listing allows 50 calls a second per app (task-sources reference §3.3)
FEISHU_TASKS_PER_S = 50.0


def intervals(settings: Settings) -> dict[str, timedelta]:
    """How often each source is synced on the scheduler."""
    return {
        "jira": timedelta(minutes=settings.jira.interval_minutes),
        "feishu_task": timedelta(minutes=settings.feishu.tasks_interval_minutes),
        "dingtalk_todo": timedelta(minutes=settings.dingtalk.todos_interval_minutes),
    }


def feishu_accounts_url(base_url: str) -> str:
    """Where people authorise (and codes are traded): Feishu's or Lark's accounts domain for their open
    platform; for any other FEISHU_DOMAIN (a proxy, a regional domain, a test fake) that same URL, which
    must then answer the accounts paths too (there is no setting of its own for it yet)."""
    from connectors.feishu_oauth import ACCOUNTS

    return ACCOUNTS.get(base_url.rstrip("/"), base_url.rstrip("/"))


@dataclass
class TaskSourceSet:
    """What the switched-on sources need at run time; ``close()`` releases their HTTP pools."""

    connectors: dict[str, Connector] = field(default_factory=dict)
    feishu_links: FeishuTaskLinks | None = None

    async def close(self) -> None:
        for connector in self.connectors.values():
            await connector.close()
        if self.feishu_links is not None:
            await self.feishu_links.store.oauth.close()


def build_task_sources(
    settings: Settings, database: Database, *, only: list[str] | None = None
) -> TaskSourceSet:
    """A connector per switched-on source (``only``: just these)."""
    wanted = [s for s in settings.enabled_task_sources() if only is None or s in only]
    built = TaskSourceSet()
    if "jira" in wanted:
        from connectors.jira import JiraConnector

        jira = settings.jira
        built.connectors["jira"] = JiraConnector(
            base_url=jira.base_url,
            deployment=jira.deployment,
            email=jira.email or None,
            api_token=jira.api_token or None,
            bearer_token=jira.bearer_token or None,
            jql=jira.jql,
            site_url=jira.site_url.strip() or None,
            per_s=jira.rate_per_s,
        )
    if "feishu_task" in wanted:
        from connectors.feishu_oauth import FeishuOAuth, GrantStore
        from connectors.feishu_tasks import FeishuTasksConnector

        feishu = settings.feishu
        oauth = FeishuOAuth(
            app_id=feishu.app_id,
            app_secret=feishu.app_secret,
            base_url=feishu.base_url,
            accounts_url=feishu_accounts_url(feishu.base_url),
        )
        store = GrantStore(database, oauth, tenant=feishu.app_id)
        built.feishu_links = FeishuTaskLinks(store, public_base_url=settings.public_base_url)
        built.connectors["feishu_task"] = FeishuTasksConnector(
            app_id=feishu.app_id,
            app_secret=feishu.app_secret,
            base_url=feishu.base_url,
            tenant=feishu.app_id,
            user_grants=store.fresh_grants,
            per_s=feishu.tasks_rate_per_s or FEISHU_TASKS_PER_S,
        )
    if "dingtalk_todo" in wanted:
        from connectors.dingtalk_todos import DEFAULT_PER_S, DingtalkTodosConnector

        dingtalk = settings.dingtalk
        built.connectors["dingtalk_todo"] = DingtalkTodosConnector(
            client_id=dingtalk.client_id,
            client_secret=dingtalk.client_secret,
            api_url=dingtalk.api_url,
            oapi_url=dingtalk.oapi_url,
            per_s=dingtalk.todos_rate_per_s or DEFAULT_PER_S,
        )
    return built
