"""Bearer API-key authentication and scopes for /api/, as plain ASGI middleware: the one
place that reads the scope each route declares (``route_table.Operation.needs``).

No or an unknown (or revoked) key is 401; a valid key without the route's scope is 403
``forbidden``. A path no operation has needs a valid key only (the router then answers
404 or 405)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrator.api.responses import error_response
from orchestrator.api.route_table import OPERATIONS, Operation
from orchestrator.engine.keys import Grant, Keys
from orchestrator.errors import ApiError, DatabaseUnavailable, Forbidden, Unauthorized


class Operations:
    """The route table's operation a request (method, path) is for."""

    def __init__(self, ops: Iterable[Operation]) -> None:
        self.exact: dict[tuple[str, str], Operation] = {}
        #: by (method, number of "/"): the few templates a path can match
        self.templated: dict[tuple[str, int], list[tuple[re.Pattern[str], Operation]]] = {}
        for op in ops:
            method = op.method.upper()
            if "{" in op.path:
                pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(op.path))
                self.templated.setdefault((method, op.path.count("/")), []).append(
                    (re.compile(pattern), op))
            else:
                self.exact[method, op.path] = op

    def of(self, method: str, path: str) -> Operation | None:
        if method == "HEAD":
            method = "GET"
        op = self.exact.get((method, path))
        if op is not None:
            return op
        for pattern, op in self.templated.get((method, path.count("/")), ()):
            if pattern.fullmatch(path):
                return op
        return None


OPS = Operations(OPERATIONS)


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, rest = bytes(value).partition(b" ")
            token = rest.strip()
            if scheme.lower() != b"bearer" or not token:
                return None
            return token.decode("latin-1")
    return None


class ApiKeyMiddleware:
    def __init__(self, app: ASGIApp, keys: Keys, prefix: str = "/api/",
                 ops: Operations = OPS, guarded: frozenset[str] = frozenset({"/metrics"})
                 ) -> None:
        self.app = app
        self.guarded = guarded
        """Paths outside ``prefix`` that need a key too (``/metrics``, unless public)."""
        self.keys = keys
        self.prefix = prefix
        self.ops = ops

    async def _refusal(self, scope: Scope) -> ApiError | None:
        op = self.ops.of(scope["method"], scope.get("path", ""))
        if op is not None and op.public:
            return None
        need = None if op is None else op.needs
        token = _bearer(scope)
        grant: Grant | None = None if token is None else await self.keys.grant(token)
        if grant is None:
            return Unauthorized("missing or invalid API key: send 'Authorization: Bearer <key>'")
        if need is not None and not grant.allows(need):
            return Forbidden(f"this API key lacks the scope '{need}' this operation needs")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith(self.prefix) or path in self.guarded:
            try:
                err = await self._refusal(scope)
            except DatabaseUnavailable as exc:
                err = exc
            if err is not None:
                resp = error_response(err)
                if isinstance(err, Unauthorized):
                    resp.headers["www-authenticate"] = "Bearer"
                if isinstance(err, DatabaseUnavailable):
                    resp.headers["retry-after"] = str(err.retry_after)
                await resp(scope, receive, send)
                return
        await self.app(scope, receive, send)
