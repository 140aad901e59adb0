"""A pool of ``httpx.AsyncClient``s per origin, lent out whole: at most ``size`` requests
in flight per origin.

One shared ``AsyncClient`` with a large connection pool spends several milliseconds of
CPU per request under concurrency on its pool bookkeeping (encode/httpx#3215). With
httptools installed, all clients share the lean keep-alive transport of
``sdk._transport`` (one connection per request in flight, reused); without it, each
client owns one httpx keep-alive connection. All share one SSL context: building one
per client is itself ~10 ms.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

try:
    from sdk._transport import AppTransport
except ImportError:  # httptools is not installed: httpx's own transport, one per client
    AppTransport = None  # type: ignore[assignment,misc]

_SSL: ssl.SSLContext | None = None


def ssl_context() -> ssl.SSLContext:
    global _SSL
    if _SSL is None:
        _SSL = ssl.create_default_context()
    return _SSL


def lean_transport() -> httpx.AsyncBaseTransport | None:
    """The lean keep-alive transport if httptools is installed and no proxy is configured
    in the environment (it speaks to origins directly); else None: httpx's own, which
    honours ``HTTP(S)_PROXY``/``ALL_PROXY``/``NO_PROXY`` as it always did."""
    proxies = urllib.request.getproxies()
    if AppTransport is None or any(proxies.get(k) for k in ("http", "https", "all")):
        return None
    return AppTransport(ssl_context)


class _OriginPool:
    def __init__(self, size: int, make: Callable[[], httpx.AsyncClient]) -> None:
        self._free: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        self._size = size
        self._make = make
        self.clients: list[httpx.AsyncClient] = []

    async def acquire(self) -> httpx.AsyncClient:
        if self._free.empty() and len(self.clients) < self._size:
            c = self._make()
            self.clients.append(c)
            return c
        return await self._free.get()

    def release(self, c: httpx.AsyncClient) -> None:
        self._free.put_nowait(c)


class ClientPool:
    """``async with pool.client(url) as c: await c.post(url, ...)``."""

    def __init__(
        self,
        size: int,
        *,
        timeout: httpx.Timeout,
        headers: dict[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.size = size
        self.timeout = timeout
        self.headers = headers or {}
        # all clients share one lean transport when httptools is there (sdk/_transport.py)
        self.transport = transport or lean_transport()
        self._pools: dict[str, _OriginPool] = {}

    def _make(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self.timeout,
            headers=self.headers,
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            transport=self.transport,
            verify=ssl_context(),
        )

    @asynccontextmanager
    async def client(self, url: str) -> AsyncIterator[httpx.AsyncClient]:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _OriginPool(self.size, self._make)
        c = await pool.acquire()
        try:
            yield c
        finally:
            pool.release(c)

    def open_clients(self) -> int:
        return sum(len(p.clients) for p in self._pools.values())

    async def aclose(self) -> None:
        for pool in self._pools.values():
            for c in pool.clients:
                await c.aclose()
        self._pools.clear()
        if self.transport is not None:
            await self.transport.aclose()
