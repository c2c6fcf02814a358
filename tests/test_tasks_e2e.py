"""Task sources end to end, in a whole Cadence process wired from its settings: the scheduler syncs Jira
(and Feishu tasks) from fakes over real sockets, the weekly recap opens with what was read, ``me tasks``
shows it, and a person authorises Cadence to read their Feishu tasks through the callback page that
``cadence run``'s HTTP port serves."""

from __future__ import annotations

import asyncio
import html
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from aiohttp import web

from bot.health import start_health
from bot.settings import FeishuSettings, JiraSettings
from bot.task_links import CALLBACK_PATH, FeishuTaskLinks
from conversations.i18n import t
from conversations.task_evidence import EVIDENCE
from tests.fakes.feishu_tasks import FeishuTasksFake
from tests.fakes.jira import JiraFake
from tests.harness import CANNED, HR, LILEI, SUBMIT, WEEKLY, Chat

# Li Lei's and Emma's Jira account ids, and Li Lei's and Wang Fang's Feishu open_ids, from examples/org.yaml
LI_LEI_JIRA, EMMA_JIRA = "5f8a1b2c3d4e5f6a7b8c9d02", "5f8a1b2c3d4e5f6a7b8c9d03"
LI_LEI_FEISHU, WANG_FANG_FEISHU = "ou_4b6d8f0a2c4e6a8c0e2a4c6e8a0c2e04", "ou_9e1a3c5e7a9c1e3a5c7e9a1c3e5a7c03"
EMMA = "emma.smith@example.com"
RAJ = "raj.patel@example.com"
LINK = re.compile(r"<(http[^>]+)>")


def utc(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def free_port() -> int:
    """A port nobody listens on now: PUBLIC_URL must name Cadence's port before the process is built."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def absent(shown: str, *words: str) -> None:
    for word in words:
        assert word not in shown, f"{word!r} should not be shown:\n{shown}"


async def sync_now(chat: Chat) -> int:
    """The scheduler's sync job, on a process that has just checked it leads: how many sources ran."""
    assert chat.app is not None
    scheduler = chat.app.scheduler
    assert await scheduler.leadership.check()
    return await scheduler.sync_due()


def task_routes(chat: Chat) -> set[str]:
    """The paths ``App.add_task_routes`` adds to ``cadence run``'s HTTP port."""
    assert chat.app is not None
    served = chat.app.add_task_routes(web.Application())
    return {r.resource.canonical for r in served.router.routes() if r.resource is not None}


async def runs(chat: Chat, source: str) -> list[tuple[Any, ...]]:
    """Each stored ``SyncRun`` of ``source``, oldest first: (kind, status, read, changed, deleted, error)."""
    return await chat.rows(
        "select kind, status, items_read, items_changed, items_deleted, error from syncrun "
        "where source = :source order by id",
        source=source,
    )


# ---- Jira ------------------------------------------------------------------------------------------------


class JiraSite:
    """The Jira fake on the test's loop, its clock the Cadence process's clock (set once that exists)."""

    def __init__(self) -> None:
        self.chat: Chat | None = None
        self.fake = JiraFake(time_zone="Asia/Shanghai", clock=self._now)
        self.ids: dict[str, str] = {}

    def _now(self) -> float:
        assert self.chat is not None, "the Jira fake was asked the time before the process existed"
        return self.chat.clock.now.timestamp()

    def seed(self) -> None:
        """Li Lei's week (Friday 27 November 2026, 16:00 in Shanghai): two done this week, one done the
        week before, one in progress (the newest change of all), one overdue; and one of Emma's."""
        fake = self.fake
        fake.add_project("PAY", "Payments")
        fake.add_user(LI_LEI_JIRA, "Li Lei", LILEI, time_zone="Asia/Shanghai")
        fake.add_user(EMMA_JIRA, "Emma Smith", EMMA, time_zone="America/Los_Angeles")

        def his(summary: str, status: str, updated: datetime, *, due: date | None = None) -> str:
            done = updated if status == "Done" else None
            return fake.add_issue(
                "PAY",
                summary,
                status=status,
                assignee=LI_LEI_JIRA,
                created=utc(11, 2),
                updated=updated,
                resolved=done,
                due=due,
            )

        self.ids = {
            "gateway": his("重构支付网关", "Done", utc(11, 25, 3)),
            "reconcile": his("补齐对账单测试", "Done", utc(11, 26, 6)),
            "last_week": his("清理旧的批处理任务", "Done", utc(11, 18)),
            "risk": his("接入新的风控接口", "In Progress", utc(11, 27, 2)),
            "redis": his("升级 Redis 客户端", "To Do", utc(11, 10), due=date(2026, 11, 20)),
            "emma": fake.add_issue(
                "PAY",
                "Fix the login redirect",
                status="Done",
                assignee=EMMA_JIRA,
                created=utc(11, 20),
                updated=utc(11, 24),
                resolved=utc(11, 24),
            ),
        }

    def key(self, name: str) -> str:
        return str(self.fake.issue_json(self.ids[name])["key"])

    def browse(self, name: str) -> str:
        return f"{self.fake.url}/browse/{self.key(name)}"


@pytest.fixture
async def jira(db_url: str) -> AsyncIterator[tuple[Chat, JiraSite]]:
    """A Cadence process with Jira switched on in its settings, pointing at the fake; the sample org."""
    site = JiraSite()
    await site.fake.start()
    settings = JiraSettings(
        enabled=True,
        base_url=site.fake.url,
        email=site.fake.email,
        api_token=site.fake.api_token,
        jql="project = PAY",
    )
    chat = Chat(db_url, jira=settings)
    site.chat = chat
    site.seed()
    try:
        await chat.start()
        yield chat, site
    finally:
        await chat.close()
        await site.fake.stop()


async def test_jira_is_synced_shown_in_the_weekly_recap_and_only_changes_are_read_again(
    jira: tuple[Chat, JiraSite],
) -> None:
    chat, site = jira
    # the process wired Jira from its settings: the scheduler syncs it, no authorisation to hand out
    assert chat.app is not None
    assert chat.app.engine.tasks.enabled == ("jira",) and chat.app.engine.tasks.auth_links is None
    assert task_routes(chat) == set()

    assert await sync_now(chat) == 1
    assert await runs(chat, "jira") == [("full", "ok", 6, 6, 0, None)]
    # a source is synced every JIRA_INTERVAL_MINUTES (30), not on every check of the scheduler
    assert await sync_now(chat) == 0

    # HR starts the weekly recap for Li Lei: it opens with his Jira items and asks only what they miss
    await chat.dialogue(HR, [(f"cycle start weekly --people {LILEI}", "周期 #1")])
    opening = await chat.inbox(LILEI)
    assert (
        "任务系统（Jira）中你在 2026-11-23 至 2026-11-29 的事项：已完成 2 项，进行中 1 项，逾期 1 项。\n"
        "第 1/5 题：本周还完成了哪些下方清单里没有的事情？"
    ) in opening
    done_new, done_old = site.key("reconcile"), site.key("gateway")
    assert f"• 已完成 · Jira {done_new}: 补齐对账单测试 <{site.browse('reconcile')}>" in opening
    assert f"• 已完成 · Jira {done_old}: 重构支付网关 <{site.browse('gateway')}>" in opening
    assert (
        f"• 进行中 · Jira {site.key('risk')}: 接入新的风控接口 · In Progress <{site.browse('risk')}>"
    ) in opening
    assert (
        f"• 已逾期 · Jira {site.key('redis')}: 升级 Redis 客户端 · 截止 2026-11-20 <{site.browse('redis')}>"
        in (opening)
    )
    assert "[1] 确认清单" in opening
    # the question as written ("what did you get done") is not asked: the list answers it
    absent(
        opening, "第 1/5 题：本周完成了", site.key("last_week"), site.key("emma"), "Fix the login redirect"
    )

    # he adds what Jira misses; the stored answer is the confirmed items and his addition
    first, *rest = CANNED[WEEKLY][LILEI]
    reply = await chat.say(LILEI, first)
    assert f"已保存: {done_new} 补齐对账单测试; {done_old} 重构支付网关; {first}" in reply
    assert "第 2/5 题" in reply
    for said in rest:
        await chat.say(LILEI, said)
    said, thanks = SUBMIT[LILEI]
    assert thanks[0] in await chat.say(LILEI, said)
    stored = await chat.stored(LILEI, WEEKLY)
    assert stored["wins"] == ([f"{done_new} 补齐对账单测试", f"{done_old} 重构支付网关", first], False)
    evidence = stored[EVIDENCE][0]
    assert (evidence["counted"], evidence["added"]) == (
        [f"{done_new} 补齐对账单测试", f"{done_old} 重构支付网关"],
        [first],
    )
    assert [(i["key"], i["url"]) for i in evidence["in_progress"]] == [
        (site.key("risk"), site.browse("risk"))
    ]
    assert [(i["key"], i["due"]) for i in evidence["overdue"]] == [(site.key("redis"), "2026-11-20")]

    # the issue in progress is finished in Jira; at the next turn only it is read again and written
    chat.clock.advance(minutes=30)
    site.fake.update_issue(site.ids["risk"], status="Done")
    searches = len(site.fake.searches)
    assert await sync_now(chat) == 1
    assert (await runs(chat, "jira"))[-1] == ("incremental", "ok", 1, 1, 0, None)
    [search] = site.fake.searches[searches:]
    assert 'updated >= "' in search

    shown = await chat.say(LILEI, "我的任务")
    assert "【我的任务】" in shown
    assert "已完成 4 项，进行中 0 项，逾期 1 项。" in shown  # the last 14 days
    assert f"• 已完成 · Jira {site.key('risk')}: 接入新的风控接口 <{site.browse('risk')}>" in shown
    absent(shown, "进行中 ·")


# ---- Feishu tasks: each person authorises Cadence ------------------------------------------------------


class FeishuSite:
    """The Feishu tasks fake (open platform and accounts on one port), on the Cadence process's clock."""

    def __init__(self) -> None:
        self.chat: Chat | None = None
        self.fake = FeishuTasksFake(clock=self._now)
        self.li = self.fake.add_user("李雷", email=LILEI, open_id=LI_LEI_FEISHU)
        self.wang = self.fake.add_user("王芳", email="wang.fang@example.com", open_id=WANG_FANG_FEISHU)

    def _now(self) -> float:
        assert self.chat is not None, "the Feishu fake was asked the time before the process existed"
        return self.chat.clock.now.timestamp()

    def seed(self) -> dict[str, str]:
        """Li Lei's own tasks (one done now, one overdue since 25 November) and one of Wang Fang's."""
        fake, li = self.fake, self.li
        return {
            "done": fake.add_task("完成支付网关压测", creator=li, assignees=[li], completed=True),
            "late": fake.add_task(
                "提交季度 OKR 草稿",
                creator=li,
                assignees=[li],
                due_ms=int(utc(11, 24, 16).timestamp() * 1000),  # all day on 25 November in Shanghai
                all_day=True,
            ),
            "hers": fake.add_task("王芳的任务", creator=self.wang, assignees=[self.wang]),
        }


@pytest.fixture
async def feishu(db_url: str) -> AsyncIterator[tuple[Chat, FeishuSite, str]]:
    """A Cadence process with Feishu tasks switched on (FEISHU_DOMAIN: the fake), and its HTTP port served
    as ``cadence run`` serves it (health and the authorisation callback); yields it, the fake and
    PUBLIC_URL."""
    site = FeishuSite()
    await site.fake.start()
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    settings = FeishuSettings(
        tasks_enabled=True, app_id=site.fake.app_id, app_secret=site.fake.app_secret, domain=site.fake.url
    )
    chat = Chat(db_url, feishu=settings, http_port=port, public_url=public_url)
    site.chat = chat
    served: web.AppRunner | None = None
    try:
        await chat.start()
        assert chat.app is not None
        served = await start_health(
            chat.app.db, chat.app.metrics, host="127.0.0.1", port=port, more_routes=chat.app.add_task_routes
        )
        yield chat, site, public_url
    finally:
        if served is not None:
            await served.cleanup()
        await chat.close()
        await site.fake.stop()


def links_of(chat: Chat) -> FeishuTaskLinks:
    """The link maker the process gave its conversations (what ``connect tasks`` calls)."""
    assert chat.app is not None and chat.app.task_sources.feishu_links is not None
    assert chat.app.engine.tasks.auth_links is chat.app.task_sources.feishu_links
    return chat.app.task_sources.feishu_links


async def link_for(chat: Chat, email: str) -> str:
    person = int(await chat.scalar("select id from person where email = :e", e=email))
    assert chat.app is not None
    async with chat.app.db.sessions() as session, session.begin():
        link = await links_of(chat).link(person, "zh-CN", session=session)
    assert link is not None
    return link


async def open_in_browser(link: str) -> httpx.Response:
    """The person's browser: Feishu's consent page redirects to Cadence's callback, which shows a page."""
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as browser:
        return await browser.get(link)


def page_says(page: httpx.Response, key: str, **values: object) -> None:
    """The callback page says ``oauth.<key>`` in Chinese and in English."""
    for locale in ("zh-CN", "en"):
        expected = html.escape(t(f"oauth.{key}", locale, **values))
        assert expected in page.text, f"{locale} {key!r} is not on the page:\n{page.text}"


async def grants(chat: Chat) -> list[tuple[Any, ...]]:
    """(email, open_id, access token, has a refresh token, revoked at) of each stored grant."""
    return await chat.rows(
        "select p.email, g.subject, g.access_token, g.refresh_token is not null, g.revoked_at "
        "from oauthgrant g join person p on p.id = g.person_id order by g.id"
    )


async def test_connect_tasks_in_chat_sends_a_link_to_feishus_consent_page(
    feishu: tuple[Chat, FeishuSite, str], db_url: str, request: pytest.FixtureRequest
) -> None:
    chat, site, public_url = feishu
    async with asyncio.timeout(3):  # not the pool's 30 s
        reply = await chat.say(LILEI, "授权任务")
    assert "【授权读取任务】" in reply
    [link] = LINK.findall(reply)
    assert f"• 飞书任务: 授权节拍 <{link}>" in reply
    assert link.startswith(f"{site.fake.url}/open-apis/authen/v1/authorize?")
    query = parse_qs(urlsplit(link).query)
    assert query["client_id"] == [site.fake.app_id]
    assert query["redirect_uri"] == [public_url + CALLBACK_PATH]
    assert query["scope"] == ["task:task:read offline_access"]
    # the link works: Feishu sends the browser back to the callback, which stores the grant
    site.fake.sign_in(site.li)
    page = await open_in_browser(link)
    assert page.status_code == 200, page.text
    page_says(page, "done")
    assert [g[:2] for g in await grants(chat)] == [(LILEI, site.li)]


async def test_the_callback_page_stores_a_grant_once_and_says_how_it_went(
    feishu: tuple[Chat, FeishuSite, str],
) -> None:
    chat, site, public_url = feishu
    fake = site.fake
    assert task_routes(chat) == {CALLBACK_PATH}
    link = await link_for(chat, LILEI)
    query = parse_qs(urlsplit(link).query)
    assert query["redirect_uri"] == [public_url + CALLBACK_PATH]

    # he declines on Feishu's page: Feishu sends his browser back with an error instead of a code
    async with httpx.AsyncClient(timeout=10) as browser:
        declined = await browser.get(
            public_url + CALLBACK_PATH, params={"error": "access_denied", "state": query["state"][0]}
        )
    assert declined.status_code == 200
    page_says(declined, "declined")
    assert await grants(chat) == []

    # he agrees: Feishu redirects to the callback with a code; the page says it worked, in both languages
    fake.sign_in(site.li)
    page = await open_in_browser(link)
    assert page.status_code == 200, page.text
    assert str(page.url).startswith(public_url + CALLBACK_PATH + "?")
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    page_says(page, "done")
    [(email, subject, token, refreshable, revoked)] = await grants(chat)
    assert (email, subject, refreshable, revoked) == (LILEI, site.li, True, None)
    exchange = fake.calls_to("/oauth/v3/token")
    assert [c.body["redirect_uri"] for c in exchange] == [public_url + CALLBACK_PATH]

    # the same link again: its state was spent, so it is refused (the new code is never traded)
    again = await open_in_browser(link)
    assert again.status_code == 400
    page_says(again, "stale")
    assert len(fake.calls_to("/oauth/v3/token")) == 1

    # his next link forwarded to Wang Fang, who opens it signed in as herself: refused
    fake.sign_in(site.wang)
    forwarded = await open_in_browser(await link_for(chat, LILEI))
    assert forwarded.status_code == 403
    page_says(forwarded, "someone_else")

    # a link left unopened past its 10 minutes has expired
    fake.sign_in(site.li)
    late = await link_for(chat, LILEI)
    chat.clock.advance(minutes=11)
    expired = await open_in_browser(late)
    assert expired.status_code == 400
    page_says(expired, "stale")

    # nothing of that changed his grant
    assert await grants(chat) == [(LILEI, site.li, token, True, None)]


async def authorise_after_a_first_sync(chat: Chat, site: FeishuSite) -> str:
    """Cadence has been syncing Feishu tasks (the app's tasklists: none); Li Lei then authorises it, and
    the sync's next turn comes. Returns his user token."""
    assert await sync_now(chat) == 1
    assert site.fake.calls_to("/list_related_task") == []
    site.fake.sign_in(site.li)
    page = await open_in_browser(await link_for(chat, LILEI))
    assert page.status_code == 200, page.text
    [(_, _, token, _, _)] = await grants(chat)
    chat.clock.advance(minutes=30)  # FEISHU_TASKS_INTERVAL_MINUTES
    assert await sync_now(chat) == 1
    return str(token)


async def test_after_authorising_the_next_sync_reads_their_own_tasks_as_them(
    feishu: tuple[Chat, FeishuSite, str],
) -> None:
    chat, site, _ = feishu
    tasks = site.seed()
    token = await authorise_after_a_first_sync(chat, site)

    related = site.fake.calls_to("/list_related_task")
    assert related and {c.headers["authorization"] for c in related} == {f"Bearer {token}"}
    assert (await runs(chat, "feishu_task"))[-1] == ("full", "ok", 2, 2, 0, None)
    stored = await chat.rows("select external_id, title, status_category from taskitem order by title")
    assert sorted(stored) == sorted(
        [(tasks["done"], "完成支付网关压测", "done"), (tasks["late"], "提交季度 OKR 草稿", "todo")]
    )


async def test_after_authorising_me_tasks_shows_their_feishu_tasks(
    feishu: tuple[Chat, FeishuSite, str],
) -> None:
    chat, site, _ = feishu
    tasks = site.seed()
    nothing = await chat.say(LILEI, "我的任务")
    assert "任务系统（飞书任务）中没有你最近 14 天的事项，也没有逾期事项。" in nothing
    assert t("tasks.connect_hint", "zh-CN") in nothing

    await authorise_after_a_first_sync(chat, site)

    shown = await chat.say(LILEI, "我的任务")
    assert "【我的任务】" in shown
    assert "已完成 1 项，进行中 0 项，逾期 1 项。" in shown
    done, late = (site.fake.task_json(tasks[name]) for name in ("done", "late"))
    assert f"• 已完成 · 飞书任务 {done['task_id']}: 完成支付网关压测 <{done['url']}>" in shown
    assert (
        f"• 已逾期 · 飞书任务 {late['task_id']}: 提交季度 OKR 草稿 · 截止 2026-11-25 <{late['url']}>" in shown
    )
    absent(shown, "王芳的任务")


# ---- no task source ------------------------------------------------------------------------------------


async def test_with_no_task_source_in_the_settings_nothing_is_synced_or_shown(chat: Chat) -> None:
    assert chat.app is not None
    assert chat.app.engine.tasks.enabled == () and chat.app.scheduler.sync is None
    assert await sync_now(chat) == 0
    assert task_routes(chat) == set()  # no callback: nothing to authorise

    await chat.start_cycle(WEEKLY, EMMA)
    opening = "\n".join(s.text for s in chat.console.transcript if s.recipient == EMMA)
    assert "Q1/5: What did you get done this week?" in opening
    absent(opening, "task systems", "Confirm the list")
    assert "No task source (Jira, Feishu Tasks, DingTalk to-dos) is set up here" in await chat.say(
        RAJ, "me tasks"
    )
    assert "No task source is set up here, so there is nothing to connect." in await chat.say(
        RAJ, "connect tasks"
    )
