"""HR's monthly quality sample of 1:1 records: a seeded, reproducible draw of 10 %, the cards it sends,
scoring them by click or by typing, the comment, a second click, a non-HR click, re-runs and the
scheduler's first-workday job, on each database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from conversations import quality_sampling
from conversations.messages import Action
from conversations.quality_sampling import monthly_sampling_due, run_monthly, sample
from storage.engine import Database
from storage.models import ActionItem, FeedbackItem, OneOnOne, Person
from storage.people import PersonRow
from storage.quality_reviews import RecordedOneOnOne
from tests.harness import EMMA, HR, LILEI, MANAGER, Chat

LUCY = "lucy.chen@example.com"  # the other HR admin of the sample org (English)
PRODUCT_MANAGER = "michael.brown@example.com"  # Los Angeles
ENGINEERS = (LILEI, EMMA, "zhang.wei@example.com", "han.meimei@example.com", "raj.patel@example.com")
PRODUCT = (
    "sarah.johnson@example.com",
    "xu.jing@example.com",
    "liu.yang@example.com",
    "david.lee@example.com",
)


# ---- the draw ----------------------------------------------------------------------------------------


def test_same_seed_and_month_draw_the_same_records_whatever_the_order() -> None:
    records = list(range(1, 51))
    first = sample(records, month="2026-10", seed=42)
    assert first == sample(list(reversed(records)), month="2026-10", seed=42)
    assert first == sample(records + records[:10], month="2026-10", seed=42)  # duplicates count once
    # pinned: an auditor redrawing October's sample with seed 42 gets these; a Python whose random
    # module draws differently would fail here rather than silently change past samples
    assert first == [5, 15, 22, 27, 39]


def test_another_seed_or_month_draws_other_records() -> None:
    records = list(range(1, 51))
    october = sample(records, month="2026-10", seed=42)
    assert sample(records, month="2026-10", seed=43) != october
    assert sample(records, month="2026-11", seed=42) != october


def test_the_share_rounds_up_and_draws_at_least_one() -> None:
    assert len(sample(list(range(1, 51)), month="2026-10", seed=1)) == 5  # 10 % of 50
    assert len(sample(list(range(1, 31)), month="2026-10", seed=1)) == 3  # 0.1 * 30 is 3.0000000000000004
    assert len(sample(list(range(1, 16)), month="2026-10", seed=1)) == 2  # 1.5 rounds up
    assert sample([9], month="2026-10", seed=1) == [9]  # fewer than 10: still one
    assert sample([], month="2026-10", seed=1) == []
    assert len(sample(list(range(1, 51)), month="2026-10", share=0.25, seed=1)) == 13
    assert sample([3, 1, 2], month="2026-10", share=1.0, seed=1) == [1, 2, 3]
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            sample([1], month="2026-10", share=bad, seed=1)


def test_the_first_workday_of_a_month() -> None:
    # November 2026 starts on a Sunday; February 2026 on a Sunday; a calendar can move it further
    assert quality_sampling.first_workday(datetime(2026, 11, 20).date()).isoformat() == "2026-11-02"
    assert quality_sampling.first_workday(datetime(2026, 10, 20).date()).isoformat() == "2026-10-01"
    holiday = datetime(2026, 10, 1).date()
    first = quality_sampling.first_workday(holiday, lambda d: d.weekday() < 5 and d.day > 7)
    assert first.isoformat() == "2026-10-08"
    assert quality_sampling.previous_month(datetime(2026, 1, 5).date()) == "2025-12"


def test_round_robin_passes_over_a_reviewer_who_was_in_the_meeting() -> None:
    hr = [PersonRow(i, f"hr{i}@example.com", f"HR {i}", "en", "UTC", frozenset({"hr"})) for i in (1, 2, 3)]
    record = RecordedOneOnOne(
        10, manager_id=2, report_id=5, recorded_at=datetime.now(UTC), manager_timezone="UTC"
    )
    assert [quality_sampling._reviewer_for(i, record, hr).id for i in range(4)] == [1, 3, 3, 1]
    alone = RecordedOneOnOne(
        11, manager_id=1, report_id=5, recorded_at=datetime.now(UTC), manager_timezone="UTC"
    )
    assert quality_sampling._reviewer_for(0, alone, hr[:1]).id == 1  # nobody else: the only one reviews


# ---- the month's records, in the database ---------------------------------------------------------------


async def _ids(db: Database, *emails: str) -> dict[str, int]:
    async with db.sessions() as session:
        rows = (await session.execute(Person.__table__.select())).mappings().all()  # type: ignore[attr-defined]
    return {r["email"]: r["id"] for r in rows if r["email"] in emails}


async def make_records(db: Database) -> list[int]:
    """50 1:1 records of October 2026 (and one of November), each with items and an action item.

    49 are mid-October; one by the Los Angeles manager at 20:00 on 31 October (already 1 November in
    UTC) is October's too; one by the Shanghai manager at 01:00 on 1 November (still 31 October in UTC)
    is November's. Returns October's ids.
    """
    people = await _ids(db, MANAGER, PRODUCT_MANAGER, *ENGINEERS, *PRODUCT)
    pairs = [(MANAGER, e) for e in ENGINEERS] + [(PRODUCT_MANAGER, p) for p in PRODUCT]
    start = datetime(2026, 10, 5, 4, 0, tzinfo=UTC)
    moments = [(pairs[i % len(pairs)], start + timedelta(hours=7 * i)) for i in range(49)]
    moments.append(((PRODUCT_MANAGER, PRODUCT[0]), datetime(2026, 11, 1, 3, 0, tzinfo=UTC)))
    moments.append(((MANAGER, LILEI), datetime(2026, 10, 31, 17, 0, tzinfo=UTC)))
    october: list[int] = []
    async with db.sessions() as session, session.begin():
        for n, ((manager, report), at) in enumerate(moments):
            record = OneOnOne(
                manager_id=people[manager],
                report_id=people[report],
                scheduled_at=at - timedelta(hours=1),
                recorded_at=at,
            )
            session.add(record)
            await session.flush()
            assert record.id is not None
            session.add(
                FeedbackItem(
                    one_on_one_id=record.id, kind="strength", text=f"Shipped PAY-{n} early", specific=True
                )
            )
            session.add(
                FeedbackItem(one_on_one_id=record.id, kind="improvement", text="继续努力", specific=False)
            )
            session.add(
                ActionItem(
                    one_on_one_id=record.id,
                    report_id=people[report],
                    owner_id=people[report],
                    text=f"Write the runbook for PAY-{n}",
                    due_on=(at + timedelta(days=14)).date(),
                )
            )
            if n != 49:  # the last one is November's
                october.append(record.id)
    return october


@pytest.fixture
async def sampled(chat: Chat) -> AsyncIterator[tuple[Chat, list[int]]]:
    """The sample org with October's 50 records, sampled with seed 7."""
    assert chat.app is not None
    october = await make_records(chat.app.db)
    yield chat, october


async def test_the_sample_is_reproducible_and_a_re_run_adds_nothing(sampled: tuple[Chat, list[int]]) -> None:
    chat, october = sampled
    assert chat.app is not None
    result = await run_monthly(chat.app.db, month="2026-10", seed=7, platform="console")
    assert result.records == 50
    assert list(result.sampled) == sample(october, month="2026-10", seed=7)
    assert len(result.sampled) == 5 and result.created == 5 and result.reviewers == 2
    rows = await chat.rows(
        "select one_on_one_id, month, seed, score from qualityreview order by one_on_one_id"
    )
    assert rows == [(r, "2026-10", 7, None) for r in result.sampled]
    # round-robin over the two HR admins, in the order of the records
    reviewers = await chat.rows(
        "select p.email from qualityreview q join person p on p.id = q.reviewer_id order by q.one_on_one_id"
    )
    assert [r for (r,) in reviewers] == [HR, LUCY, HR, LUCY, HR]
    assert await chat.scalar("select count(*) from outbox where kind = 'quality_review'") == 5

    again = await run_monthly(chat.app.db, month="2026-10", seed=7, platform="console")
    assert again.created == 0 and list(again.sampled) == list(result.sampled)
    # even with another seed: the month is drawn once
    other = await run_monthly(chat.app.db, month="2026-10", seed=8, platform="console")
    assert other.created == 0 and list(other.sampled) == list(result.sampled)
    assert await chat.scalar("select count(*) from qualityreview") == 5
    assert await chat.scalar("select count(*) from outbox where kind = 'quality_review'") == 5
    audit = await chat.rows("select action from auditlog where action = 'quality.sample'")
    assert len(audit) == 1


async def test_the_scheduler_draws_last_month_from_the_first_workday(sampled: tuple[Chat, list[int]]) -> None:
    chat, october = sampled
    assert chat.app is not None
    db = chat.app.db
    due = {"seed": 7, "company_timezone": "Asia/Shanghai", "platform": "console"}
    sunday = datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai, a Sunday
    assert await monthly_sampling_due(db, sunday, **due) is None  # type: ignore[arg-type]
    assert await chat.scalar("select count(*) from qualityreview") == 0
    monday = datetime(2026, 11, 2, 1, 0, tzinfo=UTC)
    result = await monthly_sampling_due(db, monday, **due)  # type: ignore[arg-type]
    assert result is not None and result.month == "2026-10"
    assert list(result.sampled) == sample(october, month="2026-10", seed=7)
    assert await monthly_sampling_due(db, monday + timedelta(hours=1), **due) is None  # type: ignore[arg-type]
    assert await monthly_sampling_due(db, monday + timedelta(days=10), **due) is None  # type: ignore[arg-type]
    assert await chat.scalar("select count(*) from qualityreview") == 5


async def _review_of(chat: Chat, email: str) -> list[int]:
    rows = await chat.rows(
        "select q.id from qualityreview q join person p on p.id = q.reviewer_id "
        "where p.email = :email order by q.id",
        email=email,
    )
    return [r for (r,) in rows]


async def test_hr_scores_a_card_then_comments_and_a_second_click_changes_nothing(
    sampled: tuple[Chat, list[int]],
) -> None:
    chat, _ = sampled
    assert chat.app is not None
    await run_monthly(chat.app.db, month="2026-10", seed=7, platform="console")
    inbox = await chat.inbox(HR)
    assert inbox.count("【质量抽检：") == 3
    assert "Shipped PAY-" in inbox and "优势 · 具体" in inbox and "待改进 · 笼统: 继续努力" in inbox
    assert "行动项 · " in inbox and "Write the runbook for PAY-" in inbox and "截止 2026-" in inbox
    buttons = chat.last_buttons(HR)
    assert [label for label, _ in buttons] == ["1 · 差", "2 · 较弱", "3 · 一般", "4 · 良好", "5 · 优秀"]
    four = buttons[3][1]
    review_id = Action.decode(four).assignment_id  # type: ignore[union-attr]
    assert f"#{review_id} 4 你的评语" in inbox

    reply = await chat.click(HR, four)
    assert "已保存" in reply and "得分 4/5" in reply and "请回复一句评语" in reply
    assert "评分: 4/5 · 赵敏" in reply  # the card, updated in place
    stored = await chat.rows(
        "select score, comment, scored_at from qualityreview where id = :id", id=review_id
    )
    assert stored[0][0] == 4 and stored[0][1] is None and stored[0][2] is not None

    await chat.dialogue(HR, [("例子具体，行动项有负责人和截止日期", "已保存对")])
    comment = await chat.scalar("select comment from qualityreview where id = :id", id=review_id)
    assert comment == "例子具体，行动项有负责人和截止日期"

    again = await chat.click(HR, buttons[0][1])
    assert "这条记录已经打过分：赵敏 打了 4/5" in again
    assert await chat.scalar("select score from qualityreview where id = :id", id=review_id) == 4

    # two cards still wait: a bare score is ambiguous, so it asks which
    waiting = await chat.say(HR, "3")
    assert "你有 2 条记录等待打分" in waiting
    assert await chat.scalar("select count(*) from qualityreview where score is not null") == 1
    actions = [a for (a,) in await chat.rows("select action from auditlog order by id")]
    assert "quality.score" in actions and "quality.comment" in actions


async def test_a_typed_score_with_a_comment_and_a_skipped_comment(sampled: tuple[Chat, list[int]]) -> None:
    chat, _ = sampled
    assert chat.app is not None
    await run_monthly(chat.app.db, month="2026-10", seed=7, platform="console")
    first, second = await _review_of(chat, LUCY)
    await chat.dialogue(
        LUCY,
        [
            (f"#{first} 5 Concrete examples, owners and dates", "Saved: 5/5 with your comment"),
            (f"#{second} 9", "Scores go from 1 to 5"),
            # the one card left: a bare score is enough
            ("2", "Saved: 2/5"),
            ("skip", "No comment, then. The score stays 2/5."),
            ("#99999 3", "There is no quality review #99999."),
        ],
    )
    rows = await chat.rows(
        "select id, score, comment from qualityreview where id in (:a, :b) order by id", a=first, b=second
    )
    assert rows == [(first, 5, "Concrete examples, owners and dates"), (second, 2, "")]


async def test_someone_not_in_hr_cannot_score(sampled: tuple[Chat, list[int]]) -> None:
    chat, _ = sampled
    assert chat.app is not None
    await run_monthly(chat.app.db, month="2026-10", seed=7, platform="console")
    await chat.inbox(HR)
    _, value = chat.last_buttons(HR)[4]
    for email, expected in ((EMMA, "Only HR admins score"), (MANAGER, "只有 HR 管理员")):
        reply = await chat.click(email, value)
        assert expected in reply, reply
    assert await chat.scalar("select count(*) from qualityreview where score is not null") == 0
    refused = await chat.rows("select actor_id from auditlog where action = 'quality.score.refused'")
    assert len(refused) == 2
    # and typed scores from them are not taken either: they are not commands, and say so
    reply = await chat.say(EMMA, "#1 5 great")
    assert "Saved" not in reply
    assert await chat.scalar("select count(*) from qualityreview where score is not null") == 0


async def test_hr_who_took_part_in_the_meeting_cannot_score_it(sampled: tuple[Chat, list[int]]) -> None:
    chat, _ = sampled
    assert chat.app is not None
    await run_monthly(chat.app.db, month="2026-10", seed=7, platform="console")
    # the engineering manager is an HR admin too; one of the sampled records is her own 1:1
    async with chat.app.db.engine.begin() as conn:
        await conn.execute(text("update person set roles = 'manager,hr' where email = :e"), {"e": MANAGER})
    [(review_id,)] = await chat.rows(
        "select q.id from qualityreview q join oneonone o on o.id = q.one_on_one_id "
        "join person p on p.id = o.manager_id where p.email = :e order by q.id limit 1",
        e=MANAGER,
    )

    reply = await chat.say(MANAGER, f"#{review_id} 5 great")

    assert "你参与了这次一对一" in reply
    assert await chat.scalar("select score from qualityreview where id = :id", id=review_id) is None
    assert await chat.scalar("select count(*) from auditlog where action = 'quality.score.refused'") == 1
