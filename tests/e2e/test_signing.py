"""Signatures end to end: the app refuses unsigned, forged and stale requests; the
orchestrator discards answers that are not signed with its key."""

from __future__ import annotations

import asyncio
import time

import httpx

from sdk import Client
from sdk import protocol as p
from tests.e2e.conftest import Stack
from tests.support.procs import SIGNING_KEY


async def test_app_endpoint_refuses_bad_signatures(stack: Stack) -> None:
    body = p.dumps(p.introspect_request())
    good = p.Signer(SIGNING_KEY)
    cases = {
        "unsigned": {},
        "forged": p.Signer("someone-else").sign(body),
        "stale": good.sign(body, now=time.time() - 3600),
        "tampered": good.sign(p.dumps({"v": 1, "kind": "introspect", "x": 1})),
    }
    async with httpx.AsyncClient() as http:
        for case, headers in cases.items():
            r = await http.post(stack.app_url, content=body, headers=headers)
            assert r.status_code == 401, case
            assert r.json()["error"]["code"] == "unauthorized"
        r = await http.post(stack.app_url, content=body, headers=good.sign(body))
        assert r.status_code == 200
        good.verify(r.content, r.headers)  # the answer is signed too
        assert r.json()["app_id"] == "testapp"


async def test_orchestrator_discards_answers_not_signed_with_its_key(
    stack: Stack, client: Client, bad_app: str, rest: httpx.AsyncClient
) -> None:
    r = await rest.post("/apps", json={"url": f"{bad_app}/forged"})
    assert r.status_code == 200, r.text
    h = await client.run_no_wait("forged-fn")
    run = None
    for _ in range(100):
        run = await client.get_run(h.id)
        if run["waiting"] and run["waiting"]["kind"] == "app_misconfigured":
            break
        await asyncio.sleep(0.05)
    assert run is not None and run["status"] == "running"
    assert "answer discarded" in run["waiting"]["reason"]
    assert run["output"] is None  # the forged output was not applied
    await client.cancel(h.id)
