"""Bearer API-key authentication for /api/v1, as plain ASGI middleware."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.responses import error_response
from orchestrator.errors import Unauthorized

PUBLIC = ("/api/v1/openapi.json",)


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: Sequence[str], prefix: str = "/api/") -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.prefix = prefix

    def _allowed(self, scope: Scope) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                if scheme.lower() != b"bearer" or not token:
                    return False
                return any(hmac.compare_digest(token.strip(), k) for k in self.keys)
        return False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith(self.prefix) and path not in PUBLIC:
            if not self._allowed(scope):
                resp = error_response(Unauthorized(
                    "missing or invalid API key: send 'Authorization: Bearer <key>'"))
                resp.headers["www-authenticate"] = "Bearer"
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)
