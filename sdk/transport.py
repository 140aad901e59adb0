"""A lean HTTP/1.1 transport for httpx (public: ``sdk.transport``; needs httptools).

httpx's default transport (httpcore over anyio) spends most of a call's client-side CPU
on layers this one does not need: anyio cancel scopes and locks around every read and
write, the pool's bookkeeping, h11's pure-Python parsing. Profiled under load, that was
about a quarter of the orchestrator's CPU per one-step run (its calls to apps). This
transport speaks HTTP/1.1 on an asyncio protocol with httptools' C parser (uvicorn's),
keeps connections alive per origin, and raises httpx's own exceptions, so code above it
(and respx, which mocks httpx above any transport) does not change.

The orchestrator's invoker uses it (``orchestrator.engine.pool``). ``sdk.Client`` uses
httpx's own transport unless given this one: ``Client(transport=AppTransport())``.
Importing this module needs httptools (the orchestrator depends on it; web apps served by
uvicorn usually have it); ``import sdk`` does not. It serves request/response exchanges
with bodies held in memory, which is all the SDK and the invoker do; it is not a general
HTTP client (no proxies, no HTTP/2, no streaming).

It is the one layer that sends a request twice: when a kept-alive connection turns out
closed before any byte of an answer came back, the request is sent once more on a fresh
connection (see "Delivery failures and retries" in docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import ssl as ssl_mod
import time
import urllib.request
from collections.abc import Callable
from typing import cast

import httptools
import httpx

MAX_RESPONSE_BYTES = 64 * 1024 * 1024  # beyond any valid answer (protocol limit 32 MiB)
KEEPALIVE_EXPIRY = 4.0
"""Seconds an idle connection is kept for reuse: servers close theirs after a few seconds
(uvicorn: 5), and a request sent as the server closes must be sent again."""

Origin = tuple[str, str, int]

_SSL: ssl_mod.SSLContext | None = None


def ssl_context() -> ssl_mod.SSLContext:
    """One default SSL context for the process: building one is ~10 ms."""
    global _SSL
    if _SSL is None:
        _SSL = ssl_mod.create_default_context()
    return _SSL


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one exchange at a time."""

    def __init__(self, origin: Origin) -> None:
        self.origin = origin
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[None] | None = None
        self._got_bytes = False
        self._headers_done = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._body: list[bytes] = []
        self._size = 0
        self.keep_alive = False

    # -- asyncio.Protocol --------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the app tried to upgrade the connection"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self._waiter is None or self._waiter.done():
            return
        if not self._got_bytes:
            self._waiter.set_exception(httpx.RemoteProtocolError(
                "Server disconnected without sending a response."))
        elif self._headers_done and not self._has_length():
            self._waiter.set_result(None)  # a body delimited by the connection's close
        else:
            self._waiter.set_exception(httpx.ReadError(
                f"the connection closed in the middle of the response: {exc or 'EOF'}"))

    # -- httptools callbacks -----------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()

    def _interim(self) -> bool:
        """An informational answer (100 Continue, 103 Early Hints): the real one follows."""
        return 100 <= self._status < 200 and self._status != 101

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self._fail(httpx.ReadError(f"response body exceeds {MAX_RESPONSE_BYTES} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._interim():
            self._headers_done, self._status, self._headers = False, 0, []
            return
        self.keep_alive = self._parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- use ---------------------------------------------------------------------------------

    def _has_length(self) -> bool:
        return any(n.lower() in (b"content-length", b"transfer-encoding")
                   for n, _ in self._headers)

    def _fail(self, exc: Exception) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, head: bytes, body: bytes, timeout: float | None
                       ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._got_bytes = self._headers_done = False
        self._status, self._headers, self._body, self._size = 0, [], [], 0
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        try:
            async with asyncio.timeout(timeout):
                await self._waiter
            return self._status, self._headers, b"".join(self._body)
        finally:
            # an idle connection holds nothing of its last exchange (an answer may be
            # 32 MiB, and up to pool_size connections are kept per origin)
            self._waiter, self._body, self._size = None, [], 0


class AppTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per origin, for request/response calls.

    Callers bound concurrency per origin (the invoker's client pool); this keeps at most
    that many connections open, as idle connections are reused last-in first-out.
    """

    def __init__(self, ssl_context: Callable[[], ssl_mod.SSLContext] = ssl_context) -> None:
        self._ssl_context = ssl_context
        self._idle: dict[Origin, list[_Connection]] = {}
        self._busy: set[_Connection] = set()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {scheme!r}",
                                            request=request)
        origin = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        body = await request.aread()
        head = self._head(request, body)
        conn = self._take_idle(origin)
        reused = conn is not None
        if conn is None:
            conn = await self._connect(origin, timeouts.get("connect"), request)
        self._busy.add(conn)
        try:
            try:
                status, headers, content = await conn.exchange(head, body,
                                                               timeouts.get("read"))
            except httpx.RemoteProtocolError:
                if not (reused and not conn._got_bytes):
                    raise
                # A kept-alive connection the app had closed (idle timeout, request cap):
                # nothing was answered, so send once more on a fresh connection.
                conn.close()
                self._busy.discard(conn)
                conn = await self._connect(origin, timeouts.get("connect"), request)
                self._busy.add(conn)
                status, headers, content = await conn.exchange(head, body,
                                                               timeouts.get("read"))
        except TimeoutError:
            conn.close()
            raise httpx.ReadTimeout("no response within the read timeout",
                                    request=request) from None
        except httpx.TransportError as exc:
            conn.close()
            exc.request = request
            raise
        except BaseException:
            conn.close()  # cancelled mid-exchange: the connection's state is unknown
            raise
        finally:
            self._busy.discard(conn)
        if conn.keep_alive and not conn.closed:
            conn.idle_since = time.monotonic()
            self._idle.setdefault(origin, []).append(conn)
        else:
            conn.close()
        return httpx.Response(status, headers=headers, content=content, request=request,
                              extensions={"http_version": b"HTTP/1.1"})

    def _take_idle(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        if not idle:
            return None
        expired = time.monotonic() - KEEPALIVE_EXPIRY
        while idle:
            conn = idle.pop()
            if not conn.closed and conn.idle_since >= expired:
                return conn
            conn.close()
        return None

    @staticmethod
    def _head(request: httpx.Request, body: bytes) -> bytes:
        lines = [request.method.encode() + b" " + request.url.raw_path + b" HTTP/1.1"]
        framed = False
        for k, v in request.headers.raw:
            if k.lower() == b"transfer-encoding":  # a streamed body, read whole: re-framed
                continue
            framed = framed or k.lower() == b"content-length"
            lines.append(k + b": " + v)
        if not framed and (body or request.method in ("POST", "PUT", "PATCH")):
            lines.append(b"content-length: %d" % len(body))
        return b"\r\n".join(lines) + b"\r\n\r\n"

    async def _connect(self, origin: Origin, timeout: float | None,
                       request: httpx.Request) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        tls = self._ssl_context() if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                transport, conn = await loop.create_connection(
                    lambda: _Connection(origin), host, port, ssl=tls,
                    server_hostname=host if tls else None)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"could not connect to {host}:{port} in time",
                                       request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(f"could not connect to {host}:{port}: {exc}",
                                     request=request) from None
        conn.transport = transport  # uvloop may call connection_made() only later
        return conn

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.close()
        self._busy.clear()


def lean_transport() -> AppTransport | None:
    """An ``AppTransport`` unless a proxy is configured in the environment (it speaks to
    origins directly); else None: httpx's own, which honours ``HTTP(S)_PROXY``/
    ``ALL_PROXY``/``NO_PROXY`` as it always did."""
    proxies = urllib.request.getproxies()
    if any(proxies.get(k) for k in ("http", "https", "all")):
        return None
    return AppTransport()
