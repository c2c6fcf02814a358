"""A Slack that answers 429 to 30% of sends and 500 to 5%, and loses some answers: every message
arrives, none twice (through the real adapter and SDK, over real sockets)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from tests.harness import HR
from tests.slack_rig import SlackRig


@pytest.fixture
async def slack(db_url: str) -> AsyncIterator[SlackRig]:
    rig = await SlackRig(db_url).start()
    yield rig
    await rig.close()


async def outbox_statuses(slack: SlackRig) -> dict[str, int]:
    assert slack.app is not None
    async with slack.app.db.engine.connect() as conn:
        rows = (await conn.execute(text("select status, count(*) from outbox group by status"))).all()
    return {status: int(count) for status, count in rows}


async def test_every_prompt_arrives_once_through_429s_500s_and_lost_answers(slack: SlackRig) -> None:
    slack.fake.chaos(rate_429=0.3, rate_500=0.05, retry_after=1, seed=20261127)
    slack.fake.lose_response("chat.postMessage", times=3)  # Slack posted these, Cadence never heard
    command = slack.fake.slash_command(slack.users[HR], "cycle start weekly")
    await slack.envelope("slash_commands", command)
    await slack.settle(1)
    assert slack.app is not None
    for _ in range(200):  # each round: send what is due, then let the clock reach the retry times
        await slack.app.delivery.drain()
        statuses = await outbox_statuses(slack)
        if set(statuses) <= {"sent", "obsolete", "dead"}:
            break
        slack.clock.advance(seconds=5)

    statuses = await outbox_statuses(slack)
    assert statuses.get("dead", 0) == 0 and set(statuses) <= {"sent", "obsolete"}, statuses
    delivered = slack.fake.delivered_keys()
    # 20 people: one opening each (with its first question); HR's ephemeral reply is not a DM post
    assert sum(delivered.values()) == 20
    assert [key for key, count in delivered.items() if count > 1] == []
    assert len(delivered) == statuses["sent"] - 1  # everything sent is in Slack, once (minus the reply)
    assert slack.fake.http_429 > 0 and slack.fake.http_500 > 0
    # the lost answers (and the 500s) were checked in the DM's history before any second attempt
    assert len(slack.fake.calls_to("conversations.history")) >= 3
