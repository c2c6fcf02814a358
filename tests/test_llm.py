"""The optional language model: an OpenAI-compatible client rewords the agenda's topics (never their
reasons); a server error, a timeout or an answer it cannot use keeps the rule topics. Against a fake
OpenAI server on 127.0.0.1; and end to end, in the scheduled agenda card."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest

from bot.llm import LlmClient, LlmTopicRewriter, build_topic_rewriter
from conversations.topic_rewriter import TopicText
from scheduler.one_on_ones import OneOnOnes
from tests.agenda_rig import person_id
from tests.fakes.llm import LlmFake
from tests.harness import Chat

TOPICS = [
    TopicText(
        "repeated_blocker", "Clearing a recurring blocker", "said “blocked on review” twice (W46, W47)"
    ),
    TopicText(
        "falling_rating", "How the weeks are going", "week rating went 4 → 3 → 2 over the last 3 recaps"
    ),
    TopicText("overdue_many", "Overdue work in PAY", "3 items overdue in PAY (oldest: PAY-801, 9 days late)"),
]
MICHAEL = "michael.brown@example.com"


@pytest.fixture
async def fake() -> AsyncIterator[LlmFake]:
    async with LlmFake() as server:
        yield server


def rewriter(fake: LlmFake, *, timeout: float = 10.0) -> LlmTopicRewriter:
    found = build_topic_rewriter(base_url=fake.url, model="gpt-test", api_key="sk-test", timeout=timeout)
    assert found is not None
    return found


async def test_the_topics_are_reworded_and_the_reasons_kept(fake: LlmFake) -> None:
    client = rewriter(fake)
    try:
        got = await client.rewrite(TOPICS, "en")
    finally:
        await client.close()
    assert got == [TopicText(t.rule, f"Talk about: {t.text}", t.reason) for t in TOPICS]
    (call,) = fake.calls
    assert call.path == "/v1/chat/completions"
    assert call.authorization == "Bearer sk-test"
    assert call.body["model"] == "gpt-test"
    system, user = call.body["messages"]
    assert (
        system["role"] == "system"
        and "exactly 3 strings" in system["content"]
        and "English" in system["content"]
    )
    assert json.loads(user["content"])[2] == {"topic": TOPICS[2].text, "reason": TOPICS[2].reason}


async def test_chinese_is_asked_for_in_chinese_and_a_fenced_answer_is_read(fake: LlmFake) -> None:
    fake.answer = '```json\n["聊聊评审阻碍", "最近几周的状态", "PAY 的逾期"]\n```'
    client = rewriter(fake)
    try:
        got = await client.rewrite(TOPICS, "zh-CN")
    finally:
        await client.close()
    assert [t.text for t in got] == ["聊聊评审阻碍", "最近几周的状态", "PAY 的逾期"]
    assert "Simplified Chinese" in fake.calls[0].body["messages"][0]["content"]


@pytest.mark.parametrize(
    "answer",
    [
        '["only one"]',  # not one per topic
        "Sure! Here are your topics.",  # not JSON
        '["a", "", "c"]',  # an empty topic
        json.dumps(["x" * 200, "b", "c"]),  # too long to be a topic
        '{"note": "no list here"}',
    ],
)
async def test_an_answer_that_cannot_be_used_keeps_the_rule_topics(
    fake: LlmFake, answer: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.answer = answer
    client = rewriter(fake)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            assert await client.rewrite(TOPICS, "en") == TOPICS
    finally:
        await client.close()
    assert "keeping the rule topics" in caplog.text


async def test_a_server_error_keeps_the_rule_topics(fake: LlmFake, caplog: pytest.LogCaptureFixture) -> None:
    fake.fail_with(500)
    client = rewriter(fake)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            assert await client.rewrite(TOPICS, "en") == TOPICS
    finally:
        await client.close()
    assert "HTTP 500" in caplog.text


async def test_a_timeout_keeps_the_rule_topics(fake: LlmFake, caplog: pytest.LogCaptureFixture) -> None:
    fake.hang()
    client = rewriter(fake, timeout=0.2)
    try:
        with caplog.at_level(logging.WARNING, logger="bot.llm"):
            assert await client.rewrite(TOPICS, "en") == TOPICS
    finally:
        await client.close()
    assert "ReadTimeout" in caplog.text


async def test_a_server_that_is_not_there_keeps_the_rule_topics() -> None:
    client = LlmTopicRewriter(LlmClient(base_url="http://127.0.0.1:9/v1", model="m", timeout=1.0))
    try:
        assert await client.rewrite(TOPICS, "en") == TOPICS
    finally:
        await client.close()


def test_it_is_off_without_a_base_url() -> None:
    assert build_topic_rewriter(base_url="", model="gpt-test") is None
    assert build_topic_rewriter(base_url="   ", model="gpt-test", api_key="sk") is None


async def scheduled_card(chat: Chat, fake: LlmFake) -> tuple[str, dict[str, object]]:
    """Michael's agenda for his 1:1 with Sarah, sent by the scheduler with the model's help."""
    assert chat.app is not None
    topics = rewriter(fake)
    chat.app.scheduler.one_on_ones = OneOnOnes(
        chat.app.db, chat.app.timing, platform="console", rewriter=topics
    )
    try:
        await chat.tick()
        meeting = datetime(2026, 11, 30, 18, 0, tzinfo=UTC)  # Sarah's first 1:1 with Michael
        chat.clock.now = meeting - timedelta(hours=2)
        await chat.tick()
    finally:
        await topics.close()
    card = next(
        s.text
        for s in chat.console.transcript
        if s.recipient == MICHAEL and s.message.meta.get("kind") == "agenda"
    )
    sarah = await person_id(chat, "sarah.johnson@example.com")
    record = await chat.scalar("select cast(agenda as text) from oneonone where report_id = :r", r=sarah)
    return card, json.loads(record)


async def test_the_scheduled_card_carries_the_reworded_topics(chat: Chat, fake: LlmFake) -> None:
    card, record = await scheduled_card(chat, fake)
    assert "1. Talk about: Career growth: no 1:1 agenda has had a growth topic yet" in card
    topics = record["topics"]
    assert isinstance(topics, list)
    assert [(t["rule"], t["text"]) for t in topics] == [
        ("career_growth", "Talk about: Career growth"),
        ("workload", "Talk about: Check in on workload"),
        ("priorities", "Talk about: Priorities until the next 1:1"),
    ]


async def test_when_the_model_fails_the_scheduled_card_has_the_rule_topics(chat: Chat, fake: LlmFake) -> None:
    fake.fail_with(500)
    card, record = await scheduled_card(chat, fake)
    assert "1. Career growth: no 1:1 agenda has had a growth topic yet" in card
    assert "Talk about" not in card
    topics = record["topics"]
    assert isinstance(topics, list) and topics[0]["text"] == "Career growth"
    assert len(fake.calls) >= 1
