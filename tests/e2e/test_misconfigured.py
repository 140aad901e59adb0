"""An app that signs its answers with the wrong key is marked misconfigured: its side
effects are not repeated (no invoke is sent to it), it is probed with signed
introspection calls, and once it verifies again its runs continue."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from sdk import Client
from tests.support import procs


def _effects(path: Path, run_id: str) -> int:
    if not path.exists():
        return 0
    return sum(1 for line in path.read_text().splitlines() if line.startswith(run_id + " "))


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_a_misconfigured_app_runs_its_side_effect_at_most_once(
    tmp_path: Path, db: str, request: pytest.FixtureRequest
) -> None:
    db_url = request.getfixturevalue("pg").create_db() if db == "postgres" else None
    effects = tmp_path / "effects.log"
    port = procs.free_port()
    env = {"TESTAPP_EFFECTS": str(effects), "TESTAPP_FLAGS": str(tmp_path)}
    good, app_url = procs.app(tmp_path, port=port, extra_env=env)
    # a bad deploy: it accepts the orchestrator's requests (the right key, as fallback)
    # but signs its answers with another key
    bad, _ = procs.app(tmp_path, port=port, extra_env={
        **env, "DURABLE_SIGNING_KEY": "not-the-key-0123456789",
        "DURABLE_SIGNING_KEY_FALLBACK": procs.SIGNING_KEY})
    orch, base = procs.orchestrator(tmp_path, db_url=db_url)
    good.start()
    orch.start()
    client = Client(orchestrator_url=base, api_key=procs.API_KEY,
                    signing_key=procs.SIGNING_KEY)
    rest = httpx.AsyncClient(base_url=f"{base}/api/v1", timeout=30,
                             headers={"authorization": f"Bearer {procs.API_KEY}"})
    try:
        r = await rest.post("/apps", json={"url": app_url})
        assert r.status_code == 200, r.text
        good.stop()
        bad.start()
        h = await client.run_no_wait("effects", 1)
        app: dict[str, object] = {}
        run: dict[str, object] = {}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            app = (await rest.get("/apps")).json()["apps"][0]
            run = await client.get_run(h.id)
            waiting = run.get("waiting")
            if app["status"] == "misconfigured" and isinstance(waiting, dict) \
                    and waiting["kind"] == "app_misconfigured":
                break
            await asyncio.sleep(0.1)
        assert app["status"] == "misconfigured", app
        assert "answer discarded" in str(app["error"])
        assert run["status"] == "running"
        await asyncio.sleep(6)  # many delivery retries' worth (backoff max is 1 s)
        assert _effects(effects, h.id) == 1  # the one call that found out
        run = await client.get_run(h.id)
        assert isinstance(run["waiting"], dict)
        assert run["waiting"]["kind"] == "app_misconfigured", run
        assert (await rest.get("/apps")).json()["apps"][0]["status"] == "misconfigured"

        bad.stop()
        good.start()  # fixed: the probe verifies, the run continues
        done = await client.wait(h.id, timeout=30)
        assert done["status"] == "completed" and done["output"] == 1, done
        assert (await rest.get("/apps")).json()["apps"][0]["status"] == "ok"
        # the discarded answer's step ran again once, as a retried step would
        assert _effects(effects, h.id) == 2
    finally:
        await rest.aclose()
        await client.aclose()
        orch.stop()
        bad.stop()
        good.stop()
