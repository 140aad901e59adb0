"""Webhook deliveries against a live orchestrator: a signed GitHub push starts the run
its event triggers, a redelivery starts nothing new, and the delivery is answered before
the run starts (its latency is printed: docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import json
import statistics
import time

import httpx

from tests.e2e.conftest import Stack
from tests.unit.test_webhook_routes import GITHUB_PUSH, github_headers


async def test_github_push_starts_its_run_once(stack: Stack, rest: httpx.AsyncClient) -> None:
    r = await rest.post("/webhooks", json={
        "kind": "github", "secret": "e2e", "event": {"source": "constant",
                                                     "key": "test.trigger"}})
    assert r.status_code == 201, r.text
    src = r.json()
    body = json.dumps(GITHUB_PUSH).encode()
    headers = github_headers("e2e", body, "e2e-delivery-1")
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as hooks:  # no API key
        first = await hooks.post(src["path"], content=body, headers=headers)
        again = await hooks.post(src["path"], content=body, headers=headers)
    assert first.status_code == 200 and again.status_code == 200, (first.text, again.text)
    assert first.json() == {"id": f"{src['id']}:e2e-delivery-1", "duplicate": False}
    assert again.json()["duplicate"] is True
    for _ in range(200):
        runs = (await rest.get("/runs", params={"function": "triggered"})).json()["runs"]
        mine = [x for x in runs if x["status"] == "completed"]
        if mine:
            break
        await asyncio.sleep(0.05)
    done = [(await rest.get(f"/runs/{x['id']}")).json() for x in runs]
    started = [x for x in done if x["output"] and x["output"]["data"] == GITHUB_PUSH]
    assert len(started) == 1, done  # the redelivery started nothing


async def test_delivery_latency(stack: Stack, rest: httpx.AsyncClient) -> None:
    """Signed GitHub deliveries of a ~1 KiB push, one at a time on a kept-alive connection,
    each stored as an event that triggers a run: the answer does not wait for the run."""
    src = (await rest.post("/webhooks", json={"kind": "github", "secret": "lat",
                                             "event": {"source": "constant",
                                                       "key": "test.trigger"}})).json()
    body = json.dumps(GITHUB_PUSH).encode()
    times: list[float] = []
    async with httpx.AsyncClient(base_url=stack.base, timeout=30) as hooks:
        for i in range(200):
            headers = github_headers("lat", body, f"lat-{i}")
            t0 = time.perf_counter()
            r = await hooks.post(src["path"], content=body, headers=headers)
            times.append(time.perf_counter() - t0)
            assert r.status_code == 200, r.text
    times.sort()
    p50, p99 = statistics.median(times) * 1000, times[int(len(times) * 0.99)] * 1000
    print(f"\nwebhook delivery latency over 200: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    assert p50 < 100  # a sanity bound only ("milliseconds"); the figures are the output
