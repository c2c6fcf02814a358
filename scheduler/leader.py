"""Leader election: of the processes on one PostgreSQL, the holder of an advisory lock runs the planner."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from storage.advisory_lock import lock_engine, lock_key, still_held, try_lock, unlock
from storage.engine import Database

logger = logging.getLogger(__name__)

OnChange = Callable[[bool], Awaitable[None] | None]


class Leadership:
    """Whether this process leads, held by a session-level advisory lock on a connection of its own.

    PostgreSQL: the lock lives exactly as long as the session that took it, so it sits on one dedicated,
    unpooled connection (never one the app's pool could lend to other code). Every ``check_every``
    seconds a follower tries the lock and the leader proves with a round trip that its session, and the
    lock, are still there.

    Takeover: when the leader process dies, even by SIGKILL, its kernel closes the socket, PostgreSQL
    ends the session and frees the lock at once, and a follower takes it on its next check (within
    ``check_every``). When the leader's host vanishes instead, the server's keepalives (see
    ``storage.advisory_lock``) end the session within ~25 s. When the leader's connection dies under it,
    its next heartbeat fails and it steps down rather than plan on while another process leads. Between
    the new leader's first check and the old one's failed heartbeat both may plan for up to
    ``check_every + timeout`` seconds; that is harmless because the planner's writes are idempotent:
    a cycle is unique per ritual and period, an outbox row per idempotency key.

    SQLite: one process by design, so every check makes it leader, without SQL.

    ``on_change(is_leader)`` runs on every change, also the final one from ``close()``; it runs while
    the election's own lock is held, so it must not call ``check()`` or ``close()``.
    """

    def __init__(
        self,
        db: Database,
        *,
        name: str = "cadence-planner",
        check_every: float = 5.0,
        timeout: float = 5.0,
        on_change: OnChange | None = None,
    ) -> None:
        self.name = name
        self.key = lock_key(name)
        self.check_every = check_every
        self.timeout = timeout
        self._on_change = on_change
        self._engine: AsyncEngine | None = None
        if db.backend == "postgresql":
            self._engine = lock_engine(db.url, timeout=timeout, application_name=f"cadence:{name}"[:63])
        self._conn: AsyncConnection | None = None
        self._leader = False
        self._closed = False
        # check() and close() share one connection: never interleave them on it
        self._guard = asyncio.Lock()

    @property
    def is_leader(self) -> bool:
        """Whether this process led at its last check."""
        return self._leader

    async def check(self) -> bool:
        """One attempt: a follower tries the lock, a leader proves it still holds it; returns is_leader."""
        async with self._guard:
            if self._closed:
                return False
            if self._engine is None:
                await self._set(True, "single process on SQLite")
                return True
            try:
                async with asyncio.timeout(self.timeout):
                    conn = await self._connection()
                    held = await (still_held if self._leader else try_lock)(conn, key=self.key)
            except Exception as exc:
                # a session that failed once may be gone, and the lock with it: start over on a new one
                logger.warning(
                    "leader election %r: %s failed, dropping its connection: %s",
                    self.name,
                    "heartbeat" if self._leader else "lock attempt",
                    _describe(exc),
                )
                await self._drop()
                await self._set(False, "heartbeat failed")
                return False
            await self._set(held, "the lock is no longer held by this session")
            return held

    async def run(self, stop: asyncio.Event) -> None:
        """Check every ``check_every`` seconds until ``stop`` is set, then release the lock and close."""
        try:
            while not stop.is_set():
                await self.check()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=self.check_every)
        finally:
            await self.close()

    async def close(self) -> None:
        """Release the lock, close the connection and stop leading; later checks return False."""
        async with self._guard:
            self._closed = True
            if self._conn is not None:
                try:
                    async with asyncio.timeout(self.timeout):
                        if self._leader:
                            await unlock(self._conn, key=self.key)
                        await self._conn.close()
                    self._conn = None
                except Exception as exc:
                    # closing the session releases the lock anyway, so a failed unlock only costs that
                    logger.warning("leader election %r: clean release failed: %s", self.name, _describe(exc))
                    await self._drop()
            await self._set(False, "released")
            if self._engine is not None:
                await self._engine.dispose()

    async def _connection(self) -> AsyncConnection:
        assert self._engine is not None
        if self._conn is None:
            self._conn = await self._engine.connect()
        return self._conn

    async def _drop(self) -> None:
        """Abandon the connection without talking to the server (it may not answer)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
            await conn.close()
        except Exception as exc:
            logger.warning(
                "leader election %r: dropping the connection failed: %s", self.name, _describe(exc)
            )

    async def _set(self, leader: bool, reason: str) -> None:
        if leader == self._leader:
            return
        self._leader = leader
        if leader:
            logger.info("became planner leader (lock %r)", self.name)
        else:
            logger.info("lost leadership (lock %r): %s", self.name, reason)
        if self._on_change is None:
            return
        try:
            result = self._on_change(leader)
            if inspect.isawaitable(result):
                await result
        except Exception:
            # the election's state is already right; a failing listener must not stop the heartbeats
            logger.exception("leader election %r: on_change(%s) failed", self.name, leader)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
