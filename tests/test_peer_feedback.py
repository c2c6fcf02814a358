"""360 micro-feedback as transcripts: giving (1–3 items of ≤ 280 characters), asking up to 5 colleagues,
the anonymous threshold, and who may read what (en and zh-CN, on SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from conversations import vagueness
from conversations.i18n import t
from conversations.org_service import import_org_file
from conversations.peer_feedback import Access, ReceivedFeedback, received_for, split_items
from conversations.peer_feedback_commands import _head
from tests.harness import EMMA, HR, LILEI, MANAGER, SAMPLE_ORG, Chat, write_file

RAJ = "raj.patel@example.com"  # Emma's peer (same manager)
ZHANG = "zhang.wei@example.com"  # 张伟, Emma's peer
HAN = "han.meimei@example.com"  # 韩梅梅
WU = "wu.hao@example.com"  # 吴昊
CEO = "chen.jie@example.com"  # 陈杰, the manager of Emma's manager
SARAH = "sarah.johnson@example.com"  # in Product: nobody in Emma's chain

SPECIFIC = "Your review of PR 412 caught the race in the retry loop before the 2.3 release"
VAGUE = "Good job"


async def _feedback_rows(chat: Chat) -> list[tuple[str, str, list[dict[str, Any]], bool, Any]]:
    rows = await chat.rows(
        "select g.email, r.email, cast(f.items as text), f.anonymous, f.request_id from peerfeedback f "
        "join person g on g.id = f.giver_id join person r on r.id = f.recipient_id order by f.id"
    )
    return [(g, r, json.loads(items), bool(anon), req) for g, r, items, anon, req in rows]


async def _requests(chat: Chat) -> list[tuple[str, str, bool, bool]]:
    """(requester, asked, anonymous, answered) of every request, in order."""
    rows = await chat.rows(
        "select q.email, a.email, r.anonymous, r.answered_at is not null from feedbackrequest r "
        "join person q on q.id = r.requester_id join person a on a.id = r.asked_id order by r.id"
    )
    return [(q, a, bool(anon), bool(answered)) for q, a, anon, answered in rows]


async def _person_id(chat: Chat, email: str) -> int:
    return int(await chat.scalar("select id from person where email = :email", email=email))


async def _seen_by(chat: Chat, viewer: str, recipient: str = EMMA, locale: str = "en") -> ReceivedFeedback:
    assert chat.app is not None
    recipient_id, viewer_id = await _person_id(chat, recipient), await _person_id(chat, viewer)
    async with chat.app.db.sessions() as session:
        return await received_for(session, recipient_id=recipient_id, viewer_id=viewer_id, locale=locale)


# ---- giving ---------------------------------------------------------------------------------------


async def test_three_items_are_stored_with_their_verdicts_and_the_recipient_is_told(chat: Chat) -> None:
    said = f"feedback @emma.smith {SPECIFIC}; {VAGUE}; Clear slides in the billing demo on Tuesday"
    reply = await chat.say(RAJ, said)
    assert t("peerfb.saved", "en", name="Emma Smith", items="3 items") in reply
    texts = [SPECIFIC, VAGUE, "Clear slides in the billing demo on Tuesday"]
    vague = [str(n) for n, x in enumerate(texts, start=1) if not vagueness.assess(x).specific]
    assert "1" not in vague and "2" in vague
    # the vague ones named in one line of the confirmation: no extra question
    tip = "peerfb.tip_vague_one" if len(vague) == 1 else "peerfb.tip_vague_many"
    assert t(tip, "en", which=" and ".join(vague)) in reply
    ((giver, recipient, items, anonymous, request),) = await _feedback_rows(chat)
    assert (giver, recipient, anonymous, request) == (RAJ, EMMA, False, None)
    assert items == [{"text": x, "specific": vagueness.assess(x).specific} for x in texts]
    assert items[0]["specific"] is True and items[1]["specific"] is False
    told = await chat.inbox(EMMA)
    assert "Raj Patel gave you feedback:" in told and f"• {SPECIFIC}" in told and f"• {VAGUE}" in told
    shown = await chat.say(EMMA, "feedback")
    assert "From Raj Patel, 2026-11-27:" in shown and SPECIFIC in shown


async def test_chinese_items_one_per_line(chat: Chat) -> None:
    reply = await chat.say(
        LILEI, "反馈 @张伟\n1. 周三的发布文档写得很清楚，回滚步骤一目了然\n2. 代码评审很及时"
    )
    assert t("peerfb.saved", "zh-CN", name="张伟", items="2 条") in reply
    ((_, recipient, items, _, _),) = await _feedback_rows(chat)
    assert recipient == ZHANG
    # commands are read NFKC-normalised (the full-width comma becomes ",")
    assert [i["text"] for i in items] == ["周三的发布文档写得很清楚,回滚步骤一目了然", "代码评审很及时"]
    assert "李雷 给了你反馈：" in await chat.inbox(ZHANG)


async def test_one_item_by_full_name_and_email(chat: Chat) -> None:
    await chat.dialogue(
        RAJ,
        [
            ("feedback @Emma Smith Thanks for pairing on the flaky CI job", "(1 item)"),
            (f"feedback {EMMA} The runbook for the 2.3 rollback saved us an hour", "(1 item)"),
        ],
    )
    assert [(recipient, items[0]["text"]) for _, recipient, items, _, _ in await _feedback_rows(chat)] == [
        (EMMA, "Thanks for pairing on the flaky CI job"),
        (EMMA, "The runbook for the 2.3 rollback saved us an hour"),
    ]


@pytest.mark.parametrize(
    ("email", "said", "expected"),
    [
        pytest.param(
            RAJ,
            "feedback @emma.smith one; two; three; four",
            t("peerfb.too_many", "en", count=4, limit=3),
            id="four-items",
        ),
        pytest.param(
            LILEI,
            "反馈 @张伟\n第一条\n第二条\n第三条\n第四条",
            t("peerfb.too_many", "zh-CN", count=4, limit=3),
            id="four-items-zh",
        ),
        pytest.param(
            RAJ,
            f"feedback @emma.smith fine; {'x' * 281}",
            t("peerfb.too_long", "en", index=2, length=281, limit=280),
            id="281-characters",
        ),
        pytest.param(
            LILEI,
            f"反馈 @张伟 {'好' * 281}",
            t("peerfb.too_long", "zh-CN", index=1, length=281, limit=280),
            id="281-characters-zh",
        ),
        pytest.param(EMMA, "feedback @emma.smith Great week", t("peerfb.not_self", "en"), id="to-oneself"),
        pytest.param(LILEI, "反馈 @李雷 很好", t("peerfb.not_self", "zh-CN"), id="to-oneself-zh"),
        pytest.param(
            RAJ,
            "feedback @nobody.here Great week",
            t("peerfb.who_unknown", "en", mention="@nobody.here"),
            id="unknown",
        ),
        pytest.param(
            RAJ,
            "feedback @emma.smith @li.lei Great pairing",
            t("peerfb.one_at_a_time", "en", mention="@li.lei"),
            id="two-recipients",
        ),
        pytest.param(
            RAJ,
            "feedback @emma.smith",
            t("peerfb.no_items", "en", name="Emma Smith", mention="@emma.smith"),
            id="no-items",
        ),
    ],
)
async def test_feedback_breaking_the_rules_is_refused_and_nothing_is_stored(
    chat: Chat, email: str, said: str, expected: str
) -> None:
    reply = await chat.say(email, said)
    assert expected in reply
    assert await _feedback_rows(chat) == []
    assert await chat.scalar("select count(*) from outbox where kind = 'notice'") == 0


async def test_280_characters_is_the_limit_not_over_it(chat: Chat) -> None:
    assert "(1 item)" in await chat.say(RAJ, f"feedback @emma.smith {'y' * 280}")
    assert len((await _feedback_rows(chat))[0][2][0]["text"]) == 280


async def test_an_ambiguous_name_lists_who_it_could_be(chat: Chat, tmp_path: Any) -> None:
    assert chat.app is not None
    org = SAMPLE_ORG.read_text(encoding="utf-8") + (
        "\n  - email: emma.stone@example.com\n    name: Emma Stone\n"
        "    manager_email: wang.fang@example.com\n    timezone: UTC\n    locale: en\n"
    )
    await import_org_file(chat.app.db, write_file(tmp_path, "org.yaml", org))
    reply = await chat.say(RAJ, "feedback @Emma Great week")
    assert t("peerfb.who_ambiguous", "en", mention="@Emma", names="Emma Smith and Emma Stone") in reply
    assert "(1 item)" in await chat.say(RAJ, "feedback @Emma Stone Thanks for the onboarding notes")
    assert (await _feedback_rows(chat))[0][1] == "emma.stone@example.com"


# ---- asking ---------------------------------------------------------------------------------------


async def test_asking_five_colleagues_sends_each_a_request_with_how_to_answer(chat: Chat) -> None:
    reply = await chat.say(EMMA, "feedback ask @raj.patel @李雷 @张伟、@韩梅梅 @wu.hao @Raj")
    assert "Asked 5 colleagues for feedback: Raj Patel, 李雷, 张伟, 韩梅梅 and 吴昊." in reply
    assert [(a, anon, done) for _, a, anon, done in await _requests(chat)] == [
        (RAJ, False, False),
        (LILEI, False, False),
        (ZHANG, False, False),
        (HAN, False, False),
        (WU, False, False),
    ]
    raj = await chat.inbox(RAJ)
    assert "Emma Smith would like your feedback" in raj
    assert "feedback @emma.smith one thing that went well; one thing to do differently" in raj
    assert "反馈 @emma.smith 做得好的一点；可以改进的一点" in await chat.inbox(LILEI)
    # asking again while they have not answered asks nobody twice
    again = await chat.say(EMMA, "feedback ask @raj.patel")
    assert t("peerfb.already_asked", "en", names="Raj Patel") in again
    assert len(await _requests(chat)) == 5 and await chat.inbox(RAJ) == ""


async def test_asking_six_is_refused_and_nothing_is_sent(chat: Chat) -> None:
    reply = await chat.say(LILEI, "反馈 请求 @emma.smith @raj.patel @张伟 @韩梅梅 @吴昊 @王芳")
    assert t("peerfb.ask_too_many", "zh-CN", count=6, limit=5) in reply
    assert await _requests(chat) == []
    assert await chat.scalar("select count(*) from outbox where kind = 'notice'") == 0


@pytest.mark.parametrize(
    ("said", "key"),
    [
        ("feedback ask @emma.smith @raj.patel", "peerfb.ask_self"),
        ("feedback ask @raj.patel please", "peerfb.ask_not_a_name"),
        ("feedback ask @raj.patel @nobody.here", "peerfb.who_unknown"),
    ],
)
async def test_a_request_naming_oneself_or_nobody_sends_nothing(chat: Chat, said: str, key: str) -> None:
    reply = await chat.say(EMMA, said)
    assert t(key, "en", word="please", mention="@nobody.here") in reply
    assert await _requests(chat) == []


async def test_answering_a_request_links_it_and_marks_it_answered(chat: Chat) -> None:
    await chat.say(EMMA, "feedback ask @raj.patel @李雷")
    await chat.inbox(EMMA)
    reply = await chat.say(RAJ, f"feedback @emma.smith {SPECIFIC}")
    assert t("peerfb.answered_request", "en", name="Emma Smith") in reply
    assert [(a, done) for _, a, _, done in await _requests(chat)] == [(RAJ, True), (LILEI, False)]
    request_id = await chat.scalar("select min(id) from feedbackrequest")
    assert (await _feedback_rows(chat))[0][4] == request_id
    assert "Raj Patel gave you feedback:" in await chat.inbox(EMMA)
    # a second answer is feedback like any other: the request stays answered by the first
    await chat.say(RAJ, "feedback @emma.smith The incident write-up on Monday was thorough")
    assert (await _feedback_rows(chat))[1][4] is None


async def test_an_anonymous_request_is_answered_anonymously(chat: Chat) -> None:
    reply = await chat.say(EMMA, "feedback ask @raj.patel @张伟 anonymous")
    assert "Asked 2 colleagues for anonymous feedback" in reply
    assert "It is anonymous: Emma Smith never sees who said what" in await chat.inbox(RAJ)
    answer = await chat.say(RAJ, f"feedback @emma.smith {SPECIFIC}")
    assert t("peerfb.anonymous_as_asked", "en", name="Emma Smith") in answer
    assert (await _feedback_rows(chat))[0][3] is True
    assert await chat.inbox(EMMA) == ""  # below the threshold: not even told


# ---- the anonymous threshold and who reads what ----------------------------------------------------

ANONYMOUS = [
    (RAJ, "feedback anonymous @emma.smith Zero-downtime migration plan for billing in sprint 14"),
    (ZHANG, "反馈 @emma.smith 匿名 周二的计费演示讲得很清楚"),
    (RAJ, "feedback anonymous @emma.smith Answering on-call pages within 5 minutes all week"),
    (HAN, "反馈 匿名 @emma.smith 帮我排查了 CI 里不稳定的测试"),
]


async def test_anonymous_feedback_waits_for_three_givers_then_shows_without_names(chat: Chat) -> None:
    assert t("peerfb.saved_anonymous_waiting", "en", name="Emma Smith", items="1 item", threshold=3) in (
        await chat.say(*ANONYMOUS[0])
    )
    assert t("peerfb.saved_anonymous_waiting", "zh-CN", name="Emma Smith", items="1 条", threshold=3) in (
        await chat.say(*ANONYMOUS[1])
    )
    # two people: Emma sees nothing but how many items wait, and is not told
    shown = await chat.say(EMMA, "feedback")
    assert t("peerfb.waiting_many", "en", count=2, threshold=3) in shown
    assert "migration" not in shown and "计费" not in shown and "Raj" not in shown
    assert await chat.inbox(EMMA) == ""
    # the same person again is still two people
    assert t("peerfb.saved_anonymous_waiting", "en", name="Emma Smith", items="1 item", threshold=3) in (
        await chat.say(*ANONYMOUS[2])
    )
    assert t("peerfb.waiting_many", "en", count=3, threshold=3) in await chat.say(EMMA, "feedback")
    # the third person: Emma is told once, and sees every anonymous item, ordered by text, without names
    reply = await chat.say(*ANONYMOUS[3])
    assert t("peerfb.saved_anonymous_visible", "zh-CN", name="Emma Smith", items="1 条") in reply
    assert t("peerfb.notify_anonymous_ready", "en", threshold=3) in await chat.inbox(EMMA)
    shown = await chat.say(EMMA, "feedback")
    texts = [
        "Answering on-call pages within 5 minutes all week",
        "Zero-downtime migration plan for billing in sprint 14",
        "周二的计费演示讲得很清楚",
        "帮我排查了 CI 里不稳定的测试",
    ]
    positions = [shown.index(f"• {x}") for x in sorted(texts, key=lambda x: (x.casefold(), x))]
    assert positions == sorted(positions)
    assert "waiting" not in shown
    for name in ("Raj", "张伟", "韩梅梅", "From "):
        assert name not in shown
    # the manager chain and HR see the same; a peer sees nothing; a giver sees only their own
    for viewer, access in ((MANAGER, Access.MANAGER_CHAIN), (CEO, Access.MANAGER_CHAIN), (HR, Access.HR)):
        seen = await _seen_by(chat, viewer)
        assert seen.access is access and seen.allowed
        assert sorted(i.text for i in seen.anonymous) == sorted(texts) and seen.waiting == 0
    stranger = await _seen_by(chat, SARAH)
    assert stranger.access is Access.NONE and stranger.empty and stranger.text == ""
    raj = await _seen_by(chat, RAJ)
    assert raj.access is Access.GIVER and not raj.allowed
    assert sorted(i.text for i in raj.anonymous) == sorted([texts[0], texts[1]])
    assert all(i.mine for i in raj.anonymous)


async def test_below_the_threshold_the_manager_sees_only_the_waiting_count(chat: Chat) -> None:
    await chat.say(*ANONYMOUS[0])
    await chat.say(RAJ, "feedback @emma.smith Named: the 2.3 release notes were clear")
    seen = await _seen_by(chat, MANAGER, locale="zh-CN")
    assert seen.access is Access.MANAGER_CHAIN and seen.anonymous == () and seen.waiting == 1
    assert [p.giver for p in seen.named] == ["Raj Patel"]
    assert t("peerfb.waiting_one", "zh-CN", threshold=3) in seen.text
    assert "Raj Patel，2026-11-27：" in seen.text
    peer = await _seen_by(chat, ZHANG)
    assert peer.access is Access.NONE and peer.named == () and peer.anonymous == ()


async def test_feedback_given_shows_the_giver_what_they_gave(chat: Chat) -> None:
    assert t("peerfb.given_empty", "en") in await chat.say(RAJ, "feedback given")
    await chat.say(*ANONYMOUS[0])
    await chat.say(RAJ, "feedback @李雷 Thanks for the schema review on Monday")
    shown = await chat.say(RAJ, "feedback given")
    assert "To Emma Smith, 2026-11-27 (anonymous):" in shown and "To 李雷, 2026-11-27:" in shown
    assert "Zero-downtime migration plan" in shown


async def test_feedback_alone_with_nothing_received_is_help(chat: Chat) -> None:
    assert t("peerfb.help", "zh-CN") in await chat.say(LILEI, "反馈")
    assert t("peerfb.help", "en") in await chat.say(EMMA, "feedback help")


# ---- reading the command ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "mode", "anonymous", "rest"),
    [
        ("feedback @bob a; b", "give", False, "@bob a; b"),
        ("/cadence feedback --anon @bob a", "give", True, "@bob a"),
        ("反馈 匿名 @张三 很好", "give", True, "@张三 很好"),
        ("匿名反馈 @张三 很好", "give", True, "@张三 很好"),
        ("feedback ask --anonymous @a @b", "ask", True, "@a @b"),
        ("请求反馈 @甲 @乙", "ask", False, "@甲 @乙"),
        ("反馈 请求 @甲", "ask", False, "@甲"),
        ("feedback given", "given", False, ""),
        ("feedback", "give", False, ""),
    ],
)
def test_the_head_of_a_feedback_command(raw: str, mode: str, anonymous: bool, rest: str) -> None:
    head = _head(raw)
    assert (head.mode, head.anonymous) == (mode, anonymous)
    assert (raw[head.words[0][1] :] if head.words else "") == rest


@pytest.mark.parametrize(
    ("body", "items"),
    [
        ("a; b；c", ["a", "b", "c"]),
        ("- a; still a\n- b", ["a; still a", "b"]),
        ("1. -5% latency\n2) 3.5x faster", ["-5% latency", "3.5x faster"]),
        ("a;;  ; b;", ["a", "b"]),
        ("", []),
    ],
)
def test_items_are_lines_or_semicolon_separated(body: str, items: list[str]) -> None:
    assert split_items(body) == items


async def test_the_anonymous_flag_and_dashes_in_items_are_read_as_typed(chat: Chat) -> None:
    # free-text commands skip option parsing: "--anonymous" is the handler's flag, "—" stays text
    reply = await chat.say(
        RAJ, "feedback --anonymous @emma.smith Fixed the flaky CI job — saved the team an hour a day"
    )
    assert "Unknown option" not in reply
    ((giver, recipient, items, anonymous, _),) = await _feedback_rows(chat)
    assert (giver, recipient, anonymous) == (RAJ, EMMA, True)
    assert [item["text"] for item in items] == ["Fixed the flaky CI job — saved the team an hour a day"]
