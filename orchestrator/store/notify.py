"""Notifications between replicas on PostgreSQL: ``LISTEN durable_work`` / ``pg_notify``.

One dedicated asyncpg connection per replica, outside the pool: it listens on the
channel and sends this replica's notifications (after their transaction committed, off
the transaction's path). A dropped connection is opened again with backoff (0.1 s
doubling to 5 s); meanwhile ``on_state(False)`` tells the engine to poll instead, and
what it sends waits in a small outbox. Every ``check_every`` seconds the connection is
checked with one ``SELECT 1``, so that a connection that died silently is noticed.
Notifications this connection sent itself are not handed back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]

CHANNEL = "durable_work"
OUTBOX = 100
"""Notifications kept while the connection is down (older ones are dropped: the
replicas poll meanwhile, and the times they carry are hints)."""

log = logging.getLogger("orchestrator.store")


def driver_dsn(url: str) -> str:
    """asyncpg's DSN for a SQLAlchemy PostgreSQL URL."""
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url


class Channel:
    def __init__(self, url: str, on_message: Callable[[str], None],
                 on_state: Callable[[bool], None], *, check_every: float = 30.0) -> None:
        self.dsn = driver_dsn(url)
        self.on_message = on_message
        self.on_state = on_state
        self.check_every = check_every
        self.up = False
        self._outbox: list[str] = []
        self._queued = asyncio.Event()
        self._conn: Any = None
        self._pid = 0

    @property
    def server_pid(self) -> int:
        """The listening connection's backend process (0: not connected)."""
        return self._pid

    def send(self, payload: str) -> None:
        """Notify the other replicas (soon, once the connection can)."""
        if payload not in self._outbox:
            self._outbox.append(payload)
            del self._outbox[:-OUTBOX]
        self._queued.set()

    async def run(self) -> None:
        """Listen (and send) until cancelled, connecting again whenever the connection
        is lost."""
        delay = 0.05
        while True:
            try:
                await self._session()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("the notification connection failed (%s: %s); polling until "
                            "it is back", type(exc).__name__, str(exc)[:200])
            finally:
                if self.up:
                    self.up = False
                    self.on_state(False)
                await self._close()
            connected, self._pid = self._pid != 0, 0
            delay = 0.1 if connected else min(5.0, delay * 2)
            await asyncio.sleep(delay)

    async def _session(self) -> None:
        lost = asyncio.Event()
        self._conn = conn = await asyncpg.connect(self.dsn, timeout=10)
        conn.add_termination_listener(lambda _c: lost.set())
        self._pid = conn.get_server_pid()
        await conn.add_listener(CHANNEL, self._heard)
        self.up = True
        self.on_state(True)
        log.info("listening for notifications (%s)", CHANNEL)
        checked = asyncio.get_running_loop().time()
        while not lost.is_set():
            waits = [asyncio.ensure_future(e.wait()) for e in (self._queued, lost)]
            try:
                await asyncio.wait(waits, timeout=self.check_every,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if lost.is_set():
                break
            self._queued.clear()
            while self._outbox:
                await conn.execute("SELECT pg_notify($1, $2)", CHANNEL, self._outbox[0])
                self._outbox.pop(0)
            now = asyncio.get_running_loop().time()
            if now - checked >= self.check_every:
                checked = now
                await conn.execute("SELECT 1")
        raise ConnectionError("the server closed the connection")

    def _heard(self, _conn: object, pid: int, _channel: str, payload: str) -> None:
        if pid != self._pid:
            try:
                self.on_message(payload)
            except Exception:
                log.exception("a notification could not be handled: %r", payload[:200])

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), 2)
            except Exception:
                conn.terminate()
