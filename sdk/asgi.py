"""ASGI adapter: ``serve(client, functions)`` gives an endpoint to mount in Starlette/FastAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from sdk import protocol as p
from sdk.client import Client
from sdk.function import Runnable
from sdk.handler import Handler, Response

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

MAX_REQUEST_BYTES = p.MAX_REQUEST_BYTES


class ServeEndpoint:
    """The ASGI app behind ``serve``: POST carries signed protocol requests."""

    def __init__(self, client: Client, functions: Iterable[Runnable]) -> None:
        self.client = client
        self.functions = list(functions)
        Handler(self.functions, None, client.app_id)  # duplicate names fail here, at once
        self._handler: Handler | None = None

    @property
    def handler(self) -> Handler:
        """Built on first use: the signing key may be configured after import."""
        if self._handler is None:
            self._handler = Handler(self.functions, self.client.signer(), self.client.app_id)
        return self._handler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            handler = self.handler
        except ValueError as exc:  # no signing key configured
            await _respond(send, 500, p.dumps({"error": {"code": "misconfigured",
                                                         "message": str(exc)}}),
                           {"content-type": "application/json"})
            return
        method = scope["method"]
        if method == "GET":
            info = {"app_id": handler.app_id, "protocol": p.VERSION,
                    "functions": len(handler.functions)}
            await _respond(send, 200, p.dumps(info), {"content-type": "application/json"})
            return
        if method != "POST":
            await _respond(send, 405, b'{"error":{"code":"method_not_allowed",'
                           b'"message":"use POST"}}', {"content-type": "application/json"})
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        # Refuse what can be refused before the body is read: an unsigned, malformed or
        # stale request, or one that announces a body past the limit.
        refused = handler.precheck(headers)
        if refused is None and _declared_length(headers) > MAX_REQUEST_BYTES:
            refused = _TOO_LARGE
        if refused is not None:
            await _respond(send, refused.status, refused.body,
                           {**refused.headers, "connection": "close"})
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away
        if isinstance(body, Response):
            await _respond(send, body.status, body.body,
                           {**body.headers, "connection": "close"})
            return
        resp = await handler.handle(body, headers)
        del body  # a large body is not kept while the answer is sent
        await _respond(send, resp.status, resp.body, resp.headers)


_TOO_LARGE = Response(413, p.dumps({"error": {
    "code": "too_large", "message": f"request body larger than {MAX_REQUEST_BYTES} bytes"}}),
    {"content-type": "application/json"})


def _declared_length(headers: dict[str, str]) -> int:
    raw = headers.get("content-length", "")
    if not raw.isdigit() or len(raw) > 18:
        return 0 if not raw else MAX_REQUEST_BYTES + 1
    return int(raw)


async def _read_body(receive: Receive) -> bytes | Response | None:
    """The request body, bounded while it streams in (a 413 once past the limit)."""
    buf = bytearray()
    more = True
    while more:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return None
        chunk = msg.get("body", b"")
        if len(buf) + len(chunk) > MAX_REQUEST_BYTES:
            return _TOO_LARGE
        buf += chunk
        more = msg.get("more_body", False)
    return bytes(buf)


async def _respond(send: Send, status: int, body: bytes, headers: dict[str, str]) -> None:
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def serve(client: Client, functions: Iterable[Runnable]) -> ServeEndpoint:
    """An ASGI endpoint serving ``functions``; mount it, e.g. at ``/api/durable``."""
    return ServeEndpoint(client, functions)
