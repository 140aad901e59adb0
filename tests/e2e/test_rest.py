"""The REST API's contract: auth, errors naming the field, pagination, health."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import Stack
from tests.support import procs


async def test_health_endpoints(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.base) as c:
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        r = await c.get("/readyz")
        assert r.status_code == 200 and r.json()["status"] == "ready"
        spec = (await c.get("/api/v1/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        assert "/api/v1/runs/{run_id}" in spec["paths"]


async def test_missing_or_wrong_api_key_is_401(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=f"{stack.base}/api/v1") as c:
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "Basic x"}):
            r = await c.get("/runs", headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "unauthorized"


async def test_unknown_run_and_function_are_404(rest: httpx.AsyncClient) -> None:
    r = await rest.get("/runs/does-not-exist")
    assert r.status_code == 404 and r.json()["error"]["field"] == "id"
    r = await rest.post("/runs", json={"function": "no-such-function"})
    assert r.status_code == 404 and r.json()["error"]["field"] == "function"
    r = await rest.get("/no/such/route")
    assert r.status_code == 404


async def test_bad_input_is_422_naming_the_field(rest: httpx.AsyncClient) -> None:
    cases = [
        ("/runs", {}, "function"),
        ("/runs", {"function": 5}, "function"),
        ("/runs", {"function": "chain", "surprise": 1}, "surprise"),
        ("/runs", [], "body"),
        ("/events", {"data": {}}, "body.name"),
        ("/events", {"name": "bad name!"}, "body.name"),
        ("/events", {"name": "ok", "data": [1]}, "body.data"),
        ("/events", [{"name": "ok"}, {"name": ""}], "body[1].name"),
        ("/events", [], "body"),
        ("/apps", {"url": "not a url"}, "url"),
        ("/apps", {}, "url"),
    ]
    for path, body, field in cases:
        r = await rest.post(path, json=body)
        assert r.status_code == 422, (path, body, r.text)
        assert r.json()["error"]["field"] == field, (path, body, r.json())
    r = await rest.post("/runs", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    r = await rest.get("/runs", params={"status": "sideways"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "status"
    r = await rest.get("/runs", params={"limit": "0"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "limit"


async def test_request_body_is_size_limited(rest: httpx.AsyncClient) -> None:
    big = {"name": "x", "data": {"blob": "a" * (5 * 1024 * 1024)}}
    r = await rest.post("/events", json=big)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = await rest.post("/events", json={"name": "x", "data": {"blob": "a" * 300_000}})
    assert r.status_code == 422 and "limit" in r.json()["error"]["message"]


async def test_unreachable_app_registration_is_422(rest: httpx.AsyncClient) -> None:
    r = await rest.post("/apps", json={"url": "http://127.0.0.1:9/api/durable"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "url"


async def test_apps_and_functions_are_listed(rest: httpx.AsyncClient, stack: Stack) -> None:
    apps = (await rest.get("/apps")).json()["apps"]
    [app] = [a for a in apps if a["id"] == "testapp"]
    assert app["url"] == stack.app_url and "chain" in app["functions"]
    fns = (await rest.get("/functions")).json()["functions"]
    by_name = {f["name"]: f for f in fns}
    assert by_name["triggered"]["triggers"] == [{"event": "test.trigger"}]
    assert by_name["flaky"]["retry"]["max_attempts"] == 4


async def test_concurrent_first_registrations_of_one_app_all_succeed(
        request: pytest.FixtureRequest, tmp_path: Path, stack: Stack) -> None:
    # Replicas (or an app's own start-up push) may sync a new app at the same moment: the
    # first inserts race on the apps table of an empty database (a fresh orchestrator on
    # the same kind of database as this module's stack).
    db = request.node.callspec.params["stack"]
    db_url = request.getfixturevalue("pg").create_db() if db == "postgres" else None
    orch, base = procs.orchestrator(tmp_path, db_url=db_url)
    orch.start()
    try:
        async with httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30, headers={
                "authorization": f"Bearer {procs.API_KEY}"}) as rest:
            rs = await asyncio.gather(*(rest.post("/apps", json={"url": stack.app_url})
                                        for _ in range(16)))
            assert [r.status_code for r in rs] == [200] * 16, [r.text for r in rs]
            apps = (await rest.get("/apps")).json()["apps"]
        assert [(a["id"], a["url"]) for a in apps] == [("testapp", stack.app_url)]
    finally:
        orch.stop()


async def test_url_of_another_app_is_409(rest: httpx.AsyncClient, bad_app: str) -> None:
    first = await rest.post("/apps", json={"url": f"{bad_app}/renamed"})
    assert first.status_code == 200, first.text
    r = await rest.post("/apps", json={"url": f"{bad_app}/renamed"})
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["field"] == "url" and repr(first.json()["id"]) in err["message"], err
    apps = (await rest.get("/apps")).json()["apps"]
    assert [a["id"] for a in apps if a["url"] == f"{bad_app}/renamed"] == [first.json()["id"]]


async def test_runs_are_paginated_and_filtered(rest: httpx.AsyncClient) -> None:
    ids = []
    for i in range(5):
        r = await rest.post("/runs", json={"function": "double", "input": i})
        assert r.status_code == 201
        ids.append(r.json()["id"])
    seen: list[str] = []
    cursor = None
    while True:
        params = {"function": "double", "limit": "2"}
        if cursor:
            params["cursor"] = cursor
        page = (await rest.get("/runs", params=params)).json()
        assert len(page["runs"]) <= 2
        assert all(r["function"] == "double" for r in page["runs"])
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert set(ids) <= set(seen)
    assert seen == sorted(seen, reverse=True)  # newest first, no duplicates
    assert len(seen) == len(set(seen))
