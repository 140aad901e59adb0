"""The orchestrator's ASGI application: REST API + the engine's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from orchestrator.api import control_routes, hooks_routes, key_routes, routes
from orchestrator.api.auth import ApiKeyMiddleware
from orchestrator.api.request_id import RequestIdMiddleware, request_id_of
from orchestrator.api.responses import JSON, error_response
from orchestrator.config import Settings
from orchestrator.dashboard import DashboardPaths, create_dashboard
from orchestrator.engine.engine import Engine
from orchestrator.errors import ApiError, DatabaseUnavailable

log = logging.getLogger("orchestrator")


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _db_unavailable(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DatabaseUnavailable)
    log.warning("%s %s: the database is unavailable (%r)", request.method, request.url.path,
                exc.__cause__)
    resp = error_response(exc)
    resp.headers["Retry-After"] = str(exc.retry_after)
    return resp


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return JSON({"error": {"code": code, "message": exc.detail}}, status_code=exc.status_code)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """A 500 says only "internal error" and the request id; the details (the exception,
    a database error's SQL) go to the log under that id."""
    rid = request_id_of(request.scope)
    log.error("unhandled error serving %s %s [request %s]", request.method,
              request.url.path, rid, exc_info=exc)
    return JSON({"error": {"code": "internal_error", "message": "internal error",
                           "request_id": rid}},
                status_code=500, headers={"x-request-id": rid})


def create_app(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
               ) -> Starlette:
    if not settings.api_keys:
        raise ValueError("at least one API key is required (DURABLE_API_KEY)")
    engine = Engine(settings, transport=transport)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await engine.start()
        try:
            yield
        finally:
            await engine.stop()

    app = Starlette(
        routes=control_routes.ROUTES + routes.ROUTES + key_routes.ROUTES + hooks_routes.ROUTES,
        middleware=[Middleware(RequestIdMiddleware),
                    # every path outside /api/, /hooks/ and the probes: the dashboard
                    Middleware(DashboardPaths, dashboard=create_dashboard(engine)),
                    Middleware(ApiKeyMiddleware, keys=engine.keys,
                               guarded=frozenset() if settings.metrics_public
                               else frozenset({"/metrics"}))],
        exception_handlers={ApiError: _api_error, DatabaseUnavailable: _db_unavailable,
                            HTTPException: _http_error,
                            Exception: _internal_error},
        lifespan=lifespan,
    )
    app.state.engine = engine
    return app
