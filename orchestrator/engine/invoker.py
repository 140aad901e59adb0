"""Calls apps over signed HTTP and classifies what came back.

A pool of single-connection ``httpx.AsyncClient``s per app origin: one shared client
with a large pool costs several times more CPU per request under concurrency (its pool
bookkeeping), so each client here owns one keep-alive connection and is lent out whole.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from sdk import protocol as p

log = logging.getLogger("orchestrator.invoker")


@dataclass(frozen=True)
class Delivered:
    answer: Mapping[str, Any]


@dataclass(frozen=True)
class Failed:
    """The call did not produce a valid answer; it is safe to deliver again later."""

    reason: str
    retry_after: float | None = None
    timed_out: bool = False


Outcome = Delivered | Failed


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        if seconds != seconds or seconds >= 1e9:  # NaN, inf, absurd: ignore it
            return None
        return max(0.0, seconds)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Pool:
    def __init__(self, size: int, make: Any) -> None:
        self._free: asyncio.LifoQueue[httpx.AsyncClient] = asyncio.LifoQueue()
        self._size = size
        self._made = 0
        self._make = make
        self._all: list[httpx.AsyncClient] = []

    async def acquire(self) -> httpx.AsyncClient:
        if self._free.empty() and self._made < self._size:
            self._made += 1
            c = self._make()
            self._all.append(c)
            return c  # type: ignore[no-any-return]
        return await self._free.get()

    def release(self, c: httpx.AsyncClient) -> None:
        self._free.put_nowait(c)

    async def close(self) -> None:
        for c in self._all:
            await c.aclose()


class Invoker:
    def __init__(
        self,
        signer: p.Signer,
        *,
        timeout: float = 60.0,
        pool_size: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.signer = signer
        self.timeout = timeout
        self.pool_size = pool_size
        self.transport = transport
        self._pools: dict[str, _Pool] = {}

    def _client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=httpx.Timeout(self.timeout, connect=min(10.0, self.timeout)),
            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            transport=self.transport,
        )

    def _pool(self, url: str) -> _Pool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        pool = self._pools.get(origin)
        if pool is None:
            pool = self._pools[origin] = _Pool(self.pool_size, self._client)
        return pool

    async def close(self) -> None:
        for pool in self._pools.values():
            await pool.close()
        self._pools.clear()

    async def _post(self, url: str, body: bytes) -> httpx.Response:
        headers = {"content-type": "application/json", **self.signer.sign(body)}
        pool = self._pool(url)
        client = await pool.acquire()
        try:
            try:
                return await client.post(url, content=body, headers=headers)
            except httpx.RemoteProtocolError:
                # The peer closed a kept-alive connection without answering (servers cap
                # requests per connection): send once more on a fresh connection. Should
                # the app have run the call anyway, replay makes that harmless: steps
                # are recorded once and run at least once.
                return await client.post(url, content=body, headers=headers)
        finally:
            pool.release(client)

    async def exchange(self, url: str, message: Mapping[str, Any]) -> Any:
        """Send a signed request, verify the signed answer, return it decoded.

        Raises ``httpx.HTTPError``, ``p.SignatureError`` or ``p.ProtocolError``.
        """
        resp = await self._post(url, p.dumps(message))
        if resp.status_code != 200:
            raise p.ProtocolError(f"app answered HTTP {resp.status_code}: {resp.text[:200]}")
        self.signer.verify(resp.content, resp.headers)
        return p.check_version(p.loads(resp.content))

    async def invoke(self, url: str, body: bytes, call_id: str) -> Outcome:
        """Deliver one invoke request; never raises for what the app or network did."""
        try:
            resp = await self._post(url, body)
        except httpx.ConnectTimeout:
            return Failed(f"could not connect within {self.timeout}s")
        except httpx.TimeoutException:
            return Failed(f"no answer within {self.timeout}s", timed_out=True)
        except httpx.HTTPError as exc:
            return Failed(f"connection failed: {type(exc).__name__}: {exc}")
        if resp.status_code != 200:
            return Failed(
                f"app answered HTTP {resp.status_code}: {resp.text[:300]}",
                parse_retry_after(resp.headers.get("retry-after")),
            )
        if len(resp.content) > p.MAX_ANSWER_BYTES:
            return Failed(f"answer of {len(resp.content)} bytes exceeds {p.MAX_ANSWER_BYTES}")
        try:
            self.signer.verify(resp.content, resp.headers)
        except p.SignatureError as exc:
            log.warning("discarded an answer to %s from %s: %s", call_id, url, exc)
            return Failed(f"answer discarded: {exc}")
        try:
            answer = p.validate_answer(p.loads(resp.content), call_id)
        except (ValueError, p.ProtocolError) as exc:
            log.warning("discarded a malformed answer to %s from %s: %s", call_id, url, exc)
            return Failed(f"malformed answer: {exc}")
        return Delivered(answer)
