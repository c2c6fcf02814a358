"""Benchmark a scheduled fan-out: the planner opens a cycle for N people, each prompt reaches the platform.

Run as ``python benchmarks/fanout.py``. It prints one JSON line per case::

    {"benchmark": "fanout", "platform": "slack", "db": "sqlite", "people": 10000, "limit_per_s": null,
     "delivered_per_s": ..., "duplicates": 0, "lost": 0, "peak_rss_mb": ..., ...}
    {"benchmark": "fanout", ..., "people": 1000, "limit_per_s": 50, "limit_utilisation": ...,
     "http_429": ..., ...}
    {"benchmark": "fanout", "platform": "feishu", ..., "people": 1000, "limit_per_s": 50,
     "per_user_per_s": 5, ..., "limit_utilisation": ..., "http_429": ..., ...}
    {"benchmark": "fanout", "platform": "dingtalk", ..., "people": 10000, "limit_per_s": null, ...,
     "duplicates": 0, "lost": 0, "calls_per_prompt": ..., "api_calls": {...}, ...}

Cases: ``--platform`` (``slack``, ``feishu``, ``dingtalk`` or, by default, ``all``) and ``--cases`` (by
default Slack's two, Feishu's ``limited`` and DingTalk's ``unlimited``), each on SQLite and on PostgreSQL
(``--dbs``). ``unlimited``: ``--people`` (10,000), no limit in the fake and no pacing in Cadence.
``limited``: ``--limited-people`` (1,000), with the fake enforcing ``--limit-per-s`` (50) a second
overall, as the platform does: Slack's fake on chat.postMessage with ``--per-channel-per-s`` (1) per
channel, Feishu's on message create (and update) per app with ``--per-user-per-s`` (5) per user,
DingTalk's on batchSend calls (its per-API QPS, refused with HTTP 403
``Forbidden.AccessDenied.QpsLimitForApi``; DingTalk publishes no number, and its per-person flow
control names no rate). Each case runs in a child process of its own, so ``peak_rss_mb`` is that
case's Cadence process (``ru_maxrss``; Feishu's includes lark-oapi, imported for the long connection,
DingTalk's dingtalk-stream and websockets, for Stream mode). PostgreSQL is the database at ``--postgres-url``
(``CADENCE_BENCH_POSTGRES_URL``), whose public schema the benchmark drops and recreates under the
advisory lock ``benchmarks/engine.py`` takes; an unreachable server prints an ``error`` line.

The fake (``tests/fakes/slack.py``, ``feishu.py`` or ``dingtalk.py``) runs in a process of its own, so it
does not take the measured process's CPU (a 2-core machine: one core each); a pipe gives its address
and, at the end, its counters. Cadence is the real thing: ``App`` with the platform connected, Slack
over Socket Mode sending through slack_sdk's ``AsyncWebClient`` and aiohttp, Feishu over lark-oapi's
long connection (its endpoint call, then the WebSocket) sending cards through ``FeishuApi`` (httpx)
with ``POST /open-apis/im/v1/messages`` and the outbox key as ``uuid``, DingTalk over Stream mode
(``connections/open`` with httpx, then the WebSocket) sending robot markdown through ``DingtalkApi``
(httpx) with ``POST /v1.0/robot/oToMessages/batchSend``: identical messages (here each locale's
opening) that come within 20 ms go out together, up to 20 userIds a call.

Setup (not timed): a fresh database, migrations, an org of N people (time zone UTC, country GB,
zh-CN and en alternating; the org file carries each person's id on the platform, ``slack_id``,
``feishu_id`` (an open_id) or ``dingtalk_id`` (a userId), as ``examples/org.csv`` does, so no lookup
happens: ``--identities lookup`` leaves them out and measures a first fan-out that learns them by email,
not on DingTalk, which has no lookup by email) imported from a separate process as ``cadence org
import`` would, and a schedule: weekly_recap every Wednesday at 10:00 local time. Cadence's clock
(``storage.clock``) starts at Wednesday 2026-11-25 10:00 UTC and runs at wall-clock speed from there
(Retry-After pauses and retries are due times on that clock).

Timed phase: with the delivery worker running as ``cadence run`` runs it (``Delivery.run``), one
scheduler tick at 10:00 (``SchedulerService.tick``: the planner opens the cycle for everyone, the
starter starts each conversation, each with its opening message, the intro with the first question,
in the outbox), until the fake has stored the last of the N messages. ``delivered_per_s`` = people reached
/ the seconds from the tick's start to the fake storing (and answering) the last message;
``messages_per_s`` likewise. ``splits_s`` says when (seconds after the tick's start) the planner and
the starter ran and the first message arrived; ``cpu_s`` the CPU seconds Cadence and the fake used
meanwhile (Cadence's close to ``seconds``: it was CPU-bound). ``--profile FILE`` (with ``--platform``,
``--case`` and ``--db``: one case in this process) writes a cProfile of the timed phase.

Checked afterwards, once the outbox is settled: ``lost`` = people without their opening message on
the platform; ``duplicates`` = outbox keys that reached it more than once; every outbox row sent. On
Slack a duplicate is a key stored twice (message metadata). Feishu stores a message at most once per
``uuid`` within an hour (its own guarantee, which the fake keeps), so a row sent twice would not show
as a second message: there ``duplicates`` counts the uuids stored twice *and* the uuids whose create
call was answered more than once (the later times with the first message, by that dedupe), and
``duplicates_by_kind`` says which. DingTalk's batchSend carries no key of Cadence's: a delivery there is
a (userId, hash of ``msgKey`` and ``msgParam``) pair, each outbox row's being its person's
``dingtalk_id`` and the markdown its message renders to; a pair delivered twice is a duplicate.
``calls_per_prompt`` (DingTalk) = the API calls the fake received, except the token fetches
(``oauth2/accessToken``, ``gettoken``) and the Stream's ``connections/open``, refused calls included /
the (person, prompt) pairs delivered; in this run they are all batchSends (no card template, no
directory reads), so with each locale's prompt identical it is about 1 / the people per call
(``api_calls.user_ids_per_call``). The benchmark gives up after 180 s (unlimited) or 20 s + 1.5 x the
time the limit needs (limited: 50 s for 1,000 messages at 50/s); people whose rows are then still
queued are ``late``, not lost. A wrong count, or giving up, adds an ``error`` field and makes the exit
code non-zero.

The limited cases run Cadence as a deployment would be configured, the settings' defaults. Slack: its
published "1 message per second per channel" as ``SLACK_PER_RECIPIENT_PER_S=1``, no workspace-wide
cap (``SLACK_RATE_PER_S`` unset: Slack publishes no number, its 429s carry Retry-After, which Cadence
honours). Feishu: its published limits, ``FEISHU_RATE_PER_S=50`` and ``FEISHU_PER_RECIPIENT_PER_S=5``.
DingTalk: neither set (it publishes no number; Cadence backs off on its throttling codes).
``DELIVERY_CONCURRENCY`` as configured (default: the setting's default; with DingTalk ``App`` raises it
to at least 20, batchSend's userIds per call, in every case). The JSON line names this
under ``cadence_pacing``; ``--cadence-rate-per-s``, ``--cadence-per-recipient-per-s`` (0: unset) and
``--concurrency`` try others. ``limit_utilisation`` = the rate the fake admitted (first to last
admitted call) / ``limit_per_s``; ``http_429_by_limit`` says which of the fake's limits refused
(Slack: ``overall`` or ``per_channel``; Feishu: ``app``, HTTP 429 code 99991400, or ``user``, code
230020 with HTTP 400, both counted in ``http_429``; DingTalk: ``api``, its HTTP 403, counted there
too). Each person gets one message, so a per-recipient limit refuses only retries that come too fast;
a fake starting with a full bucket lets a burst through, so a run that bursts (Slack's, unpaced
overall) can show a utilisation a little above 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import csv
import hashlib
import json
import logging
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Protocol

# run as a script: make the project importable without relying on an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiohttp import web
from sqlalchemy import text

from bot.app import App, platforms_from
from bot.settings import (
    DingtalkSettings,
    FeishuSettings,
    JiraSettings,
    SchedulerSettings,
    Settings,
    SlackSettings,
)
from storage.clock import set_clock
from storage.engine import Database
from tests.bench_support import Unreachable, ensure_database, import_org, owning
from tests.fakes.slack import PROXY_ENV_VARS, SlackFake

DEFAULT_POSTGRES_URL = os.environ.get(
    "CADENCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/cadence_bench"
)
BOT_TOKEN = "xoxb-2718281828-3141592653-FanoutFanoutFanout0001"
APP_TOKEN = "xapp-1-A0CADENCE-1618033988-FanoutFanoutFanout0002"
FEISHU_APP_ID = "cli_cadence_fanout"
FEISHU_APP_SECRET = "fanout-app-secret-for-the-benchmark"
DINGTALK_CLIENT_ID = "dingcadencefanout"  # also the robot code (an internal app's robot is its AppKey)
DINGTALK_CLIENT_SECRET = "fanout-dingtalk-secret-for-the-benchmark"
PLATFORMS = ("slack", "feishu", "dingtalk")
# the cases each platform runs unless --cases says otherwise (Feishu's unlimited case and DingTalk's
# limited one are on request)
DEFAULT_CASES = {"slack": ("unlimited", "limited"), "feishu": ("limited",), "dingtalk": ("unlimited",)}
# DingTalk API calls that are not part of delivering: the tokens and the Stream connection's ticket
DINGTALK_NOT_DELIVERY = ("/v1.0/oauth2/accessToken", "/gettoken", "/v1.0/gateway/connections/open")
# a Wednesday, a workday in Great Britain; 10:00 UTC is outside the default quiet hours (20:00-09:00)
FIRE = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
SCHEDULES = """\
days_off: []
schedules:
  - ritual: weekly_recap
    when: weekday
    weekday: 2
    at: "10:00"
    reminders: {after_hours: 20, max: 1}
"""
PER_PERSON = 1  # the opening: the intro with the first question
KINDS = ("intro",)
UNLIMITED_WAIT = 180.0
SETTLE = 30.0  # seconds the outbox may take to settle after the last message arrived
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
)  # then the platform's id column: slack_id, feishu_id or dingtalk_id

log = logging.getLogger("benchmarks.fanout")


class BenchmarkError(RuntimeError):
    """The run finished (or stalled) but Cadence did not do what it should."""


# --- the platform's fake, in a process of its own ----------------------------------------------


class CountingFake(SlackFake):
    """The Slack fake, counting outbox keys as messages are stored and noting when the last one came.

    Every per-call addition is O(1); so is users.lookupByEmail here (the fake's own scans the whole
    workspace per call, which at 10,000 people would measure the fake, not Cadence).
    """

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.keys: Counter[str] = Counter()
        self.first_at: float | None = None  # time.monotonic() (system-wide on Linux) of the first post
        self.last_at: float | None = None  # ... and of the newest post with a new key
        self._target: tuple[int, asyncio.Future[None]] | None = None
        self._by_email: dict[str, Any] = {}
        self.refused_by: Counter[str] = Counter()  # which of ``limit``'s buckets refused a call

    @property
    def address(self) -> str:
        return self.base_url

    def apply_limit(self, per_s: float | None, per_recipient_per_s: float | None) -> None:
        self.limit(per_s, per_recipient_per_s)

    async def ready(self, timeout: float) -> bool:
        """Socket Mode is connected once ``App.start`` returns: nothing to wait for."""
        return True

    def _chat_post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        answer = super()._chat_post_message(body)
        metadata = answer["message"].get("metadata") or {}
        key = str((metadata.get("event_payload") or {}).get("key", ""))
        now = time.monotonic()
        self.first_at = self.first_at or now
        self.keys[key] += 1
        if self.keys[key] == 1:
            self.last_at = now
            if self._target is not None and len(self.keys) >= self._target[0]:
                _, future = self._target
                if not future.done():
                    future.set_result(None)
        return answer

    def _limited(self, method: str, body: dict[str, Any], headers: dict[str, str]) -> web.Response | None:
        refused = super()._limited(method, body, headers)
        if refused is not None and self._limits is not None:
            # the buckets were just brought up to date: an empty overall one is the workspace's limit
            overall = self._limits.overall
            self.refused_by["overall" if overall is not None and overall.tokens < 1 else "per_channel"] += 1
        return refused

    def _users_lookup_by_email(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self._by_email:
            self._by_email = {u.email.lower(): u for u in self._users.values() if u.email is not None}
        user = self._by_email.get(str(body.get("email") or "").strip().lower())
        if user is None:
            return super()._users_lookup_by_email(body)
        return {"ok": True, "user": self._user_json(user)}

    async def wait_keys(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` different keys are stored; False if ``timeout`` passed first."""
        if len(self.keys) >= count:
            return True
        future = asyncio.get_running_loop().create_future()
        self._target = (count, future)
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        finally:
            self._target = None
        return True

    def report(self) -> dict[str, Any]:
        stats = self.limit_stats
        return {
            "keys": dict(self.keys),
            "first_at": self.first_at,
            "last_at": self.last_at,
            "http_429": self.http_429,
            "refused_by": dict(self.refused_by),
            "http_500": self.http_500,
            "calls": dict(self.call_counts),
            "admitted": stats.admitted,
            "refused": stats.refused,
            "achieved_per_s": stats.achieved_per_s(),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpu_s": cpu_seconds(),
        }


def counting_feishu_fake(users: dict[str, str]) -> CountingPlatformFake:
    """The Feishu fake with ``users`` (email -> open_id), counting what message create stored and resent.

    Defined here, not at the top: only the fake's process imports ``tests.fakes.feishu``, so the
    measured process's peak RSS does not include it. The fake serves from a thread of its own (with its
    own loop); ``_create_message`` runs there under the fake's lock, so its counters and the wait's
    ``threading.Event`` need no more locking than that. Per call the additions are O(1).
    """
    from tests.fakes.feishu import FeishuFake

    class CountingFeishuFake(FeishuFake):
        def __init__(self) -> None:
            super().__init__(app_id=FEISHU_APP_ID, app_secret=FEISHU_APP_SECRET, record_calls=False)
            # uuid -> successful create answers (a message stored, or the original answered again
            # because the uuid was seen within the hour): above 1, an outbox row reached Feishu twice
            self.creates: Counter[str] = Counter()
            self.deduped = 0  # create calls answered with an earlier message (uuid seen before)
            self.first_at: float | None = None  # time.monotonic() (system-wide on Linux) of the first
            self.last_at: float | None = None  # ... and of the newest message stored
            self._target = 0
            self._reached = threading.Event()

        @property
        def address(self) -> str:
            return self.url

        def apply_limit(self, per_s: float | None, per_recipient_per_s: float | None) -> None:
            self.limit(per_app_per_s=per_s, per_user_per_s=per_recipient_per_s)

        async def ready(self, timeout: float) -> bool:
            """Cadence's long connection is open (``App.start`` waits for it too, at most 15 s)."""
            try:
                await self.wait_connected(1, timeout)
            except TimeoutError:
                return False
            return True

        def _create_message(self, query: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
            stored = len(self.messages)
            answer = super()._create_message(query, body)  # a refusal raises: nothing counted
            now = time.monotonic()
            self.creates[str(body.get("uuid") or "")] += 1
            if len(self.messages) == stored:
                self.deduped += 1
                return answer
            self.first_at = self.first_at or now
            self.last_at = now
            if self._target and len(self.messages) >= self._target:
                self._reached.set()
            return answer

        def _wait_stored(self, count: int, timeout: float) -> bool:
            with self._lock:
                if len(self.messages) >= count:
                    return True
                self._reached.clear()
                self._target = count
            try:
                return self._reached.wait(timeout)
            finally:
                with self._lock:
                    self._target = 0

        async def wait_keys(self, count: int, timeout: float) -> bool:
            """Wait until ``count`` messages are stored (each a different uuid); False on ``timeout``."""
            return await asyncio.to_thread(self._wait_stored, count, timeout)

        def report(self) -> dict[str, Any]:
            with self._lock:
                stats = self.limit_stats()
                return {
                    "keys": dict(self.delivered_uuids()),
                    "resent": {uuid: n for uuid, n in self.creates.items() if n > 1},
                    "deduped": self.deduped,
                    "first_at": self.first_at,
                    "last_at": self.last_at,
                    "http_429": self.http_429,
                    "refused_by": {"app": stats.refused_app, "user": stats.refused_user},
                    "calls": dict(self.call_counts),
                    "admitted": stats.admitted,
                    "refused": stats.refused,
                    "achieved_per_s": stats.achieved_per_s(),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "cpu_s": cpu_seconds(),
                }

    fake = CountingFeishuFake()
    for email, open_id in users.items():
        fake.add_user(open_id, name=email.split("@")[0], email=email)
    return fake


def content_digest(msg_key: str, param: dict[str, Any]) -> str:
    """What a DingTalk robot message says, as a short hash (its ``msgKey`` and ``msgParam``).

    batchSend carries no per-message key, so a delivery is known by (userId, this): the same prompt
    reaching the same person twice is the same pair twice.
    """
    canonical = json.dumps([msg_key, param], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:20]


def counting_dingtalk_fake(users: dict[str, str]) -> CountingPlatformFake:
    """The DingTalk fake with ``users`` (email -> userId), counting API calls and what batchSend delivered.

    As for Feishu, only the fake's process imports ``tests.fakes.dingtalk``. The fake serves from a
    thread of its own; ``_batch_send`` runs there under the fake's lock. A delivery is counted by
    (userId, ``content_digest``) pair (batchSend has no per-message key): a pair delivered more than
    once is a prompt that reached its person twice. Per call the additions are O(userIds).
    """
    from tests.fakes.dingtalk import BATCH_SEND, DingTalkFake

    class CountingDingtalkFake(DingTalkFake):
        def __init__(self) -> None:
            super().__init__(
                client_id=DINGTALK_CLIENT_ID,
                client_secret=DINGTALK_CLIENT_SECRET,
                robot_code=DINGTALK_CLIENT_ID,
                record_calls=False,
            )
            self.pairs: Counter[str] = Counter()  # "userId:digest" -> deliveries
            self.batch_accepted = 0  # batchSend calls answered with a processQueryKey
            self.batch_user_ids = 0  # ... and the userIds they named (delivered or not)
            self.first_at: float | None = None  # time.monotonic() (system-wide on Linux) of the first
            self.last_at: float | None = None  # ... and of the newest new pair delivered
            self._target = 0
            self._reached = threading.Event()

        @property
        def address(self) -> str:
            return self.url

        def apply_limit(self, per_s: float | None, per_recipient_per_s: float | None) -> None:
            # DingTalk's flow control per person names no rate: only the per-API limit, on batchSend
            self.limit(per_app_per_s=per_s, per_api=BATCH_SEND)

        async def ready(self, timeout: float) -> bool:
            """Cadence's Stream connection is open (``App.start`` waits for it too, at most 15 s)."""
            try:
                await self.wait_connected(1, timeout)
            except TimeoutError:
                return False
            return True

        def _batch_send(self, body: dict[str, Any]) -> dict[str, Any]:
            answer = super()._batch_send(body)  # a refusal raises: nothing delivered, nothing counted
            send = self.batch_sends[-1]
            self.batch_accepted += 1
            self.batch_user_ids += len(send.user_ids)
            if send.delivered:
                digest = content_digest(send.msg_key, send.msg_param)
                now = time.monotonic()
                self.first_at = self.first_at or now
                for user in send.delivered:
                    pair = f"{user}:{digest}"
                    self.pairs[pair] += 1
                    if self.pairs[pair] == 1:
                        self.last_at = now
                if self._target and len(self.pairs) >= self._target:
                    self._reached.set()
            return answer

        def _wait_stored(self, count: int, timeout: float) -> bool:
            with self._lock:
                if len(self.pairs) >= count:
                    return True
                self._reached.clear()
                self._target = count
            try:
                return self._reached.wait(timeout)
            finally:
                with self._lock:
                    self._target = 0

        async def wait_keys(self, count: int, timeout: float) -> bool:
            """Wait until ``count`` different (userId, content) pairs are delivered; False on ``timeout``."""
            return await asyncio.to_thread(self._wait_stored, count, timeout)

        def report(self) -> dict[str, Any]:
            with self._lock:
                stats = self.limit_stats()
                calls = dict(self.call_counts)
                return {
                    "keys": dict(self.pairs),
                    "first_at": self.first_at,
                    "last_at": self.last_at,
                    "http_429": stats.refused,
                    "refused_by": {"api": stats.refused},
                    "calls": calls,
                    # every call but the tokens and the Stream's ticket (refused ones too: a call is a call)
                    "delivery_calls": sum(n for p, n in calls.items() if p not in DINGTALK_NOT_DELIVERY),
                    "batch_send_calls": calls.get(BATCH_SEND, 0),
                    "batch_accepted": self.batch_accepted,
                    "batch_user_ids": self.batch_user_ids,
                    "flow_controlled": sum(len(s.flow_controlled) for s in self.batch_sends),
                    "invalid": sum(len(s.invalid) for s in self.batch_sends),
                    "admitted": stats.admitted,
                    "refused": stats.refused,
                    "achieved_per_s": stats.achieved_per_s(),
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                    "cpu_s": cpu_seconds(),
                }

    fake = CountingDingtalkFake()
    for email, userid in users.items():
        fake.add_user(userid, name=email.split("@")[0], email=email)
    return fake


class CountingPlatformFake(Protocol):
    """What the fake process asks of either counting fake."""

    @property
    def address(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def apply_limit(self, per_s: float | None, per_recipient_per_s: float | None) -> None: ...

    async def ready(self, timeout: float) -> bool: ...

    async def wait_keys(self, count: int, timeout: float) -> bool: ...

    def report(self) -> dict[str, Any]: ...


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def fake_main(conn: Connection, platform: str, users: dict[str, str]) -> None:
    """The fake process: serve the platform on 127.0.0.1 and answer the benchmark's requests on ``conn``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve_fake(conn, platform, users))


async def _serve_fake(conn: Connection, platform: str, users: dict[str, str]) -> None:
    fake: CountingPlatformFake
    if platform == "feishu":
        fake = counting_feishu_fake(users)
    elif platform == "dingtalk":
        fake = counting_dingtalk_fake(users)
    else:
        fake = CountingFake(users=users, record_calls=False)
    await fake.start()
    conn.send(fake.address)
    try:
        while True:
            request = await asyncio.to_thread(conn.recv)
            op = request[0]
            if op == "limit":
                fake.apply_limit(request[1], request[2])
                conn.send(True)
            elif op == "ready":
                conn.send(await fake.ready(request[1]))
            elif op == "wait":
                conn.send(await fake.wait_keys(request[1], request[2]))
            elif op == "report":
                conn.send(fake.report())
            elif op == "stop":
                break
    finally:
        await fake.stop()
        conn.send("stopped")


class FakeProcess:
    """The benchmark's side of the fake process: one request at a time, answered over a pipe."""

    def __init__(self, platform: str, users: dict[str, str]) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.name = f"{platform}-fake"
        self._process = context.Process(
            target=fake_main, args=(child, platform, users), name=self.name, daemon=True
        )
        self._lock = asyncio.Lock()
        self.base_url = ""

    async def start(self) -> str:
        self._process.start()
        self.base_url = str(await asyncio.to_thread(self._recv, 60.0))
        return self.base_url

    def _recv(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise BenchmarkError(f"the {self.name} process did not answer within {timeout:.0f}s")
        return self._conn.recv()

    async def request(self, *request: Any, timeout: float = 60.0) -> Any:
        async with self._lock:
            self._conn.send(request)
            return await asyncio.to_thread(self._recv, timeout)

    async def stop(self) -> None:
        if self._process.is_alive():
            with contextlib.suppress(BenchmarkError, OSError, EOFError):
                await self.request("stop", timeout=10.0)
        await asyncio.to_thread(self._process.join, 10.0)
        if self._process.is_alive():
            self._process.kill()


# --- the org, imported as `cadence org import` would (another process) --------------------------


def write_org(path: Path, people: int, *, platform: str, with_ids: bool) -> dict[str, str]:
    """A CSV org of ``people`` in UTC: one HR admin, ~5% managers, the rest employees.

    Returns email -> the person's id on ``platform`` (the fake's directory: a Slack user id, a Feishu
    open_id or a DingTalk userId); the file carries the ids (``slack_id`` / ``feishu_id`` /
    ``dingtalk_id``) if ``with_ids``.
    """
    managers = max(1, min(50, (people - 1) // 20))
    head = "manager00000@fanout.example.com"
    rows = [("hr", 0, head, "People")]
    rows += [("manager", m, "" if m == 0 else head, f"Dept {m:02d}") for m in range(managers)]
    rows += [
        ("employee", e, f"manager{e % managers:05d}@fanout.example.com", f"Dept {e % managers:02d}")
        for e in range(people - 1 - managers)
    ]
    users: dict[str, str] = {}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow((*ORG_COLUMNS, f"{platform}_id"))
        for n, (role, i, manager, department) in enumerate(rows):
            email = f"{role}{i:05d}@fanout.example.com"
            users[email] = platform_id(platform, n)
            chinese = n % 2 == 0
            writer.writerow(
                [
                    email,
                    f"测试{role}{i}" if chinese else f"Fanout {role.title()} {i}",
                    manager,
                    department,
                    role,
                    "UTC",
                    "GB",
                    "zh-CN" if chinese else "en",
                    {"hr": "hr", "manager": "manager"}.get(role, ""),
                    users[email] if with_ids else "",
                ]
            )
    return users


def platform_id(platform: str, n: int) -> str:
    """The ``n``-th person's id on ``platform``, shaped as the platform's are."""
    if platform == "feishu":
        return f"ou_{n:032x}"  # an open_id
    if platform == "dingtalk":
        return f"fanout{n:07d}"  # an internal app's userId (staffId): the org admin's or a number
    return f"UF{n:07d}"


# --- a PostgreSQL database the benchmark owns (as benchmarks/engine.py does) -------------------


# --- one case ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """What one child process measures."""

    platform: str  # "slack", "feishu" or "dingtalk"
    mode: str  # "unlimited" or "limited"
    db: str  # "sqlite" or "postgresql"
    people: int
    limit_per_s: float | None  # the fake's overall limit (Slack: the workspace's; Feishu: the app's;
    # DingTalk: batchSend calls, the per-API QPS)
    per_recipient_limit: float | None  # ... and its per-recipient one (Slack: per channel; Feishu: user)
    concurrency: int | None  # DELIVERY_CONCURRENCY; None: the setting's default
    rate_per_s: float | None  # Cadence's own pacing: <PLATFORM>_RATE_PER_S
    per_recipient_per_s: float | None  # ... and <PLATFORM>_PER_RECIPIENT_PER_S
    identities: str  # "known" (in the org file) or "lookup" (learned from the platform by email)
    profile: str | None


def settings_for(case: Case, url: str, api_url: str, schedules: Path) -> Settings:
    """Only the database, the schedule and the platform (on the fake): nothing from the environment."""
    slack, feishu, dingtalk = SlackSettings(), FeishuSettings(), DingtalkSettings()
    if case.platform == "dingtalk":
        dingtalk = DingtalkSettings(
            enabled=True,
            client_id=DINGTALK_CLIENT_ID,
            client_secret=DINGTALK_CLIENT_SECRET,
            api_url=api_url,
            oapi_url=api_url,
            rate_per_s=case.rate_per_s,
            per_recipient_per_s=case.per_recipient_per_s,
        )
    elif case.platform == "feishu":
        feishu = FeishuSettings(
            enabled=True,
            app_id=FEISHU_APP_ID,
            app_secret=FEISHU_APP_SECRET,
            connection="long",
            domain=api_url,
            rate_per_s=case.rate_per_s,
            per_recipient_per_s=case.per_recipient_per_s,
        )
    else:
        slack = SlackSettings(
            enabled=True,
            bot_token=BOT_TOKEN,
            app_token=APP_TOKEN,
            api_url=api_url,
            rate_per_s=case.rate_per_s,
            per_recipient_per_s=case.per_recipient_per_s,
        )
    extra: dict[str, Any] = {}
    if case.concurrency is not None:
        extra["delivery_concurrency"] = case.concurrency
    return Settings(
        _env_file=None,
        database_url=url,
        log_level="WARNING",
        default_timezone="UTC",
        scheduler=SchedulerSettings(file=schedules),
        slack=slack,
        feishu=feishu,
        dingtalk=dingtalk,
        jira=JiraSettings(),
        **extra,
    )


def pacing(case: Case, settings: Settings) -> dict[str, float | None]:
    """Cadence's pacing for the platform, named as its environment variables are."""
    section = getattr(settings, case.platform)
    prefix = case.platform.upper()
    return {
        f"{prefix}_RATE_PER_S": section.rate_per_s,
        f"{prefix}_PER_RECIPIENT_PER_S": section.per_recipient_per_s,
    }


def running_clock(start: datetime) -> Callable[[], datetime]:
    """Cadence's clock: ``start`` now, then moving with the wall clock (so Retry-After pauses end)."""
    origin = time.monotonic()
    return lambda: start + timedelta(seconds=time.monotonic() - origin)


def timed(record: dict[str, float], name: str, t0: Callable[[], float], method: Any) -> Any:
    """``method``, noting in ``record`` when (seconds after ``t0()``) each call started and ended."""

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        record[f"{name}_from_s"] = time.monotonic() - t0()
        try:
            return await method(*args, **kwargs)
        finally:
            record[f"{name}_until_s"] = time.monotonic() - t0()

    return wrapper


async def scalar(db: Database, sql: str) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def settle(db: Database, timeout: float) -> int:
    """Wait until no outbox row is pending or being sent; returns how many still are at the end."""
    unsettled = "select count(*) from outbox where status in ('pending', 'sending')"
    deadline = time.monotonic() + timeout
    while (left := await scalar(db, unsettled)) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return left


async def run_case(case: Case, workdir: Path, postgres_url: str) -> dict[str, Any]:
    """Set up, time the fan-out and verify; returns the JSON record."""
    if case.db == "sqlite":
        return await _run_case(case, f"sqlite:///{workdir / 'cadence.db'}", workdir)
    await ensure_database(postgres_url)
    async with owning(postgres_url):
        return await _run_case(case, postgres_url, workdir)


async def _run_case(case: Case, url: str, workdir: Path) -> dict[str, Any]:
    org, schedules = workdir / "org.csv", workdir / "schedules.yaml"
    users = write_org(org, case.people, platform=case.platform, with_ids=case.identities == "known")
    schedules.write_text(SCHEDULES, encoding="utf-8")
    fake = FakeProcess(case.platform, users)
    api_url = await fake.start()
    settings = settings_for(case, url, api_url, schedules)
    set_clock(running_clock(FIRE - timedelta(minutes=5)))
    app = App(settings, platforms=platforms_from(settings))
    stop = asyncio.Event()
    delivering: asyncio.Task[None] | None = None
    try:
        # migrations, then Slack's Socket Mode, Feishu's long connection or DingTalk's Stream to the fake
        await app.start()
        if not await fake.request("ready", 10.0):
            raise BenchmarkError(f"Cadence did not connect to the {case.platform} fake")
        await import_org(url, org)
        if await scalar(app.db, "select count(*) from person where active") != case.people:
            raise BenchmarkError("the org import did not create everyone")
        if not await app.scheduler.leadership.check():
            raise BenchmarkError("this process did not become the scheduler's leader")
        if case.limit_per_s is not None or case.per_recipient_limit is not None:
            await fake.request("limit", case.limit_per_s, case.per_recipient_limit)
        set_clock(running_clock(FIRE))  # the schedule fires now

        # the timed phase: the delivery worker as `cadence run` runs it, then the 10:00 tick
        splits: dict[str, float] = {}
        started = 0.0
        scheduler = app.scheduler
        for part, name, method in (
            (scheduler.planner, "plan", "plan"),
            (scheduler.starter, "start", "start_due"),
        ):
            setattr(part, method, timed(splits, name, lambda: started, getattr(part, method)))
        expected = PER_PERSON * case.people
        # how long to wait for everything before giving up: generous against the aims (10 s for the
        # unlimited case at 1,000 people a second; the limited one at the limit takes expected / limit)
        wait_for = UNLIMITED_WAIT if case.limit_per_s is None else 20.0 + 1.5 * expected / case.limit_per_s
        profiler = cProfile.Profile() if case.profile else None
        fake_cpu = (await fake.request("report"))["cpu_s"]
        delivering = asyncio.create_task(app.delivery.run(stop))
        await asyncio.sleep(0)  # its first (empty) pass is not part of the fan-out
        if profiler is not None:
            profiler.enable()
        started, cpu = time.monotonic(), cpu_seconds()
        ticking = asyncio.create_task(scheduler.tick(FIRE))
        arrived = await fake.request("wait", expected, wait_for, timeout=wait_for + 30)
        stopped_at, cpu = time.monotonic(), cpu_seconds() - cpu
        fake_cpu = (await fake.request("report"))["cpu_s"] - fake_cpu
        tick = await ticking
        if profiler is not None and case.profile:
            profiler.disable()
            profiler.dump_stats(case.profile)
        if arrived:  # let the last sends' results be recorded, then stop as `cadence run` stops
            await settle(app.db, SETTLE)
            stop.set()
            app.delivery.kick()
            await delivering
        else:  # gave up: a stop would let the worker drain the whole outbox first
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
        delivering = None
        report = await fake.request("report")
        outbox = await outbox_rows(app.db)
        # DingTalk: the (userId, content) pair each outbox row should have become
        expected_pairs = await dingtalk_pairs(app.db) if case.platform == "dingtalk" else None
    finally:
        stop.set()
        if delivering is not None:
            delivering.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await delivering
        await app.stop()
        await fake.stop()
        set_clock(None)

    # until the fake stored the last message (or, if not all came, until the benchmark gave up)
    seconds = (report["last_at"] if arrived and report["last_at"] else stopped_at) - started
    keys: Counter[str] = Counter(report["keys"])
    checked = verify(case, outbox, keys, report.get("resent", {}), expected_pairs)
    record: dict[str, Any] = {
        "benchmark": "fanout",
        "platform": case.platform,
        "db": case.db,
        "people": case.people,
        "limit_per_s": case.limit_per_s,
        **({"per_user_per_s": case.per_recipient_limit} if case.platform == "feishu" else {}),
        # people reached with their opening message, per second
        "delivered_per_s": round((case.people - checked["lost"] - checked["late"]) / seconds, 1),
        "duplicates": checked["duplicates"],
        **({"duplicates_by_kind": checked["duplicates_by_kind"]} if case.platform == "feishu" else {}),
        "lost": checked["lost"],
        **({"late": checked["late"]} if checked["late"] else {}),
        **(dingtalk_calls(report, len(keys)) if case.platform == "dingtalk" else {}),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if case.limit_per_s is not None:
        achieved = report["achieved_per_s"]
        record["limit_utilisation"] = round(achieved / case.limit_per_s, 3) if achieved else 0.0
        record["http_429"] = report["http_429"]
        if case.platform == "feishu":
            # Feishu answers its per-user limit with HTTP 400 code 230020, its "too many requests" for
            # one user (Cadence treats it as a rate limit): counted here with the app limit's 429s
            record["http_429"] = report["refused"]
            record["http_429_by_limit"] = report["refused_by"]
        elif case.platform == "dingtalk":
            # DingTalk refuses over its per-API QPS with HTTP 403 Forbidden.AccessDenied.QpsLimitForApi
            record["http_429_by_limit"] = report["refused_by"]
        else:
            record["http_429_by_limit"] = report["refused_by"]
            record["per_channel_per_s"] = case.per_recipient_limit
        record["achieved_per_s"] = round(achieved, 2) if achieved else None
    record.update(
        {
            "messages": sum(keys.values()),
            "messages_per_s": round(sum(keys.values()) / seconds, 1),
            "seconds": round(seconds, 3),
            "outbox": checked["outbox"],
            "unexpected_keys": checked["unexpected_keys"],
            "cycle_opened": bool(tick.planned) and tick.planned[0].people == case.people,
            "conversations_started": tick.started,
            # seconds after the tick's start: the planner's and the starter's part of it, the first
            # message stored by the fake (delivery runs beside the tick)
            "splits_s": {
                **{k: round(v, 3) for k, v in splits.items()},
                "first_message_s": round(report["first_at"] - started, 3) if report["first_at"] else None,
            },
            "cadence_pacing": {
                **pacing(case, settings),
                "DELIVERY_CONCURRENCY": app._delivery_concurrency(settings),
            },
            # CPU seconds each process used in the timed phase (one that never waits uses about as
            # many as the phase lasts: the measured process is then CPU-bound)
            "cpu_s": {"cadence": round(cpu, 2), f"{case.platform}_fake": round(fake_cpu, 2)},
            "identities": case.identities,
            "fake_calls": report["calls"],
            "fake_peak_rss_mb": report["peak_rss_mb"],
        }
    )
    problems = []
    if not arrived:
        problems.append(
            f"gave up after {wait_for:.0f}s with {len(keys)} of {expected} messages in {case.platform}; "
            f"{checked['late']} people late (their rows still queued, not given up on)"
        )
    if record["lost"] or record["duplicates"] or record["unexpected_keys"]:
        problems.append(
            f"{record['lost']} people without their opening, {record['duplicates']} keys duplicated, "
            f"{record['unexpected_keys']} unexpected keys"
        )
    if any(status != "sent" for status in checked["outbox"]):
        problems.append(f"outbox rows not all sent: {checked['outbox']}")
    if not record["cycle_opened"]:
        problems.append("the tick did not open one cycle for everyone")
    if problems:
        record["error"] = "; ".join(problems)
    return record


def dingtalk_calls(report: dict[str, Any], prompts: int) -> dict[str, Any]:
    """DingTalk's API calls per prompt delivered, and what they were.

    ``calls_per_prompt`` = every call the fake received except the token fetches and the Stream
    connection's ticket (``DINGTALK_NOT_DELIVERY``), refused ones included, / the (person, prompt)
    pairs delivered. Here those calls are batchSends: no card template, no directory reads.
    """
    calls, accepted = report["delivery_calls"], report["batch_accepted"]
    return {
        "calls_per_prompt": round(calls / prompts, 4) if prompts else None,
        "api_calls": {
            "delivery": calls,
            "batch_send": report["batch_send_calls"],
            "batch_send_accepted": accepted,
            # userIds named per accepted batchSend (at most 20)
            "user_ids_per_call": round(report["batch_user_ids"] / accepted, 2) if accepted else None,
            "flow_controlled": report["flow_controlled"],
            "invalid": report["invalid"],
        },
    }


async def outbox_rows(db: Database) -> list[tuple[int, str, str, str]]:
    """(person, key, kind, status) of every outbox row."""
    async with db.engine.connect() as conn:
        result = await conn.execute(text("select person_id, idempotency_key, kind, status from outbox"))
        return [(int(p), str(k), str(kind), str(s)) for p, k, kind, s in result.all()]


async def dingtalk_pairs(db: Database) -> dict[str, str]:
    """Outbox key -> the "userId:digest" pair its row is, on DingTalk: the person's DingTalk id and
    ``content_digest`` of the markdown message the row renders to (no card template in the benchmark)."""
    from bot.platforms.dingtalk_render import markdown
    from conversations.messages import Message

    query = text(
        "select o.idempotency_key, o.payload, i.external_id from outbox o left join identity i"
        " on i.person_id = o.person_id and i.platform = 'dingtalk'"
    )
    async with db.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    pairs = {}
    for key, payload, user in rows:
        message = Message.model_validate(json.loads(payload) if isinstance(payload, str) else payload)
        pairs[str(key)] = f"{user or ''}:{content_digest('sampleMarkdown', markdown(message))}"
    return pairs


def verify(
    case: Case,
    outbox: list[tuple[int, str, str, str]],
    keys: Counter[str],
    resent: dict[str, int],
    pairs: dict[str, str] | None = None,
) -> dict[str, Any]:
    """lost: people without their opening message on the platform; duplicates: keys that got there twice.

    ``keys`` are what the fake stored, by the platform's key for an outbox key: Slack's message
    metadata carries the outbox key itself, Feishu's ``uuid`` is ``message_uuid(key)``, DingTalk's
    (batchSend has no key) the (userId, content) pair in ``pairs``. ``resent`` (Feishu): uuids whose
    create call was answered more than once, the later times from Feishu's uuid dedupe; each is an
    outbox row that reached the platform twice although the person sees it once.
    """

    def as_is(key: str) -> str:  # Slack: the metadata carries the outbox key
        return key

    platform_key: Callable[[str], str] = as_is
    if pairs is not None:
        platform_key = pairs.__getitem__
    elif case.platform == "feishu":
        from bot.platforms.feishu import message_uuid  # not in the other cases' processes

        platform_key = message_uuid

    by_person: dict[int, list[tuple[str, str, str]]] = {}
    for person, key, kind, status in outbox:
        by_person.setdefault(person, []).append((platform_key(key), kind, status))
    reached = late = 0
    for rows in by_person.values():
        if sorted(kind for _, kind, _ in rows) == sorted(KINDS) and all(keys[key] for key, _, _ in rows):
            reached += 1
        elif any(status in ("pending", "sending") for _, _, status in rows):
            late += 1  # still queued when the benchmark stopped waiting: not given up on
    stored_twice = {key for key, n in keys.items() if n > 1}
    return {
        "duplicates": len(stored_twice | set(resent)),
        "duplicates_by_kind": {"stored_twice": len(stored_twice), "resent_deduped_by_uuid": len(resent)},
        "lost": case.people - reached - late,
        "late": late,
        "outbox": dict(Counter(status for *_, status in outbox)),
        "unexpected_keys": len(set(keys) - {platform_key(key) for _, key, _, _ in outbox}),
    }


# --- running the cases -------------------------------------------------------------------------


@contextlib.contextmanager
def no_proxy() -> Iterator[None]:
    """slack_sdk takes proxies from the environment and ignores NO_PROXY: the fake is on loopback."""
    saved = {name: os.environ.pop(name) for name in PROXY_ENV_VARS if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


def run_in_process(case: Case, postgres_url: str) -> int:
    """Run one case here and print its line; returns its exit code."""
    head = {"benchmark": "fanout", "platform": case.platform, "db": case.db, "people": case.people}
    with tempfile.TemporaryDirectory(prefix="cadence-fanout-") as tmp, no_proxy():
        try:
            record = asyncio.run(run_case(case, Path(tmp), postgres_url))
        except Unreachable as exc:
            print(json.dumps({**head, "error": str(exc)}), flush=True)
            return 0
        except Exception as exc:
            print(json.dumps({**head, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
            raise
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if "error" in record else 0


def run_children(args: argparse.Namespace, argv: list[str]) -> int:
    """Each case in its own process (so each peak RSS is its own); lines pass straight through."""
    code = 0
    for platform in PLATFORMS if args.platform == "all" else (args.platform,):
        for mode in args.cases or DEFAULT_CASES[platform]:
            for db in args.dbs:
                command = [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    *argv,
                    *("--platform", platform, "--case", mode, "--db", db),
                ]
                child = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
                sys.stdout.write(child.stdout)
                sys.stdout.flush()
                code = code or child.returncode
    return code


def rate_option(value: float | None, default: float | None) -> float | None:
    """A pacing option: not given, the setting's default; 0, unset (no pacing); else the rate."""
    if value is None:
        return default
    return value or None


def main(argv: list[str] | None = None) -> int:
    """Parse the options; run every chosen case in a child process, or (``--case``) one here."""
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument(
        "--platform", choices=(*PLATFORMS, "all"), default="all", help="the platform(s) to run (all)"
    )
    parser.add_argument(
        "--cases",
        nargs="+",
        choices=("unlimited", "limited"),
        help="the cases (default: Slack both, Feishu limited, DingTalk unlimited)",
    )
    parser.add_argument(
        "--dbs", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"]
    )
    parser.add_argument("--people", type=int, default=10_000, help="people, unlimited case (default 10000)")
    parser.add_argument(
        "--limited-people", type=int, default=1000, help="people, limited case (default 1000)"
    )
    parser.add_argument(
        "--limit-per-s",
        type=float,
        default=50.0,
        help="the fake's overall limit: Slack's chat.postMessage, Feishu's per app, DingTalk's batchSend "
        "calls (50)",
    )
    parser.add_argument(
        "--per-channel-per-s", type=float, default=1.0, help="the Slack fake's per-channel limit (1)"
    )
    parser.add_argument(
        "--per-user-per-s", type=float, default=5.0, help="the Feishu fake's per-user limit (5)"
    )
    parser.add_argument("--concurrency", type=int, help="DELIVERY_CONCURRENCY (default: the setting's)")
    # the limited case's pacing by Cadence: what a deployment would configure, i.e. the settings'
    # defaults. Slack: its published 1 message a second per channel and no invented workspace-wide
    # number (Slack publishes none; its 429s carry Retry-After, which Cadence honours). Feishu: its
    # published 50/s per app and 5/s per user. The unlimited case has no pacing.
    parser.add_argument(
        "--cadence-rate-per-s",
        type=float,
        help="limited case: SLACK_RATE_PER_S / FEISHU_RATE_PER_S / DINGTALK_RATE_PER_S (default: the "
        "setting's, Slack and DingTalk unset, Feishu 50; 0: unset)",
    )
    parser.add_argument(
        "--cadence-per-recipient-per-s",
        type=float,
        help="limited case: <PLATFORM>_PER_RECIPIENT_PER_S (default: the setting's, Slack 1, Feishu 5, "
        "DingTalk unset; 0: unset)",
    )
    parser.add_argument("--identities", choices=("known", "lookup"), default="known")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--profile", metavar="FILE", help="with --case: a cProfile of the timed phase")
    parser.add_argument("--case", choices=("unlimited", "limited"), help=argparse.SUPPRESS)
    parser.add_argument("--db", choices=("sqlite", "postgresql"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.people, args.limited_people) < 2:
        parser.error("--people and --limited-people must be at least 2")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().setLevel(logging.WARNING)
    if args.case is None:
        if args.profile:
            parser.error(
                "--profile needs one case: --platform slack|feishu|dingtalk --case unlimited|limited "
                "--db sqlite|postgresql"
            )
        return run_children(args, argv)
    if args.platform == "all":
        parser.error("--case needs one platform: --platform slack|feishu|dingtalk")
    if args.platform == "dingtalk" and args.identities == "lookup":
        parser.error("--identities lookup: DingTalk has no lookup by email (the org file's dingtalk_id)")
    limited = args.case == "limited"
    sections = {"slack": SlackSettings, "feishu": FeishuSettings, "dingtalk": DingtalkSettings}
    defaults = sections[args.platform]()
    # the fake's per-recipient limit: Slack's per channel, Feishu's per user; DingTalk's has no rate
    per_recipient = {"slack": args.per_channel_per_s, "feishu": args.per_user_per_s}.get(args.platform)
    case = Case(
        platform=args.platform,
        mode=args.case,
        db=args.db or "sqlite",
        people=args.limited_people if limited else args.people,
        limit_per_s=args.limit_per_s if limited else None,
        per_recipient_limit=per_recipient if limited else None,
        concurrency=args.concurrency,
        rate_per_s=rate_option(args.cadence_rate_per_s, defaults.rate_per_s) if limited else None,
        per_recipient_per_s=(
            rate_option(args.cadence_per_recipient_per_s, defaults.per_recipient_per_s) if limited else None
        ),
        identities=args.identities,
        profile=args.profile,
    )
    return run_in_process(case, args.postgres_url)


if __name__ == "__main__":
    sys.exit(main())
