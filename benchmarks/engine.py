"""Benchmark the inbound conversation path: N people answer a weekly recap through the router.

Run as ``python benchmarks/engine.py``. For each database it prints one JSON line::

    {"benchmark": "engine", "db": "sqlite", "people": 1000, "answers": 6000, "answers_per_s": ..., ...}

Per database: a fresh schema, migrations (``App.start``), a generated org of ``--people`` people
(one HR admin, ~5% managers, the rest employees; zh-CN/en, Asia/Shanghai and America/Los_Angeles),
then the HR admin types ``cycle start weekly`` (not timed). The timed phase is every person answering
the whole weekly recap (5 answers and "submit") through ``Router.receive``: journal, engine and outbox
in their transactions, ``--concurrency`` people at once. The delivery worker does not run (it is a
separate path). Afterwards the database is checked: every assignment submitted, 5 answers per person,
every journal row processed without error; a wrong count makes the exit code non-zero.

With ``--db both`` each database runs in its own child process, so ``peak_rss_mb`` is that database's
own peak. An unreachable PostgreSQL prints an ``error`` line and does not fail the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

# run as a script: make the project importable without relying on an installed package
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.app import App
from bot.platforms.base import IncomingEvent
from bot.platforms.console import ConsolePlatform
from bot.settings import QuietSettings, Settings
from conversations.org_service import import_org_file
from storage.engine import Database
from tests.bench_support import on_a_workday_morning

# a database of its own: the benchmark drops its schema, which must never race the test suite's
DEFAULT_POSTGRES_URL = os.environ.get(
    "CADENCE_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/cadence_bench"
)
# what every person types, in order: the five weekly recap steps, then "submit" at the summary
SCRIPT = (
    "Shipped feature 42\nFixed bug 7",  # wins
    "4",  # week_rating
    "skip",  # blockers (optional)
    "Plan Q1",  # next_week
    "no",  # discuss_in_one_on_one
    "submit",  # at the summary
)
# a PostgreSQL advisory lock key ("CADBENCH" in ASCII) and how long a second run waits for it
LOCK_KEY = 0x4341444245_4E4348 % 2**63
LOCK_WAIT = 600
STORED_ANSWERS = 5  # rows in ``answer`` per person (the "submit" is not a step)
NOTE = (
    "timed phase = inbound path only (Router.receive: journal + engine + outbox rows, "
    "one event at a time per person, --concurrency people at once); outbox delivery to the "
    "platform is excluded and measured separately"
)


log = logging.getLogger("benchmarks.engine")


class BenchmarkError(RuntimeError):
    """The run finished but the database does not hold what it should."""


class Unreachable(RuntimeError):
    """The PostgreSQL server could not be reached (or logged into)."""


# --- the org -----------------------------------------------------------------------------------


def write_org(path: Path, people: int) -> tuple[str, list[str]]:
    """A CSV org of ``people`` people; returns the HR admin's email and everyone's emails."""
    if people < 2:
        raise ValueError("--people must be at least 2 (an HR admin and one more)")
    managers = max(1, min(50, (people - 1) // 20))
    rows: list[dict[str, str]] = []

    def person(i: int, role: str, manager: str, department: str) -> dict[str, str]:
        chinese = i % 2 == 0
        return {
            "email": f"{role}{i:05d}@bench.example.com",
            "name": f"测试{role}{i}" if chinese else f"Bench {role.title()} {i}",
            "manager_email": manager,
            "department": department,
            "title": role,
            "timezone": "Asia/Shanghai" if chinese else "America/Los_Angeles",
            "country": "CN" if chinese else "US",
            "locale": "zh-CN" if chinese else "en",
            "roles": {"hr": "hr", "manager": "manager"}.get(role, ""),
        }

    head = "manager00000@bench.example.com"
    rows.append(person(0, "hr", head, "People"))
    for m in range(managers):
        rows.append(person(m, "manager", "" if m == 0 else head, f"Dept {m:02d}"))
    for e in range(people - 1 - managers):
        m = e % managers
        rows.append(person(e, "employee", f"manager{m:05d}@bench.example.com", f"Dept {m:02d}"))
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows[0]["email"], [r["email"] for r in rows]


# --- one database ------------------------------------------------------------------------------


async def ensure_database(url: str) -> None:
    """Create the benchmark's database on first use (through the server's own "postgres" database)."""
    target = make_url(url)
    server = Database(target.set(database="postgres").render_as_string(hide_password=False), pool_size=1)
    try:
        # CREATE DATABASE cannot run inside a transaction
        async with server.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            exists = await conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
            )
            if exists.scalar() is None:
                await conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    except Exception as exc:  # asyncpg raises OSError or its own errors when unreachable
        shown = target.render_as_string(hide_password=True)
        raise Unreachable(f"PostgreSQL at {shown} is unreachable: {type(exc).__name__}: {exc}") from exc
    finally:
        await server.dispose()


async def fresh_postgres(url: str) -> None:
    """Drop and recreate the public schema: the benchmark owns this database while it runs."""
    database = Database(url, pool_size=1)
    try:
        async with database.engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await database.dispose()


@contextlib.asynccontextmanager
async def owning(url: str) -> AsyncIterator[None]:
    """Hold an advisory lock for the whole run, so two benchmarks never drop each other's schema.

    A second run on the same database waits (up to LOCK_WAIT) instead of wiping the first one's
    tables mid-measurement. Only benchmarks take this lock: keep the test suite off this database.
    """
    shown = make_url(url).render_as_string(hide_password=True)
    database = Database(url, pool_size=1)
    try:
        try:
            conn = await database.engine.connect()
        except Exception as exc:  # asyncpg raises OSError or its own errors when unreachable
            raise Unreachable(f"PostgreSQL at {shown} is unreachable: {type(exc).__name__}: {exc}") from exc
        try:
            await conn.execute(text(f"SET lock_timeout = '{LOCK_WAIT}s'"))
            if not (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})).scalar():
                log.warning("another benchmark is using %s; waiting up to %ds", shown, LOCK_WAIT)
                try:
                    await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
                except Exception as exc:
                    raise BenchmarkError(f"another benchmark held {shown} for over {LOCK_WAIT}s") from exc
            await conn.commit()  # the lock belongs to the session, not to this transaction
            yield
        finally:
            await conn.close()  # closing the session releases the lock
    finally:
        await database.dispose()


async def scalar(db: Database, sql: str) -> int:
    """One count from the database."""
    async with db.engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def answer_all(app: App, emails: list[str], concurrency: int) -> int:
    """Every person answers the whole recap; ``concurrency`` people at a time. Returns messages handled."""
    queue = iter(enumerate(emails))
    seq = itertools.count()
    handled = 0

    async def worker() -> None:
        nonlocal handled
        for index, email in queue:  # a shared iterator: each person is taken by exactly one worker
            for step, reply in enumerate(SCRIPT):
                event = IncomingEvent(
                    "console", f"bench-{index}-{step}-{next(seq)}", email, "text", text=reply, email=email
                )
                if not await app.router.receive(event):
                    raise BenchmarkError(f"event {event.event_id} was treated as a re-delivery")
                handled += 1

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(emails))))))
    return handled


async def run_one(kind: str, url: str, people: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """Set up, time the answering phase and verify; returns the JSON record."""
    # "cycle start" starts everyone's check-in only on their workday: a weekend run would start nobody's
    with on_a_workday_morning():
        if kind != "postgresql":
            return await _run_app(kind, url, people, concurrency, workdir)
        await ensure_database(url)
        async with owning(url):
            await fresh_postgres(url)
            return await _run_app(kind, url, people, concurrency, workdir)


async def _run_app(kind: str, url: str, people: int, concurrency: int, workdir: Path) -> dict[str, Any]:
    """Migrate, import the org, start the cycle, then time everyone answering and check the result."""
    console = ConsolePlatform()
    # the org spans Shanghai and Los Angeles: quiet hours would hold half its check-ins at any hour
    settings = Settings(
        database_url=url,
        log_level="WARNING",
        _env_file=None,
        quiet=QuietSettings(enabled=False),
        one_on_one_enabled=False,
    )
    app = App(settings, platforms={"console": console})
    try:
        await app.start()
        org = workdir / "org.csv"
        hr_email, emails = write_org(org, people)
        report = await import_org_file(app.db, org)
        if report.total != people:
            raise BenchmarkError(f"org import saw {report.total} people, expected {people}")
        await console.say(hr_email, "cycle start weekly")
        active = await scalar(app.db, "select count(*) from assignment where status = 'active'")
        if active != people:
            raise BenchmarkError(f"after 'cycle start weekly' {active} assignments are active, not {people}")

        started = time.perf_counter()
        answers = await answer_all(app, emails, concurrency)
        seconds = time.perf_counter() - started

        submitted = await scalar(app.db, "select count(*) from assignment where status = 'submitted'")
        stored = await scalar(app.db, "select count(*) from answer")
        failed = await scalar(
            app.db, "select count(*) from inboundevent where error is not null or processed_at is null"
        )
    finally:
        await app.stop()
    record: dict[str, Any] = {
        "benchmark": "engine",
        "db": kind,
        "people": people,
        "answers": answers,
        "answers_per_s": round(answers / seconds, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "seconds": round(seconds, 3),
        "concurrency": concurrency,
        "submitted": submitted,
        "answer_rows": stored,
        "failed_events": failed,
        "note": NOTE,
    }
    problems = []
    if submitted != people:
        problems.append(f"{submitted} assignments submitted, expected {people}")
    if stored != people * STORED_ANSWERS:
        problems.append(f"{stored} answer rows, expected {people * STORED_ANSWERS}")
    if failed:
        problems.append(f"{failed} journal rows failed or unprocessed")
    if problems:
        record["error"] = "; ".join(problems)
    return record


def run_in_process(kind: str, args: argparse.Namespace) -> int:
    """Run one database here and print its line; returns this database's exit code."""
    with tempfile.TemporaryDirectory(prefix="cadence-bench-") as tmp:
        workdir = Path(tmp)
        url = f"sqlite:///{workdir / 'cadence.db'}" if kind == "sqlite" else args.postgres_url
        try:
            record = asyncio.run(run_one(kind, url, args.people, args.concurrency, workdir))
        except Unreachable as exc:
            # no PostgreSQL here: report it and carry on
            print(json.dumps({"benchmark": "engine", "db": kind, "error": str(exc)}), flush=True)
            return 0
        except Exception as exc:
            # the traceback goes to stderr; the line stays short (SQL errors quote every parameter)
            error = f"{type(exc).__name__}: {exc}"[:500]
            line = {"benchmark": "engine", "db": kind, "error": error}
            print(json.dumps(line, ensure_ascii=False), flush=True)
            raise
    print(json.dumps(record, ensure_ascii=False), flush=True)
    return 1 if "error" in record else 0


def run_children(args: argparse.Namespace) -> int:
    """Each database in its own process (so each peak RSS is its own); lines pass straight through."""
    code = 0
    for kind in ("sqlite", "postgresql"):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--db",
            kind,
            "--people",
            str(args.people),
            "--concurrency",
            str(args.concurrency),
            "--postgres-url",
            args.postgres_url,
        ]
        child = subprocess.run(command, check=False, stdout=subprocess.PIPE, text=True)
        sys.stdout.write(child.stdout)
        sys.stdout.flush()
        code = code or child.returncode
    return code


def main(argv: list[str] | None = None) -> int:
    """Parse the options and run the chosen databases."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--people", type=int, default=1000, help="people in the org (default 1000)")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument(
        "--concurrency",
        type=int,
        default=32,
        help="people answering at the same time (default 32: a recap lands on a whole office at 16:00)",
    )
    args = parser.parse_args(argv)
    if args.people < 2:
        parser.error("--people must be at least 2")
    if args.concurrency < 1:
        parser.error("--concurrency must be at least 1")
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger().setLevel(logging.WARNING)
    if args.db == "both":
        return run_children(args)
    return run_in_process(args.db, args)


if __name__ == "__main__":
    sys.exit(main())
