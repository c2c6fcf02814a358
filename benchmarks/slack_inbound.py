"""Benchmark the Slack inbound path: clicks and replies through Socket Mode, acknowledged and processed.

Run as ``python benchmarks/slack_inbound.py``. It prints one JSON line::

    {"benchmark": "slack_inbound", "events": 1000, "ack_p50_ms": ..., "ack_p99_ms": ...,
     "events_per_s": ..., "db": "sqlite", "peak_rss_mb": ..., ...}

One process holds both sides, as the end-to-end tests do: the Slack fake (``tests/fakes/slack.py``:
Web API and a Socket Mode WebSocket on 127.0.0.1) and Cadence (``App`` with the real slack-bolt
Socket Mode handler, its delivery worker running as ``cadence run`` runs it), on a fresh SQLite file
in a temporary folder (or ``--db postgresql``: the database at ``--postgres-url``, whose public schema
the benchmark drops and recreates, under the same advisory lock as ``benchmarks/engine.py``).

Setup (not timed): a generated org of ``--people`` people (whose emails the fake knows) is imported;
the HR admin sends ``/cadence cycle start weekly`` as a ``slash_commands`` envelope, and everyone's
first question is delivered to their DM.

Timed phase: ``--events`` envelopes (1,000 by default, five per person), at most ``--concurrency``
in flight at once. Each person answers the weekly recap in order, as in Slack: a text reply
(``events_api`` message), a click on a rating button of their newest DM (``interactive``
block_actions carrying that button's value), two text replies, a click on "No". An event is in
flight from the moment its envelope is sent until Cadence has processed it and posted the person's
next question, so a click always carries the button of the message it was sent after.

Measured: each envelope's acknowledgement latency as the fake saw it (``SlackFake.ack_latency``:
from the frame being sent to the ack frame arriving) and throughput, events fully processed per
second (timed until the journal shows every event processed). Checked afterwards: every envelope
acknowledged once, every event journaled once and processed without error, one stored answer per
event. A wrong count adds an ``error`` field and makes the exit code non-zero.

Both sides share one event loop (and ``peak_rss_mb`` covers both): the acknowledgement latency
includes waiting behind whatever else the loop is doing at that moment, fake included.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import csv
import json
import logging
import math
import os
import resource
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# run as a script: make the project importable without relying on an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text

from bot.app import App, platforms_from
from bot.settings import (
    DingtalkSettings,
    FeishuSettings,
    JiraSettings,
    QuietSettings,
    Settings,
    SlackSettings,
)
from conversations.org_service import import_org_file
from storage.engine import Database
from tests.bench_support import Unreachable, ensure_database, on_a_workday_morning, owning
from tests.fakes.slack import PROXY_ENV_VARS, SlackFake

DEFAULT_POSTGRES_URL = os.environ.get(
    "CADENCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/cadence_bench"
)
BOT_TOKEN = "xoxb-2718281828-3141592653-BenchBenchBenchBench0001"
APP_TOKEN = "xapp-1-A0CADENCE-1618033988-BenchBenchBenchBench0002"
PER_PERSON = 5  # the weekly recap's five steps; the "submit" click is left out (it posts nothing new)
WAIT = 60.0  # seconds one event may take before the run is declared stuck

ORG_COLUMNS = (
    "email",
    "name",
    "manager_email",
    "department",
    "title",
    "timezone",
    "country",
    "locale",
    "roles",
)

log = logging.getLogger("benchmarks.slack_inbound")


class BenchmarkError(RuntimeError):
    """The run finished (or stalled) but Cadence did not do what it should."""


# --- the org (as benchmarks/engine.py generates it) --------------------------------------------


def write_org(path: Path, people: int) -> tuple[str, list[str]]:
    """A CSV org: one HR admin, ~5% managers, the rest employees; returns HR's and everyone's emails."""
    managers = max(1, min(50, (people - 1) // 20))
    head = "manager00000@bench.example.com"
    rows = [("hr", 0, head, "People")]
    rows += [("manager", m, "" if m == 0 else head, f"Dept {m:02d}") for m in range(managers)]
    rows += [
        ("employee", e, f"manager{e % managers:05d}@bench.example.com", f"Dept {e % managers:02d}")
        for e in range(people - 1 - managers)
    ]
    emails = [f"{role}{i:05d}@bench.example.com" for role, i, _, _ in rows]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(ORG_COLUMNS)
        for email, (role, i, manager, department) in zip(emails, rows, strict=True):
            chinese = i % 2 == 0
            writer.writerow(
                [
                    email,
                    f"测试{role}{i}" if chinese else f"Bench {role.title()} {i}",
                    manager,
                    department,
                    role,
                    "Asia/Shanghai" if chinese else "America/Los_Angeles",
                    "CN" if chinese else "US",
                    "zh-CN" if chinese else "en",
                    {"hr": "hr", "manager": "manager"}.get(role, ""),
                ]
            )
    return emails[0], emails


# --- a PostgreSQL database the benchmark owns (as benchmarks/engine.py does) -------------------


@dataclass(frozen=True)
class Step:
    """One thing a person does: type ``text``, or click the button worth ``value`` of step ``step``."""

    kind: str  # "text" or "click"
    text: str = ""
    step: str = ""
    value: str = ""


def script(index: int) -> list[Step]:
    """What person ``index`` does, in order: the whole weekly recap but the final "submit"."""
    return [
        Step("text", text=f"Shipped feature {index}\nFixed bug {index}"),  # wins
        Step("click", step="week_rating", value=str(index % 5 + 1)),  # week_rating
        Step("text", text=f"Waiting on review {index}"),  # blockers
        Step("text", text=f"Plan Q{index % 4 + 1}"),  # next_week
        Step("click", step="discuss_in_one_on_one", value="no"),  # discuss_in_one_on_one
    ]


class BenchFake(SlackFake):
    """The Slack fake, plus a signal per DM: each event ends with Cadence posting the next question."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.posts: dict[str, int] = defaultdict(int)  # channel -> chat.postMessage calls that worked
        self.newest: dict[str, dict[str, Any]] = {}  # channel -> the newest message posted there
        self._waiters: dict[str, list[tuple[int, asyncio.Future[None]]]] = defaultdict(list)

    def _chat_post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = super()._chat_post_message(body)
        channel = str(answer["channel"])
        self.posts[channel] += 1
        self.newest[channel] = self.messages[(channel, str(answer["ts"]))]
        for count, future in self._waiters.pop(channel, []):
            if self.posts[channel] >= count:
                if not future.done():
                    future.set_result(None)
            else:
                self._waiters[channel].append((count, future))
        return answer

    async def wait_posts(self, channel: str, count: int, timeout: float = WAIT) -> None:
        """Wait until ``count`` messages have been posted to ``channel`` in all."""
        if self.posts[channel] >= count:
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters[channel].append((count, future))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BenchmarkError(f"no message {count} in {channel} within {timeout}s") from None


def slack_id(index: int) -> str:
    return f"UB{index:06d}"


def percentile(values: list[float], p: float) -> float:
    """The nearest-rank percentile of ``values`` (p in 0..100)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


async def scalar(db: Database, sql: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def wait_processed(db: Database, expected: int, timeout: float = WAIT) -> None:
    """Wait until ``expected`` journal rows are processed (as SlackRig.settle does)."""
    async with asyncio.timeout(timeout):
        while await scalar(db, "select count(*) from inboundevent where processed_at is not null") < expected:
            await asyncio.sleep(0.005)


def settings_for(url: str, fake: SlackFake) -> Settings:
    """Only the database and Slack (on the fake): nothing from the machine's environment."""
    return Settings(
        _env_file=None,
        database_url=url,
        log_level="WARNING",
        # no pacing: this measures Cadence, not Slack's one-message-a-second-per-channel rule
        slack=SlackSettings(
            enabled=True,
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=fake.base_url,
            per_recipient_per_s=None,
        ),
        feishu=FeishuSettings(),
        dingtalk=DingtalkSettings(),
        jira=JiraSettings(),
        # Shanghai's evening is Los Angeles' night: quiet hours would hold half the org's check-ins
        quiet=QuietSettings(enabled=False),
        one_on_one_enabled=False,
    )


async def run(kind: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Set up, time the inbound phase and verify; returns the JSON record."""
    # "cycle start" starts everyone's check-in only on their workday: a weekend run would start nobody's
    with on_a_workday_morning():
        if kind != "postgresql":
            return await _run(kind, url, args, workdir)
        await ensure_database(url)
        async with owning(url):
            return await _run(kind, url, args, workdir)


async def _run(kind: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    org = workdir / "org.csv"
    hr_email, emails = write_org(org, args.people)
    users = {email: slack_id(i) for i, email in enumerate(emails)}
    fake = BenchFake(users=users)
    await fake.start()
    settings = settings_for(url, fake)
    app = App(settings, platforms=platforms_from(settings))
    stop = asyncio.Event()
    delivering: asyncio.Task[None] | None = None
    try:
        await app.start()
        await fake.wait_connected()
        imported = await import_org_file(app.db, org)
        if imported.total != args.people:
            raise BenchmarkError(f"org import saw {imported.total} people, expected {args.people}")

        # setup: HR starts the cycle from Slack; everyone's first question reaches their DM
        command = fake.slash_command(users[hr_email], "cycle start weekly")
        command_envelope = await fake.send_envelope("slash_commands", command)
        await fake.wait_ack(command_envelope, timeout=WAIT)
        await wait_processed(app.db, 1)
        await app.delivery.drain()
        active = await scalar(app.db, "select count(*) from assignment where status = 'active'")
        if active != args.people:
            raise BenchmarkError(f"after 'cycle start weekly' {active} assignments are active")
        baseline = {users[e]: fake.posts[fake.dm_channel(users[e])] for e in emails}
        if min(baseline.values()) < 1:
            raise BenchmarkError("not everyone got the first question in their DM")

        # the timed phase, with the delivery worker running as `cadence run` runs it
        delivering = asyncio.create_task(app.delivery.run(stop))
        plan = plan_events(args.events, args.people)
        slots = asyncio.Semaphore(args.concurrency)
        sent: dict[str, str] = {}  # envelope_id -> envelope type

        async def person(index: int, steps: list[Step]) -> None:
            user = users[emails[index]]
            channel = fake.dm_channel(user)
            posts = baseline[user]
            for step in steps:
                async with slots:
                    if step.kind == "text":
                        payload, envelope = fake.message_event(user, step.text), "events_api"
                    else:
                        payload, envelope = click(fake, user, channel, step), "interactive"
                    sent[await fake.send_envelope(envelope, payload)] = envelope
                    posts += 1
                    await fake.wait_posts(channel, posts)  # processed, and the next question is there

        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        await asyncio.gather(*(person(i, steps) for i, steps in enumerate(plan) if steps))
        await wait_processed(app.db, 1 + args.events)
        seconds = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)

        stop.set()
        await delivering
        delivering = None
        record = await verify(app.db, fake, sent, args)
    finally:
        stop.set()
        if delivering is not None:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
        await app.stop()
        await fake.stop()

    latencies = [fake.ack_latency[e] * 1000 for e in sent if e in fake.ack_latency]
    by_kind = {
        envelope: [
            fake.ack_latency[e] * 1000 for e, k in sent.items() if k == envelope and e in fake.ack_latency
        ]
        for envelope in ("events_api", "interactive")
    }
    return {
        "benchmark": "slack_inbound",
        "events": len(sent),
        "ack_p50_ms": round(percentile(latencies, 50), 2),
        "ack_p99_ms": round(percentile(latencies, 99), 2),
        "events_per_s": round(len(sent) / seconds, 1),
        "db": kind,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "ack_max_ms": round(max(latencies), 2),
        "ack_ms_by_type": {
            k: {"n": len(v), "p50": round(percentile(v, 50), 2), "p99": round(percentile(v, 99), 2)}
            for k, v in by_kind.items()
            if v
        },
        "people": args.people,
        # the setup's /cadence cycle start (not in the figures above): on SQLite its ack grows with --people
        "cycle_start_ack_ms": round(fake.ack_latency[command_envelope] * 1000, 1),
        "concurrency": args.concurrency,
        "seconds": round(seconds, 3),
        **record,
    }


def plan_events(events: int, people: int) -> list[list[Step]]:
    """Each person's steps: ``events`` in all, spread evenly, in recap order."""
    if events > PER_PERSON * people:
        raise ValueError(f"--events at most {PER_PERSON} per person ({PER_PERSON * people})")
    return [script(i)[: events // people + (1 if i < events % people else 0)] for i in range(people)]


def click(fake: BenchFake, user: str, channel: str, step: Step) -> dict[str, Any]:
    """A block_actions payload for the button worth ``step.value`` on the person's newest message."""
    message = fake.newest[channel]
    for block in message.get("blocks") or []:
        for element in block.get("elements") or [] if block.get("type") == "actions" else []:
            parts = str(element.get("value", "")).split("|")
            if len(parts) == 5 and parts[2] == step.step and parts[4] == step.value:
                return fake.block_action(
                    user, element["value"], action_id=element["action_id"], message_ts=message["ts"]
                )
    raise BenchmarkError(
        f"{user}'s newest message has no {step.step}={step.value} button: {message['text']!r}"
    )


async def verify(
    db: Database, fake: SlackFake, sent: dict[str, str], args: argparse.Namespace
) -> dict[str, Any]:
    """Every envelope acknowledged once; every event journaled once, processed, and stored once."""
    acks: dict[str, int] = defaultdict(int)
    for frame in fake.received_frames:
        if frame.get("envelope_id") in sent:
            acks[frame["envelope_id"]] += 1
    journal = await scalar(db, "select count(*) from inboundevent")
    processed = await scalar(
        db, "select count(*) from inboundevent where processed_at is not null and error is null"
    )
    answers = await scalar(db, "select count(*) from answer")
    expected = 1 + args.events  # the slash command, then the timed events
    problems = []
    if len(sent) != args.events:
        problems.append(f"{len(sent)} envelopes sent, expected {args.events}")
    if len(acks) != len(sent) or any(n != 1 for n in acks.values()):
        twice = sum(1 for n in acks.values() if n > 1)
        problems.append(f"{len(acks)} of {len(sent)} envelopes acknowledged, {twice} more than once")
    if journal != expected:
        problems.append(f"{journal} journal rows, expected {expected}")
    if processed != expected:
        problems.append(f"{processed} journal rows processed without error, expected {expected}")
    if answers != args.events:
        problems.append(f"{answers} answers stored, expected {args.events}")
    record: dict[str, Any] = {"journal_rows": journal, "answers_stored": answers}
    if problems:
        record["error"] = "; ".join(problems)
    return record


@contextlib.contextmanager
def no_proxy() -> Iterator[None]:
    """slack_sdk takes proxies from the environment and ignores NO_PROXY: the fake is on loopback."""
    saved = {name: os.environ.pop(name) for name in PROXY_ENV_VARS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run once, print the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--people", type=int, default=200, help="people in the org (default 200)")
    parser.add_argument(
        "--events", type=int, default=1000, help="envelopes in the timed phase (default 1000)"
    )
    parser.add_argument("--concurrency", type=int, default=20, help="events in flight at once (default 20)")
    parser.add_argument("--profile", metavar="FILE", help="write a cProfile of the timed phase to FILE")
    args = parser.parse_args(argv)
    if args.people < 2:
        parser.error("--people must be at least 2")
    if not 1 <= args.events <= PER_PERSON * args.people:
        parser.error(f"--events must be between 1 and {PER_PERSON} per person")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="cadence-slack-bench-") as tmp, no_proxy():
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'cadence.db'}" if args.db == "sqlite" else args.postgres_url
        try:
            record = asyncio.run(run(args.db, url, args, workdir))
        except Unreachable as exc:
            print(json.dumps({"benchmark": "slack_inbound", "db": args.db, "error": str(exc)}), flush=True)
            return 0
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
            print(json.dumps({"benchmark": "slack_inbound", "db": args.db, "error": error}), flush=True)
            raise
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if "error" in record else 0


if __name__ == "__main__":
    sys.exit(main())
