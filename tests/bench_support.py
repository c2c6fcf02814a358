"""What the benchmarks share: a PostgreSQL database of their own, held under an advisory lock; the org
imported from a process of its own (so its memory is not the measured process's peak); and a clock on
a workday morning, so a check-in started by "cycle start" starts for everyone whatever day it is.

Used by ``benchmarks/*.py``; it lives in the ``tests`` package because the scripts already import the
fakes from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import make_url, text

from conversations.org_service import import_org_file
from storage.clock import set_clock
from storage.engine import Database

log = logging.getLogger(__name__)

# the advisory lock benchmarks/engine.py takes on the same database ("CADBENCH" in ASCII): keep equal
LOCK_KEY = 0x4341444245_4E4348 % 2**63
LOCK_WAIT = 600


# a Wednesday: a workday in every calendar the benchmark orgs use (quiet hours are the run's to turn off)
WORKDAY_MORNING = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@contextlib.contextmanager
def on_a_workday_morning() -> Iterator[None]:
    """Cadence's clock at ``WORKDAY_MORNING``, moving with the wall clock, for the ``with`` block."""
    origin = time.monotonic()
    set_clock(lambda: WORKDAY_MORNING + timedelta(seconds=time.monotonic() - origin))
    try:
        yield
    finally:
        set_clock(None)


class Unreachable(RuntimeError):
    """The PostgreSQL server could not be reached (or logged into)."""


class OrgImportFailed(RuntimeError):
    """The org import process did not finish."""


def import_main(url: str, path: str) -> None:
    """The org import process."""
    asyncio.run(_import(url, Path(path)))


async def _import(url: str, path: Path) -> None:
    db = Database(url, pool_size=1)
    try:
        await import_org_file(db, path)
    finally:
        await db.dispose()


async def import_org(url: str, path: Path) -> None:
    """Import the org from a process of its own, so its memory is not this process's peak."""
    process = multiprocessing.get_context("spawn").Process(target=import_main, args=(url, str(path)))
    process.start()
    await asyncio.to_thread(process.join)
    if process.exitcode != 0:
        raise OrgImportFailed(f"the org import process exited with {process.exitcode}")


def _unreachable(url: str, exc: Exception) -> Unreachable:
    shown = make_url(url).render_as_string(hide_password=True)
    return Unreachable(f"PostgreSQL at {shown} is unreachable: {type(exc).__name__}: {exc}")


async def ensure_database(url: str) -> None:
    """Create the benchmark's database on first use (through the server's own "postgres" database)."""
    target = make_url(url)
    server = Database(target.set(database="postgres").render_as_string(hide_password=False), pool_size=1)
    try:
        async with server.engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            exists = await conn.execute(
                text("SELECT 1 FROM pg_database WHERE datname = :d"), {"d": target.database}
            )
            if exists.scalar() is None:
                await conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    except Exception as exc:  # asyncpg raises OSError or its own errors when unreachable
        raise _unreachable(url, exc) from exc
    finally:
        await server.dispose()


@contextlib.asynccontextmanager
async def owning(url: str) -> AsyncIterator[None]:
    """Hold the benchmarks' advisory lock for the whole run, then start from an empty public schema."""
    database = Database(url, pool_size=1)
    try:
        try:
            conn = await database.engine.connect()
        except Exception as exc:
            raise _unreachable(url, exc) from exc
        try:
            await conn.execute(text(f"SET lock_timeout = '{LOCK_WAIT}s'"))
            if not (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": LOCK_KEY})).scalar():
                log.warning("another benchmark is using this database; waiting up to %ds", LOCK_WAIT)
                await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LOCK_KEY})
            await conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            await conn.commit()  # the lock belongs to the session, not to this transaction
            yield
        finally:
            await conn.close()  # closing the session releases the lock
    finally:
        await database.dispose()
