"""A request id for every HTTP request: in the ``x-request-id`` response header and in
``scope["state"]["request_id"]``, so a 500's log line and its body share it."""

from __future__ import annotations

import os

from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = b"x-request-id"


def new_request_id() -> str:
    return os.urandom(8).hex()


def request_id_of(scope: Scope) -> str:
    """The request's id (a new one for a scope the middleware did not see)."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if not isinstance(rid, str):
        rid = state["request_id"] = new_request_id()
    return rid


class RequestIdMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware): adds one header to the response's start."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = request_id_of(scope).encode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(k == HEADER for k, _ in headers):
                    headers.append((HEADER, header))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)
