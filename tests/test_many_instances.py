"""Many instances on one PostgreSQL: two ``cadence run`` processes fan out 500 prompts through the
Slack fake, the leader is SIGKILLed mid-way, and the other takes over: each prompt arrives exactly once.

Real processes on the wall clock (the planner, the leader election and the delivery leases all run
in them), so this test polls instead of moving a clock; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from bot.delivery import Delivery
from bot.platforms.slack import SlackPlatform
from bot.rate_limits import RateLimiter
from bot.settings import SlackSettings
from conversations.messages import Message
from conversations.org_service import import_org_file
from scheduler.calendars import WorkCalendar
from storage import outbox
from storage.advisory_lock import holder, lock_key
from storage.clock import set_clock
from storage.engine import Database
from tests.fakes.slack import PROXY_ENV_VARS, SlackFake
from tests.harness import Clock
from tests.slack_rig import APP_TOKEN, BOT_TOKEN

REPO = Path(__file__).resolve().parents[1]
PEOPLE = 500
MESSAGES_EACH = 1  # the opening: the intro with the first question
# the fake admits this many chat.postMessage a second (429 beyond): the fan-out takes seconds, so the
# kill lands in the middle of it
POSTS_PER_S = 150
KILL_AT = 250  # messages in Slack when the leader dies
LEASE_S = 3
# countries whose real calendars between them have a workday on every day of the week: the processes
# run on the wall clock, so the schedule must fire today, whatever day the test runs
COUNTRIES = ("", "IL", "IR", "NP", "AE")
LEADER_LINE = "became planner leader"
PLANNER_LOCK = "cadence-planner"  # scheduler.leader.Leadership's default name


def user_id(n: int) -> str:
    return f"UPERSON{n:03d}"


def email(n: int) -> str:
    return f"person{n:03d}@example.com"


def workday_country(today: datetime) -> str:
    """The first of ``COUNTRIES`` for which ``today`` is a workday."""
    for country in COUNTRIES:
        if WorkCalendar(country).is_workday(today.date()):
            return country
    pytest.skip(f"{today.date()} is a holiday in every calendar of {COUNTRIES}")


def org_yaml(country: str) -> str:
    place = f", country: {country}" if country else ""
    lines = ["people:"] + [
        f"  - {{email: {email(n)}, name: Person {n:03d}, timezone: UTC{place}, locale: en,"
        f" ids: {{slack: {user_id(n)}}}}}"
        for n in range(PEOPLE)
    ]
    return "\n".join(lines) + "\n"


def schedules_yaml(weekday: int) -> str:
    # today at 00:00 UTC has passed: the cycle opens and every prompt is due at the first tick
    return f"""
schedules:
  - ritual: weekly_recap
    when: weekday
    weekday: {weekday}
    at: "00:00"
    deadline_days: 3
    reminders: {{after_hours: 24, max: 0}}
"""


def process_env(db_url: str, fake: SlackFake, schedules: Path) -> dict[str, str]:
    """The machine's environment without any Cadence, chat or proxy setting, plus this test's."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.upper().startswith(("SLACK_", "FEISHU_", "DINGTALK_", "JIRA_", "SCHEDULER_", "QUIET_"))
        and name.upper()
        not in {
            "DATABASE_URL",
            "DEFAULT_LOCALE",
            "DEFAULT_TIMEZONE",
            "RITUALS_DIR",
            "HTTP_PROXY",
            "HTTPS_PROXY",
        }
    }
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        DATABASE_URL=db_url,
        DEFAULT_TIMEZONE="UTC",
        SLACK_ENABLED="true",
        SLACK_BOT_TOKEN=BOT_TOKEN,
        SLACK_APP_TOKEN=APP_TOKEN,
        SLACK_API_URL=fake.base_url,
        SLACK_PER_RECIPIENT_PER_S="",  # no pacing: the fake's limit is what slows the fan-out
        QUIET_ENABLED="false",
        SCHEDULER_FILE=str(schedules),
        SCHEDULER_TICK_SECONDS="1",
        SCHEDULER_LEADER_CHECK_SECONDS="0.5",
        DELIVERY_LEASE_SECONDS=str(LEASE_S),
        HTTP_PORT="0",
    )
    return env


class Instance:
    """One ``cadence -v run`` process, its output in a file."""

    def __init__(self, name: str, workdir: Path, env: dict[str, str]) -> None:
        self.name, self.env, self.workdir = name, env, workdir
        self.log = workdir / f"{name}.log"
        self.process: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        with self.log.open("wb") as out:  # the child keeps its own copy of the descriptor
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bot.cli",
                "-v",
                "run",
                cwd=self.workdir,  # no .env there
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
            )

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def leads(self) -> bool:
        return LEADER_LINE in self.output()

    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``; its exit code."""
        if self.process is None:
            return None
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), timeout=timeout)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        return self.process.returncode


async def until(condition: Callable[[], bool], *, within: float, what: str, alive: list[Instance]) -> float:
    """Poll ``condition`` every 20 ms; the seconds it took. Fails early if a process in ``alive`` died."""
    started = time.monotonic()
    while not condition():
        for instance in alive:
            assert instance.running(), (
                f"{instance.name} exited while waiting for {what}:\n{instance.output()}"
            )
        assert time.monotonic() - started < within, f"no {what} within {within} s"
        await asyncio.sleep(0.02)
    return time.monotonic() - started


async def scalar(db: Database, sql: str) -> int:
    async with db.engine.connect() as conn:
        value = (await conn.execute(text(sql))).scalar_one()
        await conn.rollback()
    return int(value)


async def outbox_statuses(db: Database) -> Counter[str]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(text("select status, count(*) from outbox group by status"))).all()
        await conn.rollback()
    return Counter({str(status): int(n) for status, n in rows})


async def test_sigkilled_leader_mid_fan_out_every_person_gets_one_prompt(db_url: str, tmp_path: Path) -> None:
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite is one process by design: several instances need PostgreSQL")
    today = datetime.now(UTC)
    if today + timedelta(minutes=2) >= datetime.combine(
        today.date() + timedelta(days=1), datetime.min.time(), UTC
    ):
        pytest.skip("too close to midnight UTC: the schedule's day would change during the run")
    country = workday_country(today)
    org = tmp_path / "org.yaml"
    org.write_text(org_yaml(country), encoding="utf-8")
    schedules = tmp_path / "schedules.yaml"
    schedules.write_text(schedules_yaml(today.weekday()), encoding="utf-8")

    fake = SlackFake(users={email(n): user_id(n) for n in range(PEOPLE)}, record_calls=False)
    fake.limit(per_s=POSTS_PER_S, per_channel_per_s=None)
    await fake.start()
    db = Database(db_url, pool_size=2)
    env = process_env(db_url, fake, schedules)
    first, second = Instance("a", tmp_path, env), Instance("b", tmp_path, env)
    timings: dict[str, float] = {}
    try:
        async with asyncio.timeout(90):
            began = time.monotonic()
            await first.start()
            timings["a_leads"] = await until(first.leads, within=30, what="leader A", alive=[first])
            await second.start()
            # B is up when its Socket Mode client is connected: its scheduler starts right after
            await until(
                lambda: fake.connections_accepted >= 2, within=30, what="B connected", alive=[first, second]
            )
            assert not second.leads()
            assert not fake.messages, "nothing is due before the org exists"

            # the org arrives with both processes running: A's next tick opens the cycle for 500 people
            fan_out = time.monotonic()
            await import_org_file(db, org)
            await until(
                lambda: len(fake.messages) >= KILL_AT, within=20, what=f"{KILL_AT} messages", alive=[first]
            )
            in_at_kill = len(fake.messages)
            assert in_at_kill < PEOPLE * MESSAGES_EACH, "the fan-out ended before the kill: slow it down"
            assert not second.leads()
            os.kill(first.pid, signal.SIGKILL)
            killed = time.monotonic()
            timings["kill"] = killed - fan_out
            assert first.process is not None
            assert await asyncio.wait_for(first.process.wait(), timeout=10) == -signal.SIGKILL

            timings["takeover"] = await until(second.leads, within=10, what="B leading", alive=[second])

            async def settled() -> bool:
                statuses = await outbox_statuses(db)
                return (
                    sum(statuses.values()) >= PEOPLE * MESSAGES_EACH
                    and statuses["pending"] + statuses["sending"] == 0
                )

            deadline = time.monotonic() + 60
            while not await settled():
                assert second.running(), f"B exited:\n{second.output()}"
                assert time.monotonic() < deadline, f"outbox not drained: {await outbox_statuses(db)}"
                await asyncio.sleep(0.1)
            timings["done_after_kill"] = time.monotonic() - killed
            timings["total"] = time.monotonic() - began

            statuses = await outbox_statuses(db)
            assert statuses == Counter({"sent": PEOPLE * MESSAGES_EACH}), statuses
            assert await scalar(db, "select count(*) from cycle") == 1
            assert await scalar(db, "select count(*) from assignment") == PEOPLE

            delivered = fake.delivered_keys()
            assert {key: n for key, n in delivered.items() if n != 1} == {}, "delivered more than once"
            assert len(delivered) == PEOPLE * MESSAGES_EACH
            assert len(fake.messages) == PEOPLE * MESSAGES_EACH
            for n in range(PEOPLE):
                messages = fake.messages_to(user_id(n))
                assert "Weekly recap" in str(messages[0]), messages
                assert len(messages) == MESSAGES_EACH, f"{email(n)} got {len(messages)} messages"

            # the survivor holds the planner's lock (A's session died with its process)
            async with db.engine.connect() as conn:
                assert await holder(conn, key=lock_key(PLANNER_LOCK)) is not None
                await conn.rollback()
            assert "Traceback" not in second.output(), second.output()
            print(
                f"\nleader A after {timings['a_leads']:.2f} s; SIGKILL {timings['kill']:.2f} s"
                f" into the fan-out with {in_at_kill}/{PEOPLE * MESSAGES_EACH} messages in; B led"
                f" {timings['takeover']:.2f} s later; all sent {timings['done_after_kill']:.2f} s after the"
                f" kill; {fake.call_counts['conversations.history']} in-doubt checks,"
                f" {fake.http_429} 429s; total {timings['total']:.2f} s"
            )
    finally:
        for instance in (first, second):
            await instance.stop()
        await db.dispose()
        await fake.stop()


class _Gate:
    """The rate limiter's sleep, held shut: the sender waits for its turn until the test opens it."""

    def __init__(self) -> None:
        self.waiting, self.open = asyncio.Event(), asyncio.Event()

    async def sleep(self, seconds: float) -> None:
        self.waiting.set()
        await self.open.wait()


async def test_rows_queued_past_their_lease_are_not_sent_by_two_workers(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two instances' delivery workers on one PostgreSQL, with a controllable clock.

    The first claims three rows (one lease for the batch) and sends the first; the others wait for
    their turn under ``SLACK_RATE_PER_S``. Their lease runs out while they wait, so the second worker
    takes them over as in doubt, asks Slack (nothing there yet) and sends them. When the first one's
    turn comes it finds its claim gone and sends nothing: each message is in Slack once.
    """
    if db_url.startswith("sqlite"):
        pytest.skip("SQLite is one process by design: several instances need PostgreSQL")
    for name in PROXY_ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    clock = Clock(datetime(2026, 11, 27, 8, 0, tzinfo=UTC))
    set_clock(clock)
    users = {email(n): user_id(n) for n in range(3)}
    db = Database(db_url, pool_size=2)
    gate = _Gate()
    try:
        async with SlackFake(users=users) as fake:
            settings = SlackSettings(
                enabled=True, bot_token=BOT_TOKEN, app_token=APP_TOKEN, api_url=fake.base_url
            )
            lease = timedelta(seconds=60)
            paced = RateLimiter(
                per_platform={"slack": 1.0},  # one send a second
                per_recipient={},
                clock=lambda: clock.now.timestamp(),
                sleep=gate.sleep,
            )
            first = Delivery(
                db, {"slack": SlackPlatform(settings)}, limiter=paced, concurrency=1, lease=lease
            )
            second = Delivery(db, {"slack": SlackPlatform(settings)}, concurrency=1, lease=lease)
            async with db.sessions() as session, session.begin():
                await outbox.enqueue(
                    session,
                    rows=[
                        {
                            "idempotency_key": f"k{n}",
                            "recipient": user_id(n),
                            "platform": "slack",
                            "kind": "text",
                            "payload": Message(text=f"message {n}").model_dump(mode="json"),
                        }
                        for n in range(3)
                    ],
                )
            sending = asyncio.create_task(first.drain_once())
            try:
                async with asyncio.timeout(20):
                    await gate.waiting.wait()  # k0 is sent; k1 and k2 wait for their turn
                    assert fake.delivered_keys() == Counter({"k0": 1})
                    clock.advance(seconds=lease.total_seconds() + 1)  # their turn is late: the lease ran out
                    assert await second.drain() == 2  # taken over in doubt, not found in Slack, sent
                    gate.open.set()
                    await sending
            finally:
                sending.cancel()
                await asyncio.gather(sending, return_exceptions=True)
            assert fake.delivered_keys() == Counter({"k0": 1, "k1": 1, "k2": 1})
    finally:
        set_clock(None)
        await db.dispose()
