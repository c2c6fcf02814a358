"""``/healthz`` and Prometheus ``/metrics`` on ``cadence run``'s HTTP port, and the counters behind them.

The exposition is Prometheus' text format 0.0.4, written here by hand (a few lines) rather than
with a client library: ``# HELP``/``# TYPE`` per family, then ``name{label="value"} number``.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
import threading
from collections.abc import Callable, Iterable

from aiohttp import web

from storage import dead_letters
from storage.engine import Database

log = logging.getLogger(__name__)

HEALTH_TIMEOUT = 2.0
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# platforms want an acknowledgement within about 3 s: the buckets are finest below that
ACK_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0)
# suggested ``outcome`` values for ``Metrics.sent``; any short string is accepted
# "found": an in-doubt message the platform turned out to have already (not sent again)
OUTCOMES = ("sent", "found", "retry", "dead", "obsolete")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return f"{{{inner}}}" if inner else ""


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _family(name: str, kind: str, help_text: str, samples: list[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


class Metrics:
    """The process's counters; delivery and the platforms call these, ``/metrics`` renders them.

    Safe to call from any thread (some platform SDKs run their callbacks on their own threads).
    """

    def __init__(self, *, ack_buckets: Iterable[float] = ACK_BUCKETS) -> None:
        self._lock = threading.Lock()
        self._sends: dict[tuple[str, str], int] = {}
        self._rate_limited: dict[str, int] = {}
        self._bounds = sorted(float(b) for b in ack_buckets)
        self._ack_buckets = [0] * len(self._bounds)  # per bucket, not yet cumulative
        self._ack_sum = 0.0
        self._ack_count = 0

    def sent(self, platform: str, outcome: str) -> None:
        """One send attempt ended: ``outcome`` is e.g. sent, retry, dead or obsolete (see OUTCOMES)."""
        with self._lock:
            key = (platform, outcome)
            self._sends[key] = self._sends.get(key, 0) + 1

    def rate_limited(self, platform: str) -> None:
        """The platform answered HTTP 429 (or its rate-limit error code)."""
        with self._lock:
            self._rate_limited[platform] = self._rate_limited.get(platform, 0) + 1

    def acked(self, seconds: float) -> None:
        """An inbound event was acknowledged to its platform ``seconds`` after it arrived."""
        seconds = max(0.0, float(seconds))
        with self._lock:
            index = bisect.bisect_left(self._bounds, seconds)
            if index < len(self._bounds):
                self._ack_buckets[index] += 1
            self._ack_sum += seconds
            self._ack_count += 1

    def render(self, *, depth: dict[str, int] | None) -> str:
        """The exposition text; ``depth`` (rows per outbox status) is None when the database failed."""
        with self._lock:
            sends = sorted(self._sends.items())
            limited = sorted(self._rate_limited.items())
            buckets, ack_sum, ack_count = list(self._ack_buckets), self._ack_sum, self._ack_count
        lines: list[str] = []
        lines += _family(
            "cadence_database_up",
            "gauge",
            "1 if the database answered this scrape, else 0.",
            [f"cadence_database_up {0 if depth is None else 1}"],
        )
        lines += _family(
            "cadence_outbox_depth",
            "gauge",
            "Outbox rows by status (pending, sending, dead), read from the database at scrape time.",
            [f"cadence_outbox_depth{_labels([('status', s)])} {n}" for s, n in sorted((depth or {}).items())],
        )
        lines += _family(
            "cadence_sends_total",
            "counter",
            "Outbox send attempts by platform and outcome.",
            [f"cadence_sends_total{_labels([('platform', p), ('outcome', o)])} {n}" for (p, o), n in sends],
        )
        lines += _family(
            "cadence_http_429_total",
            "counter",
            "Rate-limit answers (HTTP 429) from each platform.",
            [f"cadence_http_429_total{_labels([('platform', p)])} {n}" for p, n in limited],
        )
        cumulative, running = [], 0
        for bound, n in zip(self._bounds, buckets, strict=True):
            running += n
            cumulative.append(f"cadence_ack_latency_seconds_bucket{_labels([('le', repr(bound))])} {running}")
        lines += _family(
            "cadence_ack_latency_seconds",
            "histogram",
            "Time from an inbound event's arrival to its acknowledgement to the platform.",
            [
                *cumulative,
                f'cadence_ack_latency_seconds_bucket{{le="+Inf"}} {ack_count}',
                f"cadence_ack_latency_seconds_sum {_number(ack_sum)}",
                f"cadence_ack_latency_seconds_count {ack_count}",
            ],
        )
        return "\n".join(lines) + "\n"


def _reason(exc: BaseException) -> str:
    """One line saying what went wrong (SQLAlchemy appends the SQL and a link on later lines)."""
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"[:300]


def add_health_routes(
    web_app: web.Application, db: Database, metrics: Metrics, *, timeout: float = HEALTH_TIMEOUT
) -> web.Application:
    """Add GET /healthz and /metrics to ``web_app`` (e.g. the Slack HTTP mode app on the same port)."""

    async def healthz(_request: web.Request) -> web.Response:
        try:
            async with asyncio.timeout(timeout):
                async with db.sessions() as session:
                    await dead_letters.ping(session)
        except TimeoutError:
            reason = f"no answer within {timeout:g} s"
        except Exception as exc:  # whatever the driver raises, the answer is "not healthy, because"
            reason = _reason(exc)
        else:
            return web.json_response({"status": "ok", "database": "ok"})
        log.warning("health check failed: database: %s", reason)
        return web.json_response({"status": "unavailable", "database": "error", "reason": reason}, status=503)

    async def metrics_text(_request: web.Request) -> web.Response:
        depth: dict[str, int] | None = None
        try:
            async with asyncio.timeout(timeout):
                async with db.sessions() as session:
                    depth = await dead_letters.count_by_status(session)
        except Exception as exc:  # the process's own counters are still worth serving
            log.warning("metrics: could not read the outbox depth: %s", _reason(exc))
        return web.Response(
            body=metrics.render(depth=depth).encode("utf-8"), headers={"Content-Type": CONTENT_TYPE}
        )

    web_app.router.add_get("/healthz", healthz)
    web_app.router.add_get("/metrics", metrics_text)
    return web_app


def health_routes(db: Database, metrics: Metrics, *, timeout: float = HEALTH_TIMEOUT) -> web.Application:
    """An aiohttp application serving only GET /healthz and GET /metrics."""
    return add_health_routes(web.Application(), db, metrics, timeout=timeout)


async def start_health(
    db: Database,
    metrics: Metrics,
    *,
    host: str,
    port: int,
    timeout: float = HEALTH_TIMEOUT,
    more_routes: Callable[[web.Application], object] | None = None,
) -> web.AppRunner:
    """Serve ``health_routes`` (and ``more_routes``) on ``host:port`` (0: a free port, see
    ``bound_port``); stop: ``cleanup()``."""
    web_app = health_routes(db, metrics, timeout=timeout)
    if more_routes is not None:
        more_routes(web_app)
    runner = web.AppRunner(web_app, shutdown_timeout=5.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
