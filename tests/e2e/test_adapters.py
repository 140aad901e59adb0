"""One suite of cases, run against the app under every adapter and a real server on
loopback: uvicorn (ASGI, on SQLite and PostgreSQL), waitress (Flask, and the bare WSGI
app), gunicorn (Django) and the Lambda handler behind API Gateway v2, function-URL and
API Gateway v1 events (tests.support.lambda_shim)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from sdk import Client
from sdk import protocol as p
from tests.e2e.conftest import Stack, running_stack
from tests.support import procs, servers
from tests.support.procs import API_KEY, SIGNING_KEY

LEGS = [("uvicorn", "postgres")] + [(s, "sqlite") for s in servers.SUITE]


@pytest.fixture(scope="module")
def sqlite_orchestrator(tmp_path_factory: pytest.TempPathFactory
                        ) -> Iterator[tuple[procs.Proc, str]]:
    """One orchestrator on SQLite for every SQLite leg (each registers its app in turn:
    the same app id at a new URL), as its start is most of a leg's time."""
    orch, base = procs.orchestrator(tmp_path_factory.mktemp("orchestrator"))
    orch.start()
    try:
        yield orch, base
    finally:
        orch.stop()


@pytest.fixture(scope="module", params=LEGS, ids=[f"{s}-{db}" for s, db in LEGS])
def adapter_stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[Stack]:
    server, db = request.param
    tmp = tmp_path_factory.mktemp(server)
    if db == "postgres":
        with running_stack(request, tmp, db) as s:
            yield s
        return
    orch, base = request.getfixturevalue("sqlite_orchestrator")
    app, app_url = servers.app(tmp, server, {"TESTAPP_FLAGS": str(tmp)})
    app.start()
    try:
        r = httpx.post(f"{base}/api/v1/apps", json={"url": app_url},
                       headers={"authorization": f"Bearer {API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
        yield Stack(tmp, orch, app, base, app_url, tmp / "effects.log")
    finally:
        app.stop()


@pytest.fixture
async def client(adapter_stack: Stack) -> AsyncIterator[Client]:
    c = adapter_stack.client()
    yield c
    await c.aclose()


def test_introspection_registered_every_function(adapter_stack: Stack) -> None:
    auth = {"authorization": f"Bearer {API_KEY}"}
    r = httpx.get(f"{adapter_stack.base}/api/v1/functions", headers=auth, timeout=10)
    fns = {f["name"]: f for f in r.json()["functions"]}
    assert {"chain", "sync-chain", "sleeper", "waiter", "fan-out", "diamond"} <= set(fns)
    assert {t["name"]: t["parents"] for t in fns["diamond"]["tasks"]} == {
        "a": [], "b": ["a"], "c": ["a"], "d": ["b", "c"]}
    info = httpx.get(adapter_stack.app_url, timeout=10).json()  # the unsigned GET
    assert info["app_id"] == "testapp" and info["protocol"] == p.VERSION


async def test_sync_and_async_steps(client: Client) -> None:
    assert await client.run("chain", 5, timeout=20) == 10
    assert await client.run("sync-chain", 3, timeout=20) == {"total": 3, "doubled": 6}


async def test_sleep(client: Client) -> None:
    out = await client.run("sleeper", 0.3, timeout=20)
    assert out["slept"] >= 0.3


async def test_wait_for_event(adapter_stack: Stack, client: Client) -> None:
    h = await client.run_no_wait("waiter", {"key": "adapters", "timeout": 30})
    async with adapter_stack.rest() as rest:
        for _ in range(200):
            run = (await rest.get(f"/runs/{h.id}")).json()
            if run["waiting"] and run["waiting"]["kind"] == "event":
                break
            await asyncio.sleep(0.05)
    await client.send_event("test.go", {"key": "adapters", "n": 1})
    out = await h.result(timeout=20)
    assert out["event"]["data"] == {"key": "adapters", "n": 1}


async def test_children(client: Client) -> None:
    assert await client.run("fan-out", 3, timeout=30) == {"sum": 6, "n": 3}


async def test_dag_with_a_sync_task(client: Client) -> None:
    # d (sync) = b (a*2) + c (a*3), a = x + 1
    out = await client.run("diamond", 1, timeout=30)
    assert (out["a"], out["b"]["value"], out["c"]["value"], out["d"]) == (2, 4, 6, 10)


def test_a_refused_signature_is_a_401(adapter_stack: Stack) -> None:
    body = p.dumps(p.introspect_request())
    good = p.Signer(SIGNING_KEY)
    forged = p.Signer("someone-else").sign(body)
    stale = good.sign(body, now=time.time() - 3600)
    for headers in ({}, forged, stale):
        r = httpx.post(adapter_stack.app_url, content=body, headers=headers, timeout=10)
        assert r.status_code == 401, (headers, r.text)
        assert r.json()["error"]["code"] == "unauthorized"
    r = httpx.post(adapter_stack.app_url, content=body, headers=good.sign(body), timeout=10)
    assert r.status_code == 200, r.text
    good.verify(r.content, r.headers)  # the answer is signed, its bytes intact
    assert r.json()["app_id"] == "testapp"


def test_a_too_large_body_is_a_413(adapter_stack: Stack) -> None:
    # (on Lambda, AWS itself refuses an event above 6 MB first; the handler refuses too)
    body = b" " * (p.MAX_REQUEST_BYTES + 1)
    r = httpx.post(adapter_stack.app_url, content=body,
                   headers=p.Signer(SIGNING_KEY).sign(body), timeout=30)
    assert r.status_code == 413, r.text
