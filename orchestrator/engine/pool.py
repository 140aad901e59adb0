"""A pool of ``httpx.AsyncClient``s per origin, lent out whole: at most ``size`` requests
in flight per app origin. Only the invoker uses it.

One shared ``AsyncClient`` with a large connection pool spends several milliseconds of
CPU per request under concurrency on its pool bookkeeping (encode/httpx#3215). All
clients share the lean keep-alive transport of ``sdk.transport`` (one connection per
request in flight, reused); with a proxy configured in the environment, each client owns
one httpx keep-alive connection instead. All share one SSL context: building one per
client is itself ~10 ms. Nothing here sends a request twice.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx

from sdk.transport import lean_transport, ssl_context


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
        self.transport = transport or lean_transport()
        self._timeouts = timeout.as_dict()
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

    async def post(self, url: str, body: bytes, headers: dict[str, str],
                   sign: Callable[[], dict[str, str]] | None = None) -> httpx.Response:
        """POST ``body`` to ``url`` on one of its origin's clients, straight to the
        client's transport: the client's own layers (cookies, auth, redirects, merged
        headers) cost a fifth of the orchestrator's CPU per call and do nothing for a
        signed JSON exchange. ``sign``: headers added once a client is ours (a signature
        must not age while the call waits for one)."""
        async with self.client(url) as client:
            if sign is not None:
                headers = {**headers, **sign()}
            request = httpx.Request("POST", url, content=body, headers=headers,
                                    extensions={"timeout": self._timeouts})
            transport = client._transport_for_url(request.url)  # (what respx mocks)
            resp = await transport.handle_async_request(request)
            await resp.aread()
            return resp

    def open_clients(self) -> int:
        return sum(len(p.clients) for p in self._pools.values())

    async def aclose(self) -> None:
        for pool in self._pools.values():
            for c in pool.clients:
                await c.aclose()
        self._pools.clear()
        if self.transport is not None:
            await self.transport.aclose()
