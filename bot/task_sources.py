"""The task sources the settings switch on, built as connectors (and their sync schedule)."""

from __future__ import annotations

from datetime import timedelta

from bot.settings import Settings
from connectors.base import Connector


def intervals(settings: Settings) -> dict[str, timedelta]:
    """How often each source is synced on the scheduler."""
    return {
        "jira": timedelta(minutes=settings.jira.interval_minutes),
        "feishu_task": timedelta(minutes=settings.feishu.tasks_interval_minutes),
        "dingtalk_todo": timedelta(minutes=settings.dingtalk.todos_interval_minutes),
    }


def build_connectors(
    settings: Settings, *, only: list[str] | None = None, user_grants: object = None
) -> dict[str, Connector]:
    """A connector per switched-on source (``only``: just these); each owns an HTTP pool: close it."""
    wanted = [s for s in settings.enabled_task_sources() if only is None or s in only]
    built: dict[str, Connector] = {}
    if "jira" in wanted:
        from connectors.jira import JiraConnector

        jira = settings.jira
        built["jira"] = JiraConnector(
            base_url=jira.base_url,
            deployment=jira.deployment,
            email=jira.email or None,
            api_token=jira.api_token or None,
            bearer_token=jira.bearer_token or None,
            jql=jira.jql,
            per_s=jira.rate_per_s,
        )
    if "feishu_task" in wanted:
        from connectors.feishu_tasks import FeishuTasksConnector

        feishu = settings.feishu
        built["feishu_task"] = FeishuTasksConnector(
            app_id=feishu.app_id,
            app_secret=feishu.app_secret,
            base_url=feishu.base_url,
            per_s=feishu.tasks_rate_per_s,
            user_grants=user_grants,  # type: ignore[arg-type]
        )
    if "dingtalk_todo" in wanted:
        from connectors.dingtalk_todos import DEFAULT_PER_S, DingtalkTodosConnector

        dingtalk = settings.dingtalk
        built["dingtalk_todo"] = DingtalkTodosConnector(
            client_id=dingtalk.client_id,
            client_secret=dingtalk.client_secret,
            api_url=dingtalk.api_url,
            oapi_url=dingtalk.oapi_url,
            per_s=dingtalk.todos_rate_per_s or DEFAULT_PER_S,
        )
    return built
