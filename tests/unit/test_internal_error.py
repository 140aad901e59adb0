"""A 500 says only "internal error" and a request id; the details go to the log."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from orchestrator.app import create_app
from orchestrator.config import Settings


async def _boom(request: Request) -> Response:
    raise RuntimeError("SELECT secret FROM t WHERE pw = 'p4ss'")


async def test_500_body_has_no_details_and_the_log_has_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    app = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", api_keys=["k"],
                              signing_key="s"))
    app.router.routes.insert(0, Route("/api/v1/boom", _boom))
    transport = httpx.ASGITransport(app, raise_app_exceptions=False)
    with caplog.at_level(logging.ERROR, "orchestrator"):
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            r = await c.get("/api/v1/boom", headers={"authorization": "Bearer k"})
            ok = await c.get("/healthz")
    assert r.status_code == 500
    err = r.json()["error"]
    assert err == {"code": "internal_error", "message": "internal error",
                   "request_id": r.headers["x-request-id"]}
    assert "secret" not in r.text and "RuntimeError" not in r.text
    logged = [rec for rec in caplog.records if err["request_id"] in rec.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert "p4ss" in str(logged[0].exc_info[1])
    # every response carries a request id, each its own
    assert ok.status_code == 200 and ok.headers["x-request-id"] != err["request_id"]
