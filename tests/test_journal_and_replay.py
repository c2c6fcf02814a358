"""The inbound journal: re-deliveries are no-ops (also across restarts), a crash is replayed once, a
failure is recorded and answered, and replaying one journal row never doubles what it did."""

from __future__ import annotations

import json

from bot.platforms.base import IncomingEvent
from conversations.i18n import t
from storage import journal
from storage.models import RitualDefinition
from tests.harness import HR, LILEI, Chat

ANSWER_Q1 = "完成了登录模块重构 🚀"
FAILED = t("router.failed", "zh-CN")
HELP_TITLE = t("cmd.help_title", "zh-CN")


async def _start_weekly_for_lilei(chat: Chat) -> None:
    """HR starts a weekly recap for 李雷 alone; 李雷 has read the first question."""
    assert "周期 #1" in await chat.say(HR, "cycle start weekly --people li.lei@example.com")
    assert "第 1/5 题" in await chat.inbox(LILEI)


def _text(event_id: str, text: str, email: str = LILEI) -> IncomingEvent:
    return IncomingEvent("console", event_id, email, "text", text=text, email=email)


async def _journal_only(chat: Chat, event: IncomingEvent) -> int:
    """Journal ``event`` in its own transaction and stop there: a crash right after the journal."""
    assert chat.app is not None
    payload = event.to_payload(max_chars=chat.settings.max_message_chars)
    async with chat.app.db.sessions() as session, session.begin():
        journal_id = await journal.record(
            session, platform=event.platform, event_id=event.event_id, payload=payload
        )
    assert journal_id is not None
    return journal_id


async def _answers(chat: Chat) -> list[tuple[str, object]]:
    rows = await chat.rows(
        "select a.step, a.value from answer a join assignment s on s.id = a.assignment_id "
        "join person p on p.id = s.person_id where p.email = :email order by a.id",
        email=LILEI,
    )
    # raw SQL reads JSON back as text on SQLite and as a value on PostgreSQL
    return [(step, json.loads(value) if isinstance(value, str) else value) for step, value in rows]


async def _state(chat: Chat) -> tuple[str, str, int]:
    rows = await chat.rows(
        "select s.status, s.current_step, s.version from assignment s join person p on p.id = s.person_id "
        "where p.email = :email",
        email=LILEI,
    )
    assert len(rows) == 1
    status, step, version = rows[0]
    return status, step, version


async def _outbox_keys(chat: Chat) -> list[str]:
    return [k for (k,) in await chat.rows("select idempotency_key from outbox order by id")]


async def test_a_redelivered_event_is_processed_once(chat: Chat) -> None:
    await _start_weekly_for_lilei(chat)
    assert chat.app is not None
    event = _text("slack-retry-1", ANSWER_Q1)

    assert await chat.app.router.receive(event) is True
    first = await chat.inbox(LILEI)
    keys = await _outbox_keys(chat)

    assert await chat.app.router.receive(event) is False
    assert await chat.inbox(LILEI) == ""

    assert first.count("第 2/5 题") == 1
    assert "已保存" in first
    assert [step for step, _ in await _answers(chat)] == ["wins"]
    assert await _outbox_keys(chat) == keys
    assert await chat.scalar("select count(*) from inboundevent where event_id = 'slack-retry-1'") == 1


async def test_a_redelivery_after_a_restart_is_still_a_no_op(chat: Chat) -> None:
    await _start_weekly_for_lilei(chat)
    await chat.console.say(LILEI, ANSWER_Q1, event_id="feishu-repush-7")
    assert "第 2/5 题" in await chat.inbox(LILEI)
    keys = await _outbox_keys(chat)

    await chat.restart()
    await chat.console.say(LILEI, ANSWER_Q1, event_id="feishu-repush-7")

    assert await chat.inbox(LILEI) == ""
    assert [step for step, _ in await _answers(chat)] == ["wins"]
    assert await _outbox_keys(chat) == keys
    assert (await _state(chat))[1] == "week_rating"
    # and the conversation carries on normally after the ignored re-delivery
    assert "第 3/5 题" in await chat.say(LILEI, "4")


async def test_an_event_journaled_before_a_crash_is_replayed_once_at_start(chat: Chat) -> None:
    await _start_weekly_for_lilei(chat)
    journal_id = await _journal_only(chat, _text("crash-1", ANSWER_Q1))
    assert await _answers(chat) == []

    await chat.restart()

    shown = await chat.inbox(LILEI)
    assert shown.count("第 2/5 题") == 1
    assert shown.count("已保存") == 1
    assert await _answers(chat) == [("wins", ["完成了登录模块重构 🚀"])]
    assert await chat.rows(
        "select processed_at is not null, error from inboundevent where id = :id", id=journal_id
    ) == [(True, None)]

    # a second restart has nothing left to replay, and a late re-delivery is ignored
    await chat.restart()
    await chat.console.say(LILEI, ANSWER_Q1, event_id="crash-1")
    assert await chat.inbox(LILEI) == ""
    assert len(await _answers(chat)) == 1


async def test_normal_processing_leaves_no_error_in_the_journal(chat: Chat) -> None:
    await _start_weekly_for_lilei(chat)
    await chat.dialogue(LILEI, [(ANSWER_Q1, "第 2/5 题"), ("4", "第 3/5 题")])
    assert (
        await chat.rows("select processed_at is not null, error from inboundevent order by id")
        == [(True, None)] * 3
    )


async def test_a_forged_button_value_is_refused_and_changes_nothing(chat: Chat) -> None:
    await _start_weekly_for_lilei(chat)
    before = await _state(chat)
    # parses as ours, but names an assignment id no database column can hold
    forged = "v1|99999999999999999999|wins|1|yes"

    await chat.console.click(LILEI, forged, event_id="forged-1")

    assert t("chat.already_answered", "zh-CN") in await chat.inbox(LILEI)
    assert await _state(chat) == before
    assert await _answers(chat) == []


async def test_a_failing_event_is_recorded_and_answered_once_and_changes_nothing(chat: Chat) -> None:
    await _start_weekly_for_lilei(chat)
    before = await _state(chat)
    good_body = await chat.scalar("select body from ritualdefinition")
    # damage the stored question set (as a bad manual edit would) so that handling the event fails
    await _set_ritual_body(chat, {"broken": True})
    await chat.restart()  # nothing cached: the next message reads the damaged definition

    await chat.console.say(LILEI, ANSWER_Q1, event_id="fails-1")

    shown = await chat.inbox(LILEI)
    assert shown.count(FAILED) == 1
    (error,) = [e for (e,) in await chat.rows("select error from inboundevent where event_id = 'fails-1'")]
    assert error
    assert await _state(chat) == before
    assert await _answers(chat) == []

    # the failed event is closed: neither a re-delivery nor a restart answers it again
    await chat.console.say(LILEI, ANSWER_Q1, event_id="fails-1")
    await _set_ritual_body(chat, good_body if isinstance(good_body, dict) else json.loads(good_body))
    await chat.restart()
    assert await chat.inbox(LILEI) == ""
    # and once the definition is repaired the person carries on
    assert "第 2/5 题" in await chat.say(LILEI, ANSWER_Q1)


async def _set_ritual_body(chat: Chat, body: dict[str, object]) -> None:
    assert chat.app is not None
    async with chat.app.db.engine.begin() as conn:
        await conn.execute(
            RitualDefinition.__table__.update().values(body=body)  # type: ignore[attr-defined]
        )


async def test_replaying_a_command_twice_queues_its_reply_once(chat: Chat) -> None:
    assert chat.app is not None
    event = _text("help-1", "帮助", email=HR)
    journal_id = await _journal_only(chat, event)

    await chat.app.router.process(journal_id, event)
    await chat.app.router.process(journal_id, event)

    keys = [k for k in await _outbox_keys(chat) if k.startswith(f"in{journal_id}:")]
    assert keys == [f"in{journal_id}:r1"]
    assert (await chat.inbox(HR)).count(HELP_TITLE) == 1
    assert len(chat.console.said_to(HR)) == 1


async def test_replaying_a_conversation_turn_twice_applies_it_once(chat: Chat) -> None:
    """Two processes starting together both replay the same unprocessed journal row (each read the
    list before the other finished): the second run must not apply the answer to the next question."""
    await _start_weekly_for_lilei(chat)
    assert "第 2/5 题" in await chat.say(LILEI, ANSWER_Q1)
    assert chat.app is not None
    event = _text("crash-2", "4")
    journal_id = await _journal_only(chat, event)

    await chat.app.router.process(journal_id, event)
    keys = await _outbox_keys(chat)
    await chat.app.router.process(journal_id, event)

    assert [step for step, _ in await _answers(chat)] == ["wins", "week_rating"]
    assert (await _state(chat))[1] == "blockers"
    assert await _outbox_keys(chat) == keys
    shown = await chat.inbox(LILEI)
    assert shown.count("第 3/5 题") == 1
    assert "第 4/5 题" not in shown


async def test_a_superscript_digit_at_the_edit_chooser_is_answered_not_a_failure(chat: Chat) -> None:
    """``"²".isdigit()`` is True but ``int("²")`` raises: a typo must get a helpful reply, not an error."""
    await _start_weekly_for_lilei(chat)
    await chat.dialogue(
        LILEI,
        [(ANSWER_Q1, "第 2/5 题"), ("4", "第 3/5 题"), ("等待评审", "第 4/5 题"), ("准备发布", "第 5/5 题")],
    )
    await chat.dialogue(LILEI, [("否", "提交"), ("修改", t("chat.edit_which", "zh-CN"))])

    shown = await chat.say(LILEI, "²")

    assert FAILED not in shown
    assert await chat.scalar("select count(*) from inboundevent where error is not null") == 0
    assert "第 2/5 题" in shown or t("chat.edit_number", "zh-CN", count=5) in shown


async def test_every_event_journaled_before_a_crash_is_replayed_not_just_the_first_batch(chat: Chat) -> None:
    """A busy company can have more than a few hundred events between journal and processing when the
    process dies; every one of them was acknowledged to the platform, so every one must be replayed."""
    assert chat.app is not None
    backlog = 501
    async with chat.app.db.sessions() as session, session.begin():
        for n in range(backlog):
            event = _text(f"backlog-{n}", "帮助", email=HR)
            payload = event.to_payload(max_chars=chat.settings.max_message_chars)
            await journal.record(session, platform="console", event_id=event.event_id, payload=payload)

    await chat.restart()

    assert await chat.scalar("select count(*) from inboundevent where processed_at is null") == 0
    replies = "select count(*) from outbox where idempotency_key like :pattern"
    assert await chat.scalar(replies, pattern="in%:r1") == backlog
