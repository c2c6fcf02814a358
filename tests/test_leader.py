"""Leader election: one leader per lock name on PostgreSQL, handed over on close, kill and lost sessions."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from scheduler.leader import Leadership
from storage.advisory_lock import holder, lock_key, still_held, try_lock, unlock
from storage.engine import Database

REPO = Path(__file__).resolve().parents[1]

# takes the lock in a process of its own, says so, then waits to be killed
_LEADER_PROCESS = """
import asyncio, sys
from scheduler.leader import Leadership
from storage.engine import Database

async def main() -> None:
    leadership = Leadership(Database(sys.argv[1]), name=sys.argv[2])
    print("leader" if await leadership.check() else "follower", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
async def pg(postgres_ready: str) -> AsyncIterator[Database]:
    """The test PostgreSQL; the tests touch only advisory locks, so no table needs emptying."""
    database = Database(postgres_ready, pool_size=1)
    yield database
    await database.dispose()


@pytest.fixture
def name() -> str:
    """A lock name no other test (or concurrent test run) uses."""
    return f"test-leader-{uuid.uuid4().hex}"


async def _holder(db: Database, name: str) -> int | None:
    async with db.engine.connect() as conn:
        return await holder(conn, key=lock_key(name))


async def _poll_until_leader(leadership: Leadership, *, within: float) -> float:
    """Check every 50 ms until ``leadership`` leads; the seconds it took."""
    started = time.monotonic()
    while not await leadership.check():
        assert time.monotonic() - started < within, f"no takeover within {within} s"
        await asyncio.sleep(0.05)
    return time.monotonic() - started


def test_lock_key_is_stable_signed_64_bit() -> None:
    key = lock_key("cadence-planner")
    assert key == lock_key("cadence-planner")
    assert -(2**63) <= key < 2**63
    assert lock_key("cadence-planner") != lock_key("cadence-planner2")


async def test_advisory_lock_functions(pg: Database, name: str) -> None:
    key = lock_key(name)
    async with pg.engine.connect() as first, pg.engine.connect() as second:
        assert await try_lock(first, key=key)
        assert not await try_lock(second, key=key)
        assert await still_held(first, key=key)
        assert not await still_held(second, key=key)
        assert (
            await holder(second, key=key) == (await first.execute(text("SELECT pg_backend_pid()"))).scalar()
        )
        assert await unlock(first, key=key)
        assert not await still_held(first, key=key)
        assert await holder(second, key=key) is None
        await first.rollback()
        await second.rollback()


async def test_exactly_one_of_two_leads(pg: Database, name: str) -> None:
    first, second = Leadership(pg, name=name), Leadership(pg, name=name)
    try:
        assert await first.check()
        assert not await second.check()
        for _ in range(3):
            assert await first.check()
            assert not await second.check()
        assert (first.is_leader, second.is_leader) == (True, False)
        # held on the election's own connection, never on one the app's pool lends out, and idle
        # between checks rather than "idle in transaction"
        pid = await _holder(pg, name)
        async with pg.engine.connect() as conn:
            session = await conn.execute(
                text("SELECT application_name, state FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            assert tuple(session.one()) == (f"cadence:{name}", "idle")
            await conn.rollback()
    finally:
        await first.close()
        await second.close()
    assert await _holder(pg, name) is None


async def test_closing_leader_hands_over_on_next_check(pg: Database, name: str) -> None:
    changes: list[bool] = []
    first = Leadership(pg, name=name, on_change=changes.append)
    second = Leadership(pg, name=name)
    try:
        assert await first.check()
        assert not await second.check()
        await first.close()
        assert changes == [True, False]
        assert not first.is_leader
        assert await second.check()
        assert not await first.check()  # a closed election never leads again
    finally:
        await first.close()
        await second.close()


async def test_terminated_session_steps_down_and_follower_takes_over(pg: Database, name: str) -> None:
    changes: list[bool] = []

    async def record(leader: bool) -> None:
        changes.append(leader)

    first = Leadership(pg, name=name, on_change=record)
    second = Leadership(pg, name=name)
    try:
        assert await first.check()
        assert not await second.check()
        pid = await _holder(pg, name)
        async with pg.engine.connect() as admin:
            assert (await admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})).scalar()
            await admin.commit()

        assert not await first.check()  # the heartbeat fails: step down instead of planning on
        assert changes == [True, False]
        await _poll_until_leader(second, within=5)
        assert not await first.check()  # back as a follower on a fresh connection
        assert changes == [True, False]
    finally:
        await first.close()
        await second.close()


class _FreezableProxy:
    """A loopback TCP proxy to PostgreSQL that can stop forwarding: a connection that hangs silently."""

    def __init__(self, target: str) -> None:
        self.target = make_url(target)
        self.frozen = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return self.target.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(self.target.host, self.target.port or 5432)
        self._writers += [writer, up_writer]
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(source, sink))
            self._tasks.add(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        while data := await source.read(65536):
            if self.frozen.is_set():
                continue  # swallowed: neither side hears of the other again, nor of a close
            sink.write(data)
            await sink.drain()

    async def close(self) -> None:
        """Cut every connection, so the server ends the sessions behind it."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for writer in self._writers:
            writer.close()
            await writer.wait_closed()
        self._server.close()
        await self._server.wait_closed()


async def test_silently_hung_connection_steps_down_on_timeout(pg: Database, name: str) -> None:
    proxy = _FreezableProxy(pg.url)
    hung_db = Database(await proxy.start(), pool_size=1)
    leader = Leadership(hung_db, name=name, timeout=0.5)
    follower = Leadership(pg, name=name)
    try:
        assert await leader.check()
        assert not await follower.check()
        proxy.frozen.set()

        assert not await leader.check()  # the heartbeat times out: step down, the session may be gone
        assert not leader.is_leader
        assert not await follower.check()  # the server still sees the old session, and its lock
        await proxy.close()  # what the server's keepalives do to a vanished host, only sooner
        await _poll_until_leader(follower, within=5)
    finally:
        await leader.close()
        await follower.close()
        await proxy.close()
        await hung_db.dispose()


async def test_different_names_are_independent(pg: Database, name: str) -> None:
    planner = Leadership(pg, name=name)
    other = Leadership(pg, name=f"{name}-other")
    try:
        assert await planner.check()
        assert await other.check()
    finally:
        await planner.close()
        await other.close()


async def test_run_leads_until_stopped_then_releases(pg: Database, name: str) -> None:
    leadership = Leadership(pg, name=name, check_every=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(leadership.run(stop))
    try:
        async with asyncio.timeout(5):
            while not leadership.is_leader:
                await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, timeout=5)
    finally:
        stop.set()
        await task
    assert not leadership.is_leader
    assert await _holder(pg, name) is None


async def test_failing_listener_does_not_stop_the_election(pg: Database, name: str) -> None:
    def broken(_leader: bool) -> None:
        raise RuntimeError("planner failed to start")

    leadership = Leadership(pg, name=name, on_change=broken)
    try:
        assert await leadership.check()
        assert await leadership.check()
    finally:
        await leadership.close()


async def test_sqlite_is_always_leader(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'cadence.db'}")
    changes: list[bool] = []
    first = Leadership(db, on_change=changes.append)
    second = Leadership(db)
    try:
        for _ in range(3):
            assert await first.check()
            assert await second.check()
        assert changes == [True]
        await first.close()
        assert changes == [True, False]
    finally:
        await first.close()
        await second.close()
        await db.dispose()


async def test_sigkilled_leader_process_is_replaced(pg: Database, name: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LEADER_PROCESS,
        pg.url,
        name,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
    )
    follower = Leadership(pg, name=name)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
        assert line.decode().strip() == "leader"
        assert not await follower.check()

        process.send_signal(signal.SIGKILL)
        took = await _poll_until_leader(follower, within=10)
        print(f"takeover after SIGKILL: {took:.3f} s")
        assert await process.wait() == -signal.SIGKILL
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await follower.close()
