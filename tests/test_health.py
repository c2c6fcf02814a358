"""``/healthz`` and ``/metrics`` served by a real aiohttp runner on 127.0.0.1: healthy on each database,
503 with the reason when the database is down or silent, the outbox depth read at scrape time, the
process's counters and a well-formed Prometheus text exposition."""

from __future__ import annotations

import asyncio
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlmodel import col, select

from bot.health import CONTENT_TYPE, Metrics, health_routes, start_health
from bot.http_runner import bound_port
from storage import outbox
from storage.engine import Database
from storage.models import Outbox

WAIT = aiohttp.ClientTimeout(total=10)
Serve = Callable[..., Awaitable[str]]
SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{([a-zA-Z_]\w*="([^"\\]|\\.)*",?)*\})? \S+$')


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start the health app for a database on 127.0.0.1, port 0; everything started is stopped after."""
    runners: list[aiohttp.web.AppRunner] = []
    databases: list[Database] = []

    async def start(db: Database | str, metrics: Metrics | None = None, **options: Any) -> str:
        if isinstance(db, str):
            db = Database(db, pool_size=1)
            databases.append(db)
        runner = await start_health(db, metrics or Metrics(), host="127.0.0.1", port=0, **options)
        runners.append(runner)
        return f"http://127.0.0.1:{bound_port(runner)}"

    yield start
    for runner in runners:
        await runner.cleanup()
    for database in databases:
        await database.dispose()


async def get(url: str) -> tuple[int, str, str]:
    async with aiohttp.ClientSession(timeout=WAIT) as client, client.get(url) as response:
        return response.status, response.headers.get("Content-Type", ""), await response.text()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_exposition(body: str) -> dict[str, str]:
    """Assert the Prometheus text format; returns ``{sample name with labels: value}``."""
    assert body.endswith("\n")
    samples: dict[str, str] = {}
    typed: set[str] = set()
    lines = body.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("# HELP "):
            assert lines[i + 1].startswith(f"# TYPE {line.split()[2]} "), line
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert kind in {"counter", "gauge", "histogram", "summary"}
            typed.add(name)
        else:
            assert SAMPLE.match(line), line
            name, value = line.rsplit(" ", 1)
            float(value.replace("+Inf", "inf"))
            assert re.sub(r"(_bucket|_sum|_count)?\{.*$|(_bucket|_sum|_count)$", "", name) in typed, name
            samples[name] = value
    return samples


async def test_healthz_is_ok_when_the_database_answers(db: Database, serve: Serve) -> None:
    base = await serve(db)

    status, content_type, body = await get(f"{base}/healthz")

    assert status == 200
    assert content_type.startswith("application/json")
    assert body == '{"status": "ok", "database": "ok"}'


async def test_healthz_is_503_with_the_reason_when_postgresql_is_not_listening(serve: Serve) -> None:
    base = await serve(f"postgresql://postgres@127.0.0.1:{closed_port()}/cadence")

    status, _, body = await get(f"{base}/healthz")

    assert status == 503
    assert '"status": "unavailable"' in body
    assert '"database": "error"' in body
    assert "refused" in body.lower() or "connect" in body.lower(), body


async def test_healthz_is_503_when_the_sqlite_file_cannot_be_opened(tmp_path: Path, serve: Serve) -> None:
    base = await serve(f"sqlite:///{tmp_path / 'no-such-folder' / 'cadence.db'}")

    status, _, body = await get(f"{base}/healthz")

    assert status == 503
    assert "unable to open database file" in body


async def test_healthz_gives_up_on_a_database_that_never_answers(serve: Serve) -> None:
    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # accept the connection and say nothing

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        base = await serve(f"postgresql://postgres@127.0.0.1:{port}/cadence", timeout=0.2)
        status, _, body = await get(f"{base}/healthz")
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()

    assert status == 503
    assert "no answer within 0.2 s" in body


async def test_metrics_show_the_outbox_depth_read_at_scrape_time(db: Database, serve: Serve) -> None:
    base = await serve(db)
    _, _, before = await get(f"{base}/metrics")

    async with db.sessions() as session, session.begin():
        await outbox.enqueue(
            session,
            rows=[
                {
                    "idempotency_key": f"k{i}",
                    "platform": "slack",
                    "kind": "reply",
                    "recipient": "U1",
                    "payload": {},
                }
                for i in range(5)
            ],
        )
        ids = list((await session.execute(select(col(Outbox.id)).order_by(col(Outbox.id)))).scalars())
        await outbox.mark(session, outbox_id=ids[0], status="dead", error="channel_not_found")
        await outbox.mark(session, outbox_id=ids[1], status="sent", platform_message_id="m1")
    status, content_type, after = await get(f"{base}/metrics")

    assert check_exposition(before)['cadence_outbox_depth{status="pending"}'] == "0"
    assert status == 200
    assert content_type == CONTENT_TYPE
    samples = check_exposition(after)
    assert samples['cadence_outbox_depth{status="pending"}'] == "3"
    assert samples['cadence_outbox_depth{status="sending"}'] == "0"
    assert samples['cadence_outbox_depth{status="dead"}'] == "1"
    assert samples["cadence_database_up"] == "1"
    assert "# TYPE cadence_outbox_depth gauge" in after


async def test_metrics_count_sends_429s_and_ack_latency(db: Database, serve: Serve) -> None:
    metrics = Metrics()
    base = await serve(db, metrics)
    for _ in range(3):
        metrics.sent("slack", "sent")
    metrics.sent("slack", "retry")
    metrics.sent("feishu", "dead")
    metrics.rate_limited("slack")
    metrics.rate_limited("slack")
    for seconds in (0.004, 0.2, 0.2, 2.5, 12.0):
        metrics.acked(seconds)

    _, _, body = await get(f"{base}/metrics")

    samples = check_exposition(body)
    assert samples['cadence_sends_total{platform="slack",outcome="sent"}'] == "3"
    assert samples['cadence_sends_total{platform="slack",outcome="retry"}'] == "1"
    assert samples['cadence_sends_total{platform="feishu",outcome="dead"}'] == "1"
    assert samples['cadence_http_429_total{platform="slack"}'] == "2"
    assert "# TYPE cadence_sends_total counter" in body
    assert "# TYPE cadence_ack_latency_seconds histogram" in body
    assert samples['cadence_ack_latency_seconds_bucket{le="0.005"}'] == "1"
    assert samples['cadence_ack_latency_seconds_bucket{le="0.25"}'] == "3"
    assert samples['cadence_ack_latency_seconds_bucket{le="2.0"}'] == "3"
    assert samples['cadence_ack_latency_seconds_bucket{le="3.0"}'] == "4"
    assert samples['cadence_ack_latency_seconds_bucket{le="10.0"}'] == "4"
    assert samples['cadence_ack_latency_seconds_bucket{le="+Inf"}'] == "5"
    assert samples["cadence_ack_latency_seconds_count"] == "5"
    assert float(samples["cadence_ack_latency_seconds_sum"]) == pytest.approx(14.904)


async def test_metrics_still_serve_the_counters_when_the_database_is_down(serve: Serve) -> None:
    metrics = Metrics()
    metrics.rate_limited("dingtalk")
    base = await serve(f"postgresql://postgres@127.0.0.1:{closed_port()}/cadence", metrics)

    status, _, body = await get(f"{base}/metrics")

    assert status == 200
    samples = check_exposition(body)
    assert samples["cadence_database_up"] == "0"
    assert not any(name.startswith("cadence_outbox_depth{") for name in samples)
    assert samples['cadence_http_429_total{platform="dingtalk"}'] == "1"


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.sent('we"ird\\name\nx', "sent")

    body = metrics.render(depth={"pending": 0})

    assert 'cadence_sends_total{platform="we\\"ird\\\\name\\nx",outcome="sent"} 1' in body
    check_exposition(body)


def test_health_routes_serve_only_the_two_endpoints(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        app = health_routes(database, Metrics())
        paths = sorted({r.resource.canonical for r in app.router.routes() if r.resource is not None})
        methods = sorted({r.method for r in app.router.routes()})
    finally:
        asyncio.run(database.dispose())
    assert paths == ["/healthz", "/metrics"]
    assert methods == ["GET", "HEAD"]
