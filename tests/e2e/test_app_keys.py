"""Per-app signing keys and time budgets, end to end: apps with keys of their own (not
the orchestrator's ``DURABLE_SIGNING_KEY``), one app's key neither signing an answer for
another nor registering over it, a rotation through the CLI with calls in flight (none
fails), and a per-app time budget the SDK yields at."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

import sdk
from tests.support import procs

KEYS = {"alpha": "alpha-key-0123456789abcdef", "beta": "beta-key-0123456789abcdef",
        "gamma": "gamma-key-0123456789abcdef", "delta": "delta-key-0123456789abcdef"}
NEW_DELTA_KEY = "delta-key-2-0123456789abcdef"
MODULE = "tests.apps.keyapp:app"


@dataclass
class Apps:
    tmp: Path
    base: str
    urls: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    procs: dict[str, procs.Proc] = field(default_factory=dict)

    def start(self, app_id: str, key: str, fallback: str | None = None) -> str:
        """Start (or restart, on the same port) the app ``app_id`` holding these keys."""
        old = self.procs.get(app_id)
        if old is not None:
            old.stop()
        env = {"DURABLE_APP_ID": app_id, "DURABLE_SIGNING_KEY": key,
               "KEYAPP_CALLS": str(self.calls_file(app_id))}
        if fallback:
            env["DURABLE_SIGNING_KEY_FALLBACK"] = fallback
        proc, url = procs.app(self.tmp, MODULE, self.ports.get(app_id), extra_env=env)
        proc.start()
        self.procs[app_id], self.urls[app_id] = proc, url
        self.ports[app_id] = int(url.split(":")[2].split("/")[0])
        return url

    def calls_file(self, app_id: str) -> Path:
        return self.tmp / f"{app_id}.calls"

    def calls(self, app_id: str, run_id: str) -> int:
        f = self.calls_file(app_id)
        return f.read_text().split().count(run_id) if f.exists() else 0

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", "apps", "--url", self.base, *args],
            cwd=procs.ROOT, capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONPATH": str(procs.ROOT), "DURABLE_API_KEY": procs.API_KEY})


@pytest.fixture(scope="module")
def apps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Apps]:
    tmp = tmp_path_factory.mktemp("appkeys")
    orch, base = procs.orchestrator(tmp)
    orch.start()
    out = Apps(tmp, base)
    try:
        for app_id, key in KEYS.items():
            out.start(app_id, key)
        yield out
    finally:
        for p in out.procs.values():
            p.stop()
        orch.stop()


@pytest.fixture
async def rest(apps: Apps) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"{apps.base}/api/v1", timeout=60, headers={
            "authorization": f"Bearer {procs.API_KEY}"}) as r:
        yield r


async def register(rest: httpx.AsyncClient, url: str, key: str | None = None,
                   status: int = 200, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"url": url, **extra}
    if key is not None:
        body["signing_key"] = key
    r = await rest.post("/apps", json=body)
    assert r.status_code == status, r.text
    return r.json()  # type: ignore[no-any-return]


async def run(rest: httpx.AsyncClient, function: str, input: Any = None,
              wait: float = 30) -> dict[str, Any]:
    r = await rest.post("/runs", params={"wait": wait}, json={"function": function,
                                                              "input": input})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def app_row(rest: httpx.AsyncClient, app_id: str) -> dict[str, Any]:
    return next(a for a in (await rest.get("/apps")).json()["apps"] if a["id"] == app_id)


async def test_apps_with_keys_of_their_own(apps: Apps, rest: httpx.AsyncClient) -> None:
    # the app does not hold the orchestrator's key: introspection with it is refused
    r = await rest.post("/apps", json={"url": apps.urls["alpha"]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "url", r.text
    # nor another app's key
    await register(rest, apps.urls["alpha"], KEYS["beta"], 422)
    for app_id in ("alpha", "beta"):
        await register(rest, apps.urls[app_id], KEYS[app_id])
        done = await run(rest, f"{app_id}-echo", {"hi": app_id})
        assert done["status"] == "completed" and done["output"] == {"hi": app_id}, done
        shown = await app_row(rest, app_id)
        assert shown["own_key"] and not shown["fallback_key"], shown
        assert KEYS[app_id] not in str(shown)
    # a re-sync without the key uses the key the app is registered with
    await register(rest, apps.urls["alpha"])


async def test_one_apps_key_cannot_register_over_another(apps: Apps,
                                                         rest: httpx.AsyncClient) -> None:
    await register(rest, apps.urls["alpha"], KEYS["alpha"])
    impostor = Apps(apps.tmp, apps.base)
    url = impostor.start("alpha", KEYS["beta"])  # claims alpha's id, holds beta's key
    try:
        r = await rest.post("/apps", json={"url": url, "signing_key": KEYS["beta"]})
        assert r.status_code == 409 and r.json()["error"]["field"] == "signing_key", r.text
        r = await rest.post("/apps", json={"url": url})  # nor with the orchestrator's key
        assert r.status_code == 422, r.text
    finally:
        impostor.procs["alpha"].stop()
    assert (await app_row(rest, "alpha"))["url"] == apps.urls["alpha"]


async def test_another_apps_key_cannot_sign_an_answer(apps: Apps,
                                                      rest: httpx.AsyncClient) -> None:
    await register(rest, apps.urls["gamma"], KEYS["gamma"])
    # gamma now accepts its own key but signs its answers with beta's
    apps.start("gamma", KEYS["beta"], fallback=KEYS["gamma"])
    started = await run(rest, "gamma-echo", 1, wait=0)
    rid = started["id"]
    for _ in range(200):
        got = (await rest.get(f"/runs/{rid}")).json()
        if got["waiting"] and got["waiting"]["kind"] == "app_misconfigured":
            break
        await asyncio.sleep(0.05)
    assert got["waiting"]["kind"] == "app_misconfigured", got
    assert "answer discarded" in got["waiting"]["reason"]
    assert (await app_row(rest, "gamma"))["status"] == "misconfigured"
    apps.start("gamma", KEYS["gamma"])  # fixed: the prober verifies it, the run goes on
    done = (await rest.get(f"/runs/{rid}/wait", params={"timeout": 30})).json()
    assert done["status"] == "completed" and done["output"] == 1, done


async def test_a_rotation_fails_no_call_in_flight_and_the_cli_rotates(
        apps: Apps, rest: httpx.AsyncClient) -> None:
    await register(rest, apps.urls["delta"], KEYS["delta"])
    # step 1: the app accepts the new key too (still signing with the old one)
    apps.start("delta", KEYS["delta"], fallback=NEW_DELTA_KEY)
    ids = [(await run(rest, "delta-steps", 10, wait=0))["id"] for _ in range(20)]  # 3 s
    await asyncio.sleep(0.2)  # calls are in flight
    # step 2: the orchestrator signs with the new key, accepts answers signed with either
    # (through the REST API: the CLI's start-up may outlast the calls; it is used below)
    r = await rest.post("/apps/delta/keys", json={"key": NEW_DELTA_KEY})
    assert r.status_code == 201 and r.json() == {"id": "delta", "signing_key": NEW_DELTA_KEY}
    statuses = [(await rest.get(f"/runs/{rid}")).json()["status"] for rid in ids]
    assert "running" in statuses  # the rotation came while calls were in flight
    assert (await app_row(rest, "delta"))["fallback_key"]
    for rid in ids:  # each delivered once, its answer accepted
        done = (await rest.get(f"/runs/{rid}/wait", params={"timeout": 30})).json()
        assert done["status"] == "completed", done
        assert apps.calls("delta", rid) == 1
    assert (await app_row(rest, "delta"))["status"] == "ok"
    # step 3: the app signs with the new key; step 4: drop the old one
    apps.start("delta", NEW_DELTA_KEY)
    out = await asyncio.to_thread(apps.cli, "drop-fallback", "delta")
    assert out.returncode == 0, out.stderr
    assert not (await app_row(rest, "delta"))["fallback_key"]
    assert (await run(rest, "delta-steps", 1))["status"] == "completed"
    # the CLI: a given key, then a generated one, printed once
    out = await asyncio.to_thread(apps.cli, "rotate-key", "delta", "--key", KEYS["delta"])
    assert out.returncode == 0 and out.stdout.strip() == KEYS["delta"], out
    assert (await app_row(rest, "delta"))["fallback_key"]
    out = await asyncio.to_thread(apps.cli, "rotate-key", "delta")
    assert out.returncode == 0 and len(out.stdout.strip()) >= 40, out
    assert out.stdout.strip() not in (KEYS["delta"], NEW_DELTA_KEY)
    out = await asyncio.to_thread(apps.cli, "budget", "delta", "1500")
    assert out.returncode == 0 and (await app_row(rest, "delta"))["budget_ms"] == 1500, out
    out = await asyncio.to_thread(apps.cli, "drop-fallback", "nope")
    assert out.returncode == 1 and "404" in out.stderr, out


async def test_an_apps_time_budget_makes_it_yield(apps: Apps, rest: httpx.AsyncClient) -> None:
    await register(rest, apps.urls["beta"], KEYS["beta"], budget_ms=250)
    assert (await app_row(rest, "beta"))["budget_ms"] == 250
    # each 0.3 s step is past the budget: the SDK yields after each, one call per step
    done = await run(rest, "beta-steps", 3)
    assert done["status"] == "completed", done
    assert apps.calls("beta", done["id"]) == 3
    r = await rest.patch("/apps/beta", json={"budget_ms": None})  # the default: 30 s
    assert r.status_code == 200 and r.json()["budget_ms"] is None, r.text
    done = await run(rest, "beta-steps", 3)
    assert apps.calls("beta", done["id"]) == 1
    r = await rest.patch("/apps/beta", json={"budget_ms": 60_000})  # not below the timeout
    assert r.status_code == 422 and r.json()["error"]["field"] == "budget_ms", r.text
    r = await rest.patch("/apps/beta", json={"budget_ms": 0})
    assert r.status_code == 422, r.text


async def test_the_sdk_client_registers_an_app_with_its_own_key_and_budget(
        apps: Apps, rest: httpx.AsyncClient) -> None:
    client = sdk.Client(orchestrator_url=apps.base, api_key=procs.API_KEY)
    try:
        got = await client.register(apps.urls["beta"], signing_key=KEYS["beta"],
                                    budget_ms=1500)
        assert got["id"] == "beta", got
        with pytest.raises(sdk.OrchestratorError) as refused:  # another app's key
            await client.register(apps.urls["beta"], signing_key=KEYS["alpha"])
        assert refused.value.status == 422, refused.value
    finally:
        await client.aclose()
    shown = await app_row(rest, "beta")
    assert shown["own_key"] and shown["budget_ms"] == 1500, shown
    done = await run(rest, "beta-echo", {"via": "sdk"})
    assert done["status"] == "completed" and done["output"] == {"via": "sdk"}, done


async def test_a_key_generated_on_registration_is_rotated_in_without_a_refused_call(
        apps: Apps, rest: httpx.AsyncClient) -> None:
    # an app on the orchestrator's key asks for a key of its own as it registers (CLI)
    url = apps.start("epsilon", procs.SIGNING_KEY)
    r = await rest.post("/apps", json={"url": url, "signing_key": "x" * 20,
                                       "generate_key": True})
    assert r.status_code == 422 and r.json()["error"]["field"] == "generate_key", r.text
    out = await asyncio.to_thread(apps.cli, "register", url, "--generate-key")
    assert out.returncode == 0, out.stderr
    key = out.stdout.strip().splitlines()[-1]
    assert len(key) >= 40 and key != procs.SIGNING_KEY, out.stdout
    assert '"id": "epsilon"' in out.stdout and key not in out.stdout.splitlines()[0]
    shown = await app_row(rest, "epsilon")
    assert shown["own_key"] and shown["fallback_key"], shown
    assert key not in str(shown)  # a generated key is answered once, never listed
    assert (await run(rest, "epsilon-echo", 1))["output"] == 1  # still the old key
    # mid-rotation, another generated key is refused: the fallback is in use
    r = await rest.post("/apps", json={"url": url, "generate_key": True})
    assert r.status_code == 409 and r.json()["error"]["field"] == "generate_key", r.text
    # the app is redeployed with the new key (the old as its fallback): answers signed
    # with the new key verify
    apps.start("epsilon", key, fallback=procs.SIGNING_KEY)
    assert (await run(rest, "epsilon-echo", 2))["output"] == 2
    # rotated in: the orchestrator signs with it
    r = await rest.post("/apps/epsilon/keys", json={"key": key})
    assert r.status_code == 201, r.text
    assert (await run(rest, "epsilon-echo", 3))["output"] == 3
    # the app drops the old key, and so does the orchestrator
    apps.start("epsilon", key)
    assert (await rest.delete("/apps/epsilon/keys/fallback")).status_code == 204
    assert (await run(rest, "epsilon-echo", 4))["output"] == 4
    assert not (await app_row(rest, "epsilon"))["fallback_key"]
    # the old key no longer signs for it: a re-sync with it is refused
    await register(rest, url, procs.SIGNING_KEY, 422)
    await register(rest, url, key)
