"""WSGI adapter: ``serve_wsgi(client, functions)`` is a WSGI app (gunicorn, waitress,
Google Cloud Run functions); ``sdk.flask`` and ``sdk.django`` build on ``SyncEndpoint``.

WSGI is synchronous and the core (``sdk.handler``) is async, so every request runs the
ASGI endpoint (``sdk.asgi.ServeEndpoint``, not a copy of it) on one event loop per process
that this module owns, in a daemon thread; the WSGI thread waits for the answer. One loop
per process is the concurrency model the core is written for (its replay cache is not
shared between loops or threads), and sync task bodies still run in the loop's worker
threads, as under uvicorn. The loop is started on first use, and again in a forked child
(gunicorn's ``--preload``), so importing the app starts no thread.

The body is read by the WSGI thread (the server has it buffered, or streams it), at most
``MAX_REQUEST_BYTES + 1`` bytes and never past its ``CONTENT_LENGTH``, so a too-large
request is still refused with a 413.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from sdk import protocol as p
from sdk.asgi import Message, ServeEndpoint
from sdk.client import Client
from sdk.function import Runnable
from sdk.handler import Response

T = TypeVar("T")

Environ = Mapping[str, Any]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]


class _LoopThread:
    """An event loop running forever in a daemon thread of this process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0

    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._pid != os.getpid():
            with self._lock:
                if self._loop is None or self._pid != os.getpid():
                    loop = asyncio.new_event_loop()
                    threading.Thread(target=loop.run_forever, name="durable-sdk-loop",
                                     daemon=True).start()
                    self._loop, self._pid = loop, os.getpid()
        return self._loop

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop()).result()


_LOOP = _LoopThread()


class SyncEndpoint:
    """The ASGI endpoint, called synchronously: what a WSGI view needs."""

    def __init__(self, client: Client, functions: Iterable[Runnable]) -> None:
        self.asgi = ServeEndpoint(client, functions)

    def respond(self, method: str, headers: Iterable[tuple[str, str]],
                read: Callable[[int], bytes]) -> Response:
        """Answer one request: ``read(n)`` returns up to ``n`` bytes of its body."""
        scope: dict[str, Any] = {
            "type": "http", "method": method.upper(), "path": "/",
            "headers": [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in headers],
        }
        body = _read_up_to(read, p.MAX_REQUEST_BYTES + 1) if scope["method"] == "POST" else b""
        return _LOOP.run(_call(self.asgi, scope, body))


def _read_up_to(read: Callable[[int], bytes], limit: int) -> bytes:
    """Up to ``limit`` bytes of a body, reading until ``read`` returns nothing."""
    buf = bytearray()
    while len(buf) < limit:
        chunk = read(limit - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


async def _call(app: ServeEndpoint, scope: dict[str, Any], body: bytes) -> Response:
    sent: list[Message] = []
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if delivered:
            return {"type": "http.disconnect"}
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(msg: Message) -> None:
        sent.append(msg)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    # the ASGI endpoint closes the connection after refusing an unread body; here the body
    # was read, and WSGI forbids hop-by-hop headers (PEP 3333)
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in start["headers"]
               if k.lower() != b"connection"}
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Response(start["status"], out, headers)


def environ_headers(environ: Environ) -> list[tuple[str, str]]:
    """The request headers of a WSGI ``environ`` (``HTTP_X_FOO`` -> ``x-foo``)."""
    out = [(k[5:].replace("_", "-").lower(), str(v)) for k, v in environ.items()
           if k.startswith("HTTP_")]
    for key, name in (("CONTENT_TYPE", "content-type"), ("CONTENT_LENGTH", "content-length")):
        if environ.get(key):
            out.append((name, str(environ[key])))
    return out


class WSGIEndpoint(SyncEndpoint):
    """A WSGI app answering the orchestrator at whatever path it is mounted."""

    def __call__(self, environ: Environ, start_response: StartResponse) -> list[bytes]:
        resp = self.respond(environ["REQUEST_METHOD"], environ_headers(environ),
                            _Body(environ).read)
        # content-length is among the headers the ASGI endpoint sent
        start_response(f"{resp.status} {HTTPStatus(resp.status).phrase}",
                       list(resp.headers.items()))
        return [resp.body]


class _Body:
    """``wsgi.input``, never read past ``CONTENT_LENGTH`` (PEP 3333: a read past it may
    block, as on wsgiref's socket) unless the server says the input is terminated."""

    def __init__(self, environ: Environ) -> None:
        self._stream = environ["wsgi.input"]
        raw = str(environ.get("CONTENT_LENGTH") or "0")
        self._left: int | None = None if environ.get("wsgi.input_terminated") else (
            int(raw) if raw.isdigit() else 0)

    def read(self, n: int) -> bytes:
        if self._left is None:
            return bytes(self._stream.read(n))
        chunk = bytes(self._stream.read(min(n, self._left))) if self._left else b""
        self._left -= len(chunk)
        return chunk


def serve_wsgi(client: Client, functions: Iterable[Runnable]) -> WSGIEndpoint:
    """A WSGI app serving ``functions``: run it under gunicorn or waitress, or mount it
    (e.g. with werkzeug's ``DispatcherMiddleware``) at ``/api/durable``."""
    return WSGIEndpoint(client, functions)
