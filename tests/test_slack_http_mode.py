"""Cadence in Slack HTTP mode: signed requests start work; others are refused and change nothing."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections.abc import AsyncIterator

import aiohttp
import pytest
from sqlalchemy import text

from bot.app import App, platforms_from
from bot.platforms.slack import SlackPlatform
from bot.platforms.slack_http import signature
from bot.settings import SlackSettings
from conversations.org_service import import_org_file
from tests.fakes.slack import SlackFake
from tests.harness import HR, SAMPLE_ORG
from tests.harness import test_settings as settings_for
from tests.slack_rig import BOT_TOKEN, slack_users

SECRET = "8f14e45fceea167a5a36dedd4bea2543"


@pytest.fixture
async def served(db_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[App, SlackFake, str]]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    fake = SlackFake(users=slack_users())
    await fake.start()
    settings = settings_for(db_url, http_port=0)
    settings.slack = SlackSettings(
        enabled=True, bot_token=BOT_TOKEN, signing_secret=SECRET, api_url=fake.base_url
    )
    app = App(settings, platforms=platforms_from(settings))
    await app.start()
    await import_org_file(app.db, SAMPLE_ORG)
    platform = app.platforms["slack"]
    assert isinstance(platform, SlackPlatform) and platform.http_address is not None
    host, port = platform.http_address
    try:
        yield app, fake, f"http://{host}:{port}/slack/commands"
    finally:
        await app.stop()
        await fake.stop()


async def _post(url: str, body: bytes, *, secret: str = SECRET, age: int = 0) -> int:
    stamp = str(int(time.time()) - age)
    headers = {
        "X-Slack-Request-Timestamp": stamp,
        "X-Slack-Signature": signature(secret, stamp, body),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as response:
        return response.status


async def _done(app: App) -> bool:
    async with app.db.engine.connect() as conn:
        done = await conn.execute(text("select count(*) from inboundevent where processed_at is not null"))
        return bool(done.scalar_one())


async def _processed(app: App) -> int:
    async with app.db.engine.connect() as conn:
        return int((await conn.execute(text("select count(*) from inboundevent"))).scalar_one())


async def test_a_signed_slash_command_starts_a_cycle_and_a_forged_one_changes_nothing(
    served: tuple[App, SlackFake, str],
) -> None:
    app, fake, url = served
    command = fake.slash_command(slack_users()[HR], "cycle start weekly --dept Engineering")
    body = urllib.parse.urlencode(command).encode()

    assert await _post(url, body, secret="not-the-secret") == 401
    assert await _post(url, body, age=360) == 401
    assert await _processed(app) == 0

    assert await _post(url, body) == 200
    async with asyncio.timeout(10):  # acknowledged at once; the work follows
        while not await _done(app):
            await asyncio.sleep(0.01)
    await app.delivery.drain()
    ((_, reply),) = fake.responses
    assert "周期 #1" in json.dumps(reply, ensure_ascii=False)
    async with app.db.engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from assignment"))).scalar_one() == 7
