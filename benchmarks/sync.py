"""Benchmark a Jira source sync: a full read of 100,000 issues, then an incremental run with 1% changed.

Run as ``python benchmarks/sync.py``. For each database it prints one JSON line::

    {"benchmark": "sync", "source": "jira", "db": "sqlite", "issues": 100000, "full_issues_per_s": ...,
     "incremental_changed": 1000, "incremental_requests": ..., "full_requests": ..., "peak_rss_mb": ...,
     "incremental_ratio": ..., "rss_flat": {...}, ...}

The Jira fake (``tests/fakes/jira.py``, Cloud, profile zone UTC) runs in a process of its own, so the
measured process's CPU and peak RSS are Cadence's alone (a 2-core machine: one core each); a pipe
carries its address and users to the benchmark, and later "change N issues now" and its counters.
``JiraFake.generate`` builds ``--issues`` issues for ``--people`` people in projects PAY, CORE, WEB
and OPS, created over the 90 days before a point a day ago and updated since (so everything the full
read sees is at least a day old); a fifth of the people hide their e-mail address from the items.

Setup (not timed): a fresh database (SQLite in a temp dir; PostgreSQL ``--postgres-url``, whose public
schema is dropped and recreated under the advisory lock the other benchmarks take), migrations, and an
org of the fake's people (their e-mails, no ``jira_id``) imported from a separate process as ``cadence
org import`` would. Then, each with a fresh ``JiraConnector`` (``jql="project in (PAY, CORE, WEB,
OPS)"``), as a ``cadence sync`` run would make:

1. full sync, timed: ``SourceSync(db, connector, SyncOptions()).run()`` (no cursor yet: every issue, a
   page of 100 at a time, plus the user look-ups by e-mail for the people the items could not name).
   ``full_issues_per_s`` = issues / seconds; ``full_requests`` = the run's ``RunReport.requests``.
2. the fake changes ``--changed`` issues (default 1%: summary and status, ``updated`` = now).
3. incremental sync: the same call again. The cursor the full run left is ``hwm = min(newest updated,
   run start - 2 min)`` = the newest generated update (a day ago), and this run reads from ``since =
   hwm - 15 min`` (the connector's overlap): the changed issues, plus the few generated ones updated
   in that overlap, which are re-read but not rewritten (their content hash matches).
   ``incremental_changed`` = the run's ``items_changed``; ``incremental_requests`` its ``requests``;
   ``incremental_ratio`` = incremental_requests / full_requests.

Checked afterwards (a wrong count adds an ``error`` field and a non-zero exit code): both runs ``ok``,
the full one read and wrote every issue, the incremental one changed exactly the issues the fake
changed, the database holds every issue once (``stored_items``) with the edited titles, the cursor
lies before the changes, every assignee row is attributed to a person.

``peak_rss_mb`` is the measured process's ``ru_maxrss`` (setup included); ``rss_before_sync_mb`` its
RSS just before the full sync. ``rss_flat`` (the default run, not with ``--child``): the same case
run first at ``--rss-probe`` issues (default a fifth) in a fresh process; memory is flat in the
number of issues when the peak grows by at most max(16 MB, 10%) from that size to the full one.
``splits_s`` (full sync): seconds inside ``SourceSync._write_page`` (hashing, the page's SELECT and
bulk writes, one transaction a page), waiting for the connector's next page (``next_page``: its fetch
where that did not overlap the previous write, JSON decoding, mapping), in the per-issue mapping alone
(JSON -> TaskRecord) and in the look-ups by e-mail (``find_people``);
``cpu_s``: CPU seconds Cadence and the fake used during the full sync (a process that used about as
many as the run lasted was the bottleneck). ``--profile FILE`` (with one ``--db``) writes a cProfile of
the full sync; the rates of a profiled run are not comparable to an unprofiled one.

The benchmark runs no ANALYZE: the tables are as a first sync finds them, with planner statistics only
if the server's autovacuum gathers them meanwhile. An unreachable PostgreSQL prints a line with
``skipped`` and does not fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import csv
import json
import logging
import multiprocessing
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, TypeVar

# run as a script: make the project importable without relying on an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import distinct, func, select

from connectors.base import Page, Scope
from connectors.jira import JiraConnector, scope_id
from connectors.sync import RunReport, SourceSync, SyncOptions
from storage import sync_state, tasks
from storage.engine import Database
from storage.migrate import upgrade
from tests.bench_support import Unreachable, ensure_database, import_org, owning

DEFAULT_POSTGRES_URL = os.environ.get(
    "CADENCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/cadence_bench"
)
PROJECTS = ("PAY", "CORE", "WEB", "OPS")
JQL = "project in (PAY, CORE, WEB, OPS)"
AGE = timedelta(days=1)  # the generated issues' newest possible update lies this long before the run
EDITED = " (edited)"  # what a change appends to an issue's summary
NEW_STATUSES = ("In Progress", "Done", "In Review")
# memory is "flat" when the peak grows by at most this much from the probe size to the full one
FLAT_MB, FLAT_SHARE = 16.0, 0.10

log = logging.getLogger("benchmarks.sync")
T = TypeVar("T")


class BenchmarkError(RuntimeError):
    """The fake or a helper process misbehaved."""


# --- the Jira fake, in a process of its own ---------------------------------------------------------


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mb() -> float:
    """This process's resident set now (Linux ``/proc``; the peak elsewhere)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as fh:
            pages = int(fh.read().split()[1])
    except (OSError, ValueError, IndexError):
        return peak_rss_mb()
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)


def fake_main(conn: Connection, issues: int, people: int, seed: int) -> None:
    """The fake process: generate the site, serve it on 127.0.0.1, answer the benchmark on ``conn``."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(_serve_fake(conn, issues, people, seed))


async def _serve_fake(conn: Connection, issues: int, people: int, seed: int) -> None:
    from tests.fakes.jira import JiraFake  # only this process imports the fake

    fake = JiraFake(time_zone="UTC", record_calls=False)
    began = time.perf_counter()
    users = fake.generate(
        issues=issues, people=people, projects=PROJECTS, start=datetime.now(UTC) - AGE, seed=seed
    )
    generated_s = time.perf_counter() - began
    await fake.start()
    conn.send(
        {
            "url": fake.url,
            "email": fake.email,
            "api_token": fake.api_token,
            "users": [(u.email, u.display_name, u.hidden_email) for u in users],
            "generate_s": round(generated_s, 3),
        }
    )
    try:
        while True:
            request = await asyncio.to_thread(conn.recv)
            op = request[0]
            if op == "change":
                conn.send(change_issues(fake, request[1], request[2]))
            elif op == "report":
                conn.send(
                    {
                        "calls": dict(fake.call_counts),
                        "cpu_s": cpu_seconds(),
                        "peak_rss_mb": peak_rss_mb(),
                    }
                )
            elif op == "stop":
                break
    finally:
        await fake.stop()
        conn.send("stopped")


def change_issues(fake: Any, count: int, seed: int) -> dict[str, Any]:
    """Edit ``count`` random issues now, as people would in Jira: summary and status, ``updated`` = now."""
    rng = random.Random(seed)
    ids = rng.sample(fake.issue_ids(), count)
    changed_at = time.time()
    for n, issue_id in enumerate(ids):
        summary = fake.issue_json(issue_id)["fields"]["summary"]
        fake.update_issue(issue_id, summary=summary + EDITED, status=NEW_STATUSES[n % len(NEW_STATUSES)])
    return {"ids": ids, "changed_at": changed_at}


class FakeProcess:
    """The benchmark's side of the fake process: one request at a time, answered over a pipe."""

    def __init__(self, issues: int, people: int, seed: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=fake_main, args=(child, issues, people, seed), name="jira-fake", daemon=True
        )
        self._lock = asyncio.Lock()

    async def start(self) -> dict[str, Any]:
        """Start the process; returns its address, credentials, users and how long generating took."""
        self._process.start()
        answer: dict[str, Any] = await asyncio.to_thread(self._recv, 300.0)
        return answer

    def _recv(self, timeout: float) -> Any:
        if not self._conn.poll(timeout):
            raise BenchmarkError(f"the Jira fake process did not answer within {timeout:.0f}s")
        return self._conn.recv()

    async def request(self, *request: Any, timeout: float = 120.0) -> Any:
        async with self._lock:
            self._conn.send(request)
            return await asyncio.to_thread(self._recv, timeout)

    async def stop(self) -> None:
        if self._process.pid is None:  # never started
            return
        if self._process.is_alive():
            with contextlib.suppress(BenchmarkError, OSError, EOFError):
                await self.request("stop", timeout=10.0)
        await asyncio.to_thread(self._process.join, 10.0)
        if self._process.is_alive():
            self._process.kill()


# --- the org, imported as `cadence org import` would (another process) -----------------------------


def write_org(path: Path, users: list[tuple[str, str, bool]]) -> None:
    """The fake's users as an org file: their e-mails and names, no ``jira_id`` (found by e-mail)."""
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(("email", "name", "timezone", "country", "locale"))
        for email, name, _hidden in users:
            writer.writerow((email, name, "UTC", "GB", "en"))


# --- a PostgreSQL database the benchmark owns (as benchmarks/engine.py does) -----------------------


# --- one run ---------------------------------------------------------------------------------------


class Stopwatch:
    """Seconds spent inside wrapped callables (the calls may overlap other work on the loop)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def wrap_async(
        self, name: str, method: Callable[..., Awaitable[T]]
    ) -> Callable[..., Coroutine[Any, Any, T]]:
        async def wrapper(*args: Any, **kwargs: Any) -> T:
            began = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - began

        return wrapper

    def wrap(self, name: str, method: Callable[..., T]) -> Callable[..., T]:
        def wrapper(*args: Any, **kwargs: Any) -> T:
            began = time.perf_counter()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - began

        return wrapper


def connector_for(site: dict[str, Any], watch: Stopwatch | None = None) -> JiraConnector:
    """A fresh connector to the fake, as each ``cadence sync`` run makes one."""
    connector = JiraConnector(base_url=site["url"], email=site["email"], api_token=site["api_token"], jql=JQL)
    if watch is not None:
        prepare = connector.prepare

        async def prepare_and_time_mapping() -> None:
            await prepare()
            mapper = connector._mapper  # the per-issue JSON -> TaskRecord step (read, not changed)
            if mapper is not None:
                mapper.record = watch.wrap("map_issues", mapper.record)  # type: ignore[method-assign]

        connector.prepare = prepare_and_time_mapping  # type: ignore[method-assign]
        pages = connector.pages

        async def timed_pages(
            scope: Scope, since: datetime | None, resume: str | None
        ) -> AsyncIterator[Page]:
            # how long the engine waits for each next page: the fetch (unless it was done while the
            # previous page was written) and the page's mapping
            iterator = pages(scope, since, resume)
            try:
                while True:
                    began = time.perf_counter()
                    try:
                        page = await anext(iterator)
                    except StopAsyncIteration:
                        return
                    finally:
                        watch.seconds["next_page"] += time.perf_counter() - began
                    yield page
            finally:
                await iterator.aclose()

        connector.pages = timed_pages  # type: ignore[assignment]
    return connector


async def run_sync(db: Database, site: dict[str, Any], watch: Stopwatch | None = None) -> RunReport:
    connector = connector_for(site, watch)
    sync = SourceSync(db, connector, SyncOptions())
    if watch is not None:
        sync._write_page = watch.wrap_async("write_pages", sync._write_page)  # type: ignore[method-assign]
        sync._find_people = watch.wrap_async("find_people", sync._find_people)  # type: ignore[method-assign]
    try:
        return await sync.run()
    finally:
        await connector.close()


async def scalar(db: Database, query: Any) -> int:
    async with db.engine.connect() as conn:
        return int((await conn.execute(query)).scalar_one())


async def stored_counts(db: Database) -> tuple[int, int, int, int, int, int]:
    """Live items, distinct ids, edited titles, assignee rows, those with a person, Jira identities."""
    items, people, ids = tasks.T, tasks.A, tasks.IDS
    jira = items.c.source == "jira"
    queries = (
        select(func.count()).where(jira, items.c.deleted_at.is_(None)),
        select(func.count(distinct(items.c.external_id))).where(jira),
        select(func.count()).where(jira, items.c.title.endswith(EDITED)),
        select(func.count()).select_from(people).where(people.c.source == "jira"),
        select(func.count()).where(people.c.source == "jira", people.c.person_id.is_not(None)),
        select(func.count()).select_from(ids).where(ids.c.platform == "jira"),
    )
    async with db.engine.connect() as conn:
        counts = [int((await conn.execute(query)).scalar_one()) for query in queries]
    return counts[0], counts[1], counts[2], counts[3], counts[4], counts[5]


def route_delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    """Calls per route the fake received between two reports (short names: ``search/jql``...)."""
    names = {route.split("/rest/api/3/", 1)[-1]: n - before.get(route, 0) for route, n in after.items()}
    return {name: n for name, n in sorted(names.items()) if n}


async def run_case(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Set up, time the full and the incremental sync, verify; returns the JSON record."""
    if args.db == "sqlite":
        return await _run_case(args, f"sqlite:///{workdir / 'cadence.db'}", workdir)
    await ensure_database(args.postgres_url)
    async with owning(args.postgres_url):
        return await _run_case(args, args.postgres_url, workdir)


async def _run_case(args: argparse.Namespace, url: str, workdir: Path) -> dict[str, Any]:
    issues, people = args.issues, args.people
    changed = args.changed if args.changed is not None else max(1, issues // 100)
    began = time.perf_counter()
    fake = FakeProcess(issues, people, args.seed)
    db = Database(url)
    try:
        site = await fake.start()
        await upgrade(db.engine)
        org = workdir / "org.csv"
        write_org(org, site["users"])
        await import_org(url, org)
        if await scalar(db, select(func.count()).where(tasks.P.c.active.is_(True))) != people:
            raise BenchmarkError("the org import did not create everyone")
        setup_s = time.perf_counter() - began

        # 1. the full sync (timed)
        rss_before = current_rss_mb()
        watch = Stopwatch()
        before = await fake.request("report")
        profiler = cProfile.Profile() if args.profile else None
        cpu = cpu_seconds()
        if profiler is not None:
            profiler.enable()
        started = time.perf_counter()
        full = await run_sync(db, site, watch)
        full_s = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.profile)
        cpu = cpu_seconds() - cpu
        after_full = await fake.request("report")
        async with db.sessions() as session:
            cursor = await sync_state.cursor(
                session, source="jira", tenant=site["url"].rstrip("/"), scope=scope_id(JQL)
            )
        rss_after_full = current_rss_mb()

        # 2. the fake changes 1% of the issues now; 3. the incremental sync
        edit = await fake.request("change", changed, args.seed + 1)
        started = time.perf_counter()
        incremental = await run_sync(db, site)
        incremental_s = time.perf_counter() - started
        after_incremental = await fake.request("report")

        stored, distinct, edited, assignees, attributed, mapped = await stored_counts(db)
    finally:
        await fake.stop()
        await db.dispose()

    full_calls = route_delta(after_full["calls"], before["calls"])
    incremental_calls = route_delta(after_incremental["calls"], after_full["calls"])
    full_searches = full_calls.get("search/jql", 0)
    incremental_searches = incremental_calls.get("search/jql", 0)
    hwm = cursor.hwm.replace(tzinfo=UTC) if cursor.hwm and cursor.hwm.tzinfo is None else cursor.hwm
    since = hwm - timedelta(minutes=15) if hwm else None
    changed_at = datetime.fromtimestamp(edit["changed_at"], UTC)
    record: dict[str, Any] = {
        "benchmark": "sync",
        "source": "jira",
        "db": args.db,
        "issues": issues,
        "full_issues_per_s": round(issues / full_s, 1),
        "incremental_changed": incremental.items_changed,
        "incremental_requests": incremental.requests,
        "full_requests": full.requests,
        "peak_rss_mb": peak_rss_mb(),
        "people": people,
        "changed": changed,
        "incremental_ratio": round(incremental.requests / full.requests, 4) if full.requests else None,
        # the searches alone (the full run's other requests are mostly user look-ups by e-mail for the
        # people whose items hide their address, done once)
        "search_requests": {
            "full": full_searches,
            "incremental": incremental_searches,
            "ratio": round(incremental_searches / full_searches, 4) if full_searches else None,
        },
        "requests_by_route": {"full": full_calls, "incremental": incremental_calls},
        "seconds": {
            "full": round(full_s, 3),
            "incremental": round(incremental_s, 3),
            "setup": round(setup_s, 3),
            "fake_generate": site["generate_s"],
        },
        # full sync, seconds: inside the engine's page writes, waiting for the connector's next page
        # (the HTTP fetch where it did not overlap the previous write, JSON decoding, the mapping), in
        # the per-issue mapping alone, and looking people up by e-mail
        "splits_s": {name: round(v, 3) for name, v in sorted(watch.seconds.items())},
        "cpu_s": {"cadence": round(cpu, 2), "jira_fake": round(after_full["cpu_s"] - before["cpu_s"], 2)},
        "full": {
            "status": full.status,
            "kind": full.kind,
            "items_read": full.items_read,
            "items_changed": full.items_changed,
            # RunReport.unknown_count; the database's truth is "assignees" (rows without a person)
            "unknown_people": full.unknown_count,
        },
        "incremental": {
            "status": incremental.status,
            "kind": incremental.kind,
            "items_read": incremental.items_read,  # the changed issues plus the overlap re-read
            "items_changed": incremental.items_changed,
            "items_deleted": incremental.items_deleted,
            "unknown_people": incremental.unknown_count,
        },
        "cursor": {
            "hwm_after_full": hwm.isoformat() if hwm else None,
            "incremental_since": since.isoformat() if since else None,
            "changes_at": changed_at.isoformat(),
        },
        "stored_items": stored,
        "edited_items_stored": edited,
        "assignees": {"rows": assignees, "attributed": attributed, "people_mapped": mapped},
        "rss_mb": {"before_sync": rss_before, "after_full": rss_after_full},
        "fake_peak_rss_mb": after_incremental["peak_rss_mb"],
    }
    if args.profile:
        record["profile"] = args.profile
    problems = []
    if full.status != "ok" or incremental.status != "ok":
        problems.append(f"runs not ok: full {full.status} {full.errors}, incremental {incremental.status}")
    if (full.kind, incremental.kind) != ("full", "incremental"):
        problems.append(f"run kinds {full.kind}/{incremental.kind}")
    if full.items_read != issues or full.items_changed != issues:
        problems.append(f"full run read {full.items_read} and wrote {full.items_changed} of {issues} issues")
    if incremental.items_changed != changed:
        problems.append(f"incremental run changed {incremental.items_changed} items, the fake {changed}")
    if stored != issues or distinct != issues:
        problems.append(f"{stored} live items stored ({distinct} distinct), {issues} issues")
    if edited != changed:
        problems.append(f"{edited} edited titles stored, {changed} issues edited")
    if since is None or since >= changed_at:
        problems.append("the changes do not lie after the incremental run's since")
    if attributed != assignees:
        problems.append(f"{assignees - attributed} assignee rows without a person")
    if problems:
        record["error"] = "; ".join(problems)
    return record


def run_in_process(args: argparse.Namespace) -> int:
    """Run one database's case here and print its line; returns its exit code."""
    head = {"benchmark": "sync", "source": "jira", "db": args.db, "issues": args.issues}
    with tempfile.TemporaryDirectory(prefix="cadence-sync-") as tmp:
        try:
            record = asyncio.run(run_case(args, Path(tmp)))
        except Unreachable as exc:
            print(json.dumps({**head, "skipped": str(exc)}), flush=True)
            return 0
        except Exception as exc:
            print(json.dumps({**head, "error": f"{type(exc).__name__}: {exc}"[:500]}), flush=True)
            raise
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if "error" in record else 0


# --- the parent: each database (and the memory probe) in a child process ---------------------------


def child(argv: list[str], db: str, issues: int, *, profile: bool) -> tuple[int, dict[str, Any] | None]:
    """Run one case in a fresh process; returns its exit code and its JSON line."""
    rest = list(argv)
    for option in ("--db", "--issues", "--profile"):  # replaced below (or dropped)
        while option in rest:
            at = rest.index(option)
            del rest[at : at + 2]
    rest = [a for a in rest if not a.startswith(("--db=", "--issues=", "--profile="))]
    command = [sys.executable, str(Path(__file__).resolve()), *rest, "--child", "--db", db]
    command += ["--issues", str(issues)]
    if profile and "--profile" in argv:
        command += ["--profile", argv[argv.index("--profile") + 1]]
    done = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
    lines = [line for line in done.stdout.splitlines() if line.strip().startswith("{")]
    return done.returncode, (json.loads(lines[-1]) if lines else None)


def rss_flat(small: dict[str, Any] | None, big: dict[str, Any]) -> dict[str, Any]:
    """The probe's peak RSS against the full size's, and whether the growth is within the bound."""
    if small is None or "peak_rss_mb" not in small:
        return {"error": (small or {}).get("error") or (small or {}).get("skipped") or "the probe failed"}
    growth = round(big["peak_rss_mb"] - small["peak_rss_mb"], 1)
    return {
        "issues": [small["issues"], big["issues"]],
        "peak_rss_mb": [small["peak_rss_mb"], big["peak_rss_mb"]],
        "rss_before_sync_mb": [small["rss_mb"]["before_sync"], big["rss_mb"]["before_sync"]],
        "growth_mb": growth,
        "growth_mb_per_10k_issues": round(growth / (big["issues"] - small["issues"]) * 10_000, 2),
        "flat": growth <= max(FLAT_MB, FLAT_SHARE * small["peak_rss_mb"]),
    }


def run_children(args: argparse.Namespace, argv: list[str]) -> int:
    code = 0
    for db in ("sqlite", "postgresql") if args.db == "all" else (args.db,):
        probe = args.rss_probe if args.rss_probe is not None else args.issues // 5
        small = None
        if 0 < probe < args.issues:
            _, small = child(argv, db, probe, profile=False)
            if small is not None and "skipped" in small:
                print(json.dumps({**small, "issues": args.issues}), flush=True)
                continue
        returncode, record = child(argv, db, args.issues, profile=True)
        if record is None:
            record = {"benchmark": "sync", "source": "jira", "db": db, "issues": args.issues}
            record["error"] = f"the child process exited with {returncode} and printed no line"
        elif 0 < probe < args.issues and "skipped" not in record and "error" not in record:
            record["rss_flat"] = rss_flat(small, record)
            if small is not None and "error" in small:
                record["error"] = f"the {probe}-issue memory probe failed: {small['error']}"
        print(json.dumps(record, ensure_ascii=False), flush=True)
        code = code or returncode or int("error" in record)
    return code


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "all"), default="all")
    parser.add_argument("--issues", type=int, default=100_000, help="issues in the fake (100000)")
    parser.add_argument("--people", type=int, default=1_000, help="people in the fake and the org (1000)")
    parser.add_argument(
        "--changed", type=int, help="issues the fake changes before the incremental run (1%%)"
    )
    parser.add_argument(
        "--rss-probe",
        type=int,
        help="issues of the memory probe run first in a fresh process (default a fifth; 0: none)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--profile", metavar="FILE", help="with one --db: a cProfile of the full sync")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.issues < 100 or args.people < 2:
        parser.error("--issues must be at least 100 and --people at least 2")
    if args.changed is not None and not 0 < args.changed <= args.issues:
        parser.error("--changed must be between 1 and --issues")
    if args.profile and args.db == "all":
        parser.error("--profile needs one database: --db sqlite|postgresql")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.child:
        return run_in_process(args)
    return run_children(args, argv)


if __name__ == "__main__":
    sys.exit(main())
