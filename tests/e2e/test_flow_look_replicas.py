"""Wait lookback with 2 replicas on PostgreSQL, under load and across a replica's SIGKILL:
each run's step sends its own event through the *other* replica, so the event is stored
and committed before the wait after the step is recorded (the race of issue 13, every
time). With a lookback every run resumes with its own event; without one, none does."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tests.support import procs
from tests.support.pg import PgCluster
from tests.support.replicas import Replica, Replicas

APP = "tests.apps.flow_look_app:app"
RUNS = 200


class LookReplicas(Replicas):
    """Replicas of the lookback app (``Replicas.add`` waits for another app's function)."""

    def add(self, env: Mapping[str, str] | None = None) -> Replica:
        proc, base = procs.orchestrator(self.tmp, db_url=self.db_url, app_url=self.app_url,
                                        lease_ttl=self.lease_ttl,
                                        extra_env={**self.env, **(env or {})})
        node = Replica(proc, base)
        self.nodes.append(node)
        proc.start()
        node.wait_registered("look-send")
        return node


async def start_runs(group: Replicas, n: int, lookback: float | None, timeout: float,
                     tag: str) -> list[tuple[str, str]]:
    """``n`` runs, half started through each replica (one bulk request each), each
    sending its event through the other one (through its own if the other is gone)."""
    out: list[tuple[str, str]] = []
    nodes = group.alive()
    for j, via in enumerate(nodes):
        send_to = nodes[(j + 1) % len(nodes)]
        keys = [f"{tag}-{j}-{i}" for i in range(n // len(nodes))]
        async with via.rest() as rest:
            r = await rest.post("/runs/bulk", json={"function": "look-send", "inputs": [
                {"key": k, "send_to": [send_to.base, via.base], "lookback": lookback,
                 "timeout": timeout} for k in keys]})
            assert r.status_code == 201, r.text
            out += list(zip(r.json()["ids"], keys, strict=True))
    return out


async def outputs(group: Replicas, runs: list[tuple[str, str]], timeout: float
                  ) -> list[Any]:
    clients = [r.client() for r in group.alive()]
    try:
        return list(await asyncio.gather(*(clients[i % len(clients)].result(rid, timeout)
                                           for i, (rid, _) in enumerate(runs))))
    finally:
        for c in clients:
            await c.aclose()


async def test_every_run_gets_the_event_its_step_sent_across_replicas_and_a_kill(
    pg: PgCluster, tmp_path: Path
) -> None:
    group = LookReplicas(tmp_path, pg.create_db(), 2, None, {}, APP)
    try:
        group.start()
        runs = await start_runs(group, RUNS, 60, 40, "with")
        assert len(runs) == RUNS
        await asyncio.sleep(0.3)
        group[0].kill()  # mid-load: its leases expire, the other replica takes over
        group.add()  # and it comes back on the same database
        got = await outputs(group, runs, 90)
        for (rid, key), out in zip(runs, got, strict=True):
            assert out["event"] is not None, (rid, key, group.logs())
            assert out["event"]["data"] == {"key": key}, (rid, out)  # keys are unique
        # its own step's event; a step run again after the kill (its answer was lost with
        # the replica) sent a second one, and the wait took the earliest, the first
        again = [out for out in got if out["event"]["id"] != out["sent"]]
        async with group.alive()[0].rest() as rest:
            for out in again:
                second = (await rest.get(f"/events/{out['sent']}")).json()
                assert second["data"] == out["event"]["data"], (out, second)
                assert out["event"]["ts"] <= second["ts"], (out, second)
        control = await start_runs(group, 10, None, 1.0, "without")
        assert [o["event"] for o in await outputs(group, control, 60)] == [None] * 10
    finally:
        group.stop()

