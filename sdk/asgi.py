"""ASGI adapter: ``serve(client, functions)`` gives an endpoint to mount in Starlette/FastAPI."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import TYPE_CHECKING, Any

from sdk import protocol as p
from sdk.function import Runnable
from sdk.handler import Handler

if TYPE_CHECKING:
    from sdk.client import Client

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
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                return
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > MAX_REQUEST_BYTES:
                await _respond(send, 413, b'{"error":{"code":"too_large",'
                               b'"message":"request body too large"}}',
                               {"content-type": "application/json"})
                return
            chunks.append(chunk)
            more = msg.get("more_body", False)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        resp = await handler.handle(b"".join(chunks), headers)
        await _respond(send, resp.status, resp.body, resp.headers)


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
