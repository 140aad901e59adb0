"""A function's ``retention``: the SDK's bounds, the orchestrator's at registration (a clear
422 for a bad value), and the value shown by GET /functions (the app in process)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from orchestrator.app import create_app
from orchestrator.config import Settings
from orchestrator.engine.registration import validate_functions
from orchestrator.errors import Invalid
from sdk import Client, Context, Function, Workflow, serve, task
from sdk import protocol as p

AUTH = {"authorization": "Bearer k"}
KEY = "s" * 32
APP_URL = "http://app.test/api/durable"


async def echo(ctx: Context, x: Any) -> Any:
    return x


@pytest.mark.parametrize(("given", "seconds"), [
    (timedelta(days=7), 7 * 86400.0), (30, 30.0), (1, 1.0),
    (timedelta(days=3650), 3650 * 86400.0)])
def test_the_sdk_sends_retention_in_seconds(given: float | timedelta, seconds: float) -> None:
    assert task("f", retention=given)(echo).config()["retention"] == seconds
    wf = Workflow("w", retention=given)
    wf.task()(echo)
    assert wf.config()["retention"] == seconds


def test_without_retention_none_is_sent() -> None:
    assert "retention" not in task("f")(echo).config()


@pytest.mark.parametrize("bad", [0, -1, 0.5, timedelta(days=3651), float("inf"), float("nan")])
def test_the_sdk_refuses_a_retention_out_of_bounds(bad: float | timedelta) -> None:
    with pytest.raises(ValueError, match="retention"):
        task("f", retention=bad)(echo)


@pytest.mark.parametrize("bad", [0, 0.5, -3, 3650 * 86400 + 1, True, "7d", [1]])
def test_registration_refuses_a_retention_out_of_bounds(bad: Any) -> None:
    with pytest.raises(Invalid) as info:
        validate_functions([{"name": "f", "retention": bad}])
    assert info.value.field == "functions" and info.value.status == 422
    assert info.value.message.startswith("function 'f': retention must be a number of "
                                         "seconds within [1, "), info.value.message


def test_registration_accepts_retention_within_bounds() -> None:
    configs, _ = validate_functions([{"name": "f", "retention": 1},
                                     {"name": "g", "retention": p.MAX_RETENTION_S},
                                     {"name": "h", "retention": None}])
    assert [c.get("retention") for c in configs] == [1, p.MAX_RETENTION_S, None]


def user_app(*functions: Function) -> Starlette:
    client = Client(app_id="shop", signing_key=KEY)
    return Starlette(routes=[Route("/api/durable", serve(client, list(functions)),
                                   methods=["GET", "POST"])])


@asynccontextmanager
async def orchestrator(tmp_path: Path, app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    """The orchestrator's REST API in process, calling ``app`` in process too."""
    orch = create_app(Settings(database_url=f"sqlite:///{tmp_path}/x.db", api_keys=["k"],
                               signing_key=KEY, allow_insecure_app_urls=True),
                      transport=httpx.ASGITransport(app))
    async with orch.router.lifespan_context(orch):
        transport = httpx.ASGITransport(orch, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t",
                                     headers=AUTH) as c:
            yield c


async def test_get_functions_shows_each_functions_retention(tmp_path: Path) -> None:
    app = user_app(task("kept-a-week", retention=timedelta(days=7))(echo),
                   task("kept-by-default")(echo))
    async with orchestrator(tmp_path, app) as c:
        r = await c.post("/api/v1/apps", json={"url": APP_URL})
        assert r.status_code == 200, r.text
        fns = {f["name"]: f for f in (await c.get("/api/v1/functions")).json()["functions"]}
        assert fns["kept-a-week"]["retention"] == 7 * 86400.0
        assert "retention" not in fns["kept-by-default"]
        one = (await c.get("/api/v1/functions/kept-a-week")).json()
        assert one["retention"] == 7 * 86400.0


async def test_an_app_sending_a_bad_retention_is_refused_with_a_clear_422(
    tmp_path: Path,
) -> None:
    f = task("too-brief")(echo)
    f.retention = 0.25  # as another SDK (or an older one) might send it
    async with orchestrator(tmp_path, user_app(f)) as c:
        r = await c.post("/api/v1/apps", json={"url": APP_URL})
        assert r.status_code == 422, r.text
        err = r.json()["error"]
        assert err["field"] == "functions"
        assert err["message"].startswith("function 'too-brief': retention must be")
        assert (await c.get("/api/v1/functions")).json()["functions"] == []
