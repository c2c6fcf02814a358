"""``cadence outbox failed`` and ``cadence outbox retry`` as an operator uses them, on each database:
the dead letters as a table, re-queueing by id or all, refusals, unknown and not-dead ids, the audit
row of every retry, and a message a real App could not deliver arriving once it is re-queued."""

from __future__ import annotations

import asyncio
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlmodel import col, select

from bot import settings as settings_module
from bot.app import App
from bot.cli import main
from bot.platforms.base import SendError
from conversations.i18n import t
from conversations.org_service import import_org_file
from storage import audit, outbox
from storage.dead_letters import count_by_status, list_dead, requeue
from storage.engine import Database
from storage.models import AuditLog, Outbox, Person
from tests.cli_env import isolate
from tests.harness import HR, SAMPLE_ORG
from tests.harness import test_settings as settings_for
from tests.test_outbox_delivery import FakePlatform


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No settings from the machine or a .env; settings read afresh by each command."""
    isolate(monkeypatch, tmp_path)
    yield tmp_path
    settings_module.get_settings.cache_clear()


def width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def cadence(*args: str, url: str, locale: str = "en") -> Result:
    settings_module.get_settings.cache_clear()
    return CliRunner().invoke(main, ["outbox", *args], env={"DATABASE_URL": url, "DEFAULT_LOCALE": locale})


async def _seed(url: str) -> dict[str, int]:
    """Two dead rows (one to a person, one to a bare recipient), one pending, one sent; their ids by key."""
    database = Database(url, pool_size=1)
    try:
        async with database.sessions() as session, session.begin():
            person = Person(email="li.lei@example.com", name="李雷")
            session.add(person)
            await session.flush()
            row: dict[str, Any] = {"platform": "slack", "kind": "prompt", "payload": {}}
            await outbox.enqueue(
                session,
                rows=[
                    {**row, "idempotency_key": "prompt:1:1:what_went_well", "person_id": person.id},
                    {**row, "idempotency_key": "reply:evt-9:r1", "recipient": "U999", "kind": "reply"},
                    {**row, "idempotency_key": "prompt:1:2:blockers", "person_id": person.id},
                    {**row, "idempotency_key": "prompt:1:3:blockers", "person_id": person.id},
                ],
            )
            ids = {
                key: i
                for key, i in (
                    await session.execute(select(col(Outbox.idempotency_key), col(Outbox.id)))
                ).all()
            }
            for _ in range(3):
                await outbox.mark(
                    session, outbox_id=ids["prompt:1:1:what_went_well"], status="pending", error="ratelimited"
                )
            await outbox.mark(
                session, outbox_id=ids["prompt:1:1:what_went_well"], status="dead", error="user_not_found"
            )
            await outbox.mark(
                session,
                outbox_id=ids["reply:evt-9:r1"],
                status="dead",
                error="channel_not_found\nsecond line",
            )
            await outbox.mark(
                session, outbox_id=ids["prompt:1:3:blockers"], status="sent", platform_message_id="m1"
            )
        return ids
    finally:
        await database.dispose()


def seed(url: str) -> dict[str, int]:
    return asyncio.run(_seed(url))


async def _rows(url: str) -> tuple[dict[str, Outbox], list[AuditLog]]:
    database = Database(url, pool_size=1)
    try:
        async with database.sessions() as session:
            rows = {r.idempotency_key: r for r in (await session.execute(select(Outbox))).scalars()}
            return rows, await audit.entries(session, action="outbox.retry")
    finally:
        await database.dispose()


def rows(url: str) -> tuple[dict[str, Outbox], list[AuditLog]]:
    return asyncio.run(_rows(url))


def test_failed_lists_only_dead_messages_as_a_table(db_url: str) -> None:
    ids = seed(db_url)

    result = cadence("failed", url=db_url)

    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == t("outbox.failed_title", "en", total=2, shown=2)
    header = lines[2]
    for key in ("col_id", "col_platform", "col_kind", "col_person", "col_attempts", "col_key", "col_error"):
        assert t(f"outbox.{key}", "en") in header
    first = next(line for line in lines if "prompt:1:1:what_went_well" in line)
    assert first.startswith(f"{ids['prompt:1:1:what_went_well']} ")
    assert "李雷 <li.lei@example.com>" in first
    assert first.split()[1:3] == ["slack", "prompt"]
    assert " 4 " in first  # three retries, then dead
    assert first.endswith("user_not_found")
    second = next(line for line in lines if "reply:evt-9:r1" in line)
    assert "U999" in second
    assert second.endswith("channel_not_found second line")
    assert "blockers" not in result.output  # the pending and the sent row are not dead
    assert lines[-1] == t("outbox.failed_hint", "en")
    # columns line up under their headers, CJK names counting two columns each
    key_column = width(header[: header.index(t("outbox.col_key", "en"))])
    assert width(first[: first.index("prompt:1:1")]) == key_column
    assert width(second[: second.index("reply:evt-9")]) == key_column


def test_failed_speaks_the_default_locale_and_says_when_there_is_nothing(db_url: str) -> None:
    empty = cadence("failed", url=db_url, locale="zh-CN")
    assert empty.exit_code == 0, empty.output
    assert empty.output.strip() == t("outbox.failed_none", "zh-CN")

    seed(db_url)
    listed = cadence("failed", url=db_url, locale="zh-CN")
    assert listed.exit_code == 0, listed.output
    assert t("outbox.col_error", "zh-CN") in listed.output
    assert t("outbox.col_attempts", "zh-CN") in listed.output


def test_failed_limit_shows_the_oldest_and_the_total(db_url: str) -> None:
    seed(db_url)
    result = cadence("failed", "--limit", "1", url=db_url)
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0] == t("outbox.failed_title", "en", total=2, shown=1)
    assert "prompt:1:1:what_went_well" in result.output
    assert "reply:evt-9:r1" not in result.output


def test_retry_refuses_without_ids_or_all_and_with_both(db_url: str) -> None:
    ids = seed(db_url)

    neither = cadence("retry", url=db_url)
    both = cadence("retry", str(ids["reply:evt-9:r1"]), "--all", url=db_url)

    assert neither.exit_code == 2
    assert t("outbox.retry_needs_ids", "en") in neither.stderr
    assert both.exit_code == 2
    assert t("outbox.retry_ids_and_all", "en") in both.stderr
    stored, audited = rows(db_url)
    assert [k for k, r in stored.items() if r.status == "dead"] == [
        "prompt:1:1:what_went_well",
        "reply:evt-9:r1",
    ]
    assert audited == []


def test_retry_by_id_requeues_dead_rows_and_reports_the_rest(db_url: str) -> None:
    ids = seed(db_url)
    dead, sent = ids["prompt:1:1:what_went_well"], ids["prompt:1:3:blockers"]
    before = datetime.now(UTC)

    result = cadence("retry", str(dead), str(sent), "424242", str(dead), url=db_url)

    assert result.exit_code == 1
    assert result.stdout.strip() == t("outbox.retry_done", "en", count=1, ids=str(dead))
    assert t("outbox.retry_unknown", "en", ids="424242") in result.stderr
    sent_text = t("outbox.status_sent", "en")
    assert t("outbox.retry_not_dead", "en", items=f"{sent} ({sent_text})") in result.stderr
    stored, audited = rows(db_url)
    again = stored["prompt:1:1:what_went_well"]
    assert (again.status, again.attempts, again.last_error) == ("pending", 0, "user_not_found")
    due = again.due_at if again.due_at.tzinfo else again.due_at.replace(tzinfo=UTC)
    assert before - timedelta(seconds=1) <= due <= datetime.now(UTC)
    assert stored["reply:evt-9:r1"].status == "dead"
    assert (stored["prompt:1:3:blockers"].status, stored["prompt:1:3:blockers"].attempts) == ("sent", 1)
    assert len(audited) == 1
    assert audited[0].actor_id is None
    assert audited[0].detail == {"ids": [dead], "all": False, "unknown": [424242], "not_dead": [sent]}


def test_retry_all_requeues_every_dead_row_once(db_url: str) -> None:
    ids = seed(db_url)
    dead = sorted([ids["prompt:1:1:what_went_well"], ids["reply:evt-9:r1"]])

    first = cadence("retry", "--all", url=db_url, locale="zh-CN")
    second = cadence("retry", "--all", url=db_url)

    assert first.exit_code == 0, first.output
    assert first.output.strip() == t(
        "outbox.retry_done", "zh-CN", count=2, ids=", ".join(str(i) for i in dead)
    )
    assert second.exit_code == 0, second.output
    assert second.output.strip() == t("outbox.retry_nothing", "en")
    stored, audited = rows(db_url)
    assert {k: r.status for k, r in stored.items()} == {
        "prompt:1:1:what_went_well": "pending",
        "reply:evt-9:r1": "pending",
        "prompt:1:2:blockers": "pending",
        "prompt:1:3:blockers": "sent",
    }
    assert [a.detail for a in audited] == [
        {"ids": dead, "all": True, "unknown": [], "not_dead": []},
        {"ids": [], "all": True, "unknown": [], "not_dead": []},
    ]


def test_retry_rejects_ids_that_are_not_numbers(db_url: str) -> None:
    result = cadence("retry", "abc", url=db_url)
    assert result.exit_code == 2
    assert "abc" in result.stderr


async def _storage_functions(url: str) -> None:
    database = Database(url, pool_size=1)
    try:
        async with database.sessions() as session, session.begin():
            dead = await list_dead(session)
            assert [r.key for r in dead] == ["prompt:1:1:what_went_well", "reply:evt-9:r1"]
            assert (dead[0].person_email, dead[0].person_name, dead[0].recipient) == (
                "li.lei@example.com",
                "李雷",
                None,
            )
            assert (dead[1].person_email, dead[1].recipient) == (None, "U999")
            assert await count_by_status(session) == {"pending": 1, "sending": 0, "dead": 2}
            assert await requeue(session, ids=[]) == 0
            assert await requeue(session, ids=[dead[1].id, 999]) == 1
            assert await requeue(session, ids=None) == 1
            assert await requeue(session, ids=None) == 0
            assert await count_by_status(session, statuses=["dead", "pending", "sent"]) == {
                "dead": 0,
                "pending": 3,
                "sent": 1,
            }
    finally:
        await database.dispose()


def test_storage_functions_list_count_and_requeue(db_url: str) -> None:
    seed(db_url)
    asyncio.run(_storage_functions(url=db_url))


async def _deliver(url: str, platform: FakePlatform, *, say: str | None = None) -> None:
    app = App(settings_for(url), platforms={"console": platform})
    await app.start()
    try:
        if say is not None:
            await import_org_file(app.db, SAMPLE_ORG)
            await platform.say(HR, say)
        await app.delivery.drain()
    finally:
        await app.stop()


def test_a_message_the_platform_refused_is_delivered_once_after_retry(db_url: str) -> None:
    refusing = FakePlatform(fail_always=SendError("user_not_found", permanent=True))
    asyncio.run(_deliver(db_url, refusing, say="帮助"))
    assert len(refusing.attempts) == 1 and refusing.calls == []

    listed = cadence("failed", url=db_url)
    assert listed.exit_code == 0, listed.output
    assert "user_not_found" in listed.output
    stored, _ = rows(db_url)
    [dead] = [r for r in stored.values() if r.status == "dead"]
    assert dead.platform == "console"

    retried = cadence("retry", str(dead.id), url=db_url)
    assert retried.exit_code == 0, retried.output

    working = FakePlatform()
    asyncio.run(_deliver(db_url, working))
    asyncio.run(_deliver(db_url, working))  # a second process start sends nothing more
    assert [c.key for c in working.calls] == [dead.idempotency_key]
    assert working.calls[0].recipient == HR
    stored, _ = rows(db_url)
    assert (stored[dead.idempotency_key].status, stored[dead.idempotency_key].attempts) == ("sent", 1)
    assert cadence("failed", url=db_url).output.strip() == t("outbox.failed_none", "en")
