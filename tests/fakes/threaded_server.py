"""What the platform fakes that serve from a thread of their own share (Feishu, DingTalk).

The SDKs they serve call some endpoints with blocking ``requests`` from inside their own event loop,
so a server on the caller's loop would deadlock: the fake runs its aiohttp app on a loop in a daemon
thread, and the test's loop talks to it through ``_on_loop``. State is guarded by ``_lock``; a test
waits for something to happen with ``_wait``, which any change wakes through ``_notify``.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Self, TypeVar

from aiohttp import WSCloseCode, web

_T = TypeVar("_T")


class ThreadedServer:
    """Subclasses set the attributes below in ``__init__`` and add their routes in ``routes``."""

    thread_name = "fake"
    _lock: threading.RLock
    _waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]
    _conns: list[Any]  # the open WebSocket connections: each has ``open`` and ``ws``
    _loop: asyncio.AbstractEventLoop | None
    _thread: threading.Thread | None
    _runner: web.AppRunner | None
    _port: int

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._thread = threading.Thread(target=self._serve, args=(loop,), name=self.thread_name, daemon=True)
        self._thread.start()
        await self._on_loop(self._start_server())

    def _serve(self, loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()

    async def _start_server(self) -> None:
        app = web.Application(client_max_size=8 * 1024 * 1024)
        self.routes(app)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            await self._on_loop(self._stop_server())
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5)
            self._loop = self._thread = None

    async def _stop_server(self) -> None:
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for conn in conns:
            conn.open = False
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server stopping")
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        if not self._port:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return f"http://127.0.0.1:{self._port}"

    async def _on_loop(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Run ``coro`` on the fake's loop and wait for it from the caller's."""
        if self._loop is None:
            coro.close()
            raise RuntimeError(f"{type(self).__name__} is not started")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    def _notify(self) -> None:
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that loop is closed
                loop.call_soon_threadsafe(event.set)

    async def _wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    entry[1].clear()
                    with self._lock:
                        if predicate():
                            return
                    await entry[1].wait()
        except TimeoutError:
            raise TimeoutError(f"{type(self).__name__}: no {what} within {timeout}s") from None
        finally:
            with self._lock:
                self._waiters.remove(entry)
