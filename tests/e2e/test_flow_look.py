"""``wait_for_event(..., lookback=)`` end to end, on SQLite and PostgreSQL: the event sent
while the step before the wait runs (the race of issue 13) satisfies a wait with a
lookback, and only one (without it the wait times out); an event older than the lookback
is not used; match fields are respected, the earliest matching event is taken, and a
second wait does not receive the event the first one did."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdk import Client
from tests.support import procs


class LookStack:
    def __init__(self, tmp: Path, db_url: str | None) -> None:
        self.flags = tmp / "flags"
        self.flags.mkdir()
        self.app, app_url = procs.app(tmp, "tests.apps.flow_look_app:app",
                                      extra_env={"FLOWLOOK_FLAGS": str(self.flags)})
        self.orch, self.base = procs.orchestrator(tmp, app_url=app_url, db_url=db_url)
        self.app_url = app_url

    def start(self) -> None:
        self.app.start()
        self.orch.start()
        r = httpx.post(f"{self.base}/api/v1/apps", json={"url": self.app_url},
                       headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text

    def stop(self) -> None:
        self.orch.stop()
        self.app.stop()

    async def until_ready(self, run_id: str) -> None:
        """Until the run's first step is running (it then blocks until ``go``)."""
        for _ in range(1000):
            if (self.flags / f"{run_id}.ready").exists():
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{run_id} never reached its step")

    def go(self, run_id: str) -> None:
        (self.flags / f"{run_id}.go").write_text("")


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def look(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[LookStack]:
    db_url = request.getfixturevalue("pg").create_db() if request.param == "postgres" else None
    s = LookStack(tmp_path_factory.mktemp("look"), db_url)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
async def client(look: LookStack) -> AsyncIterator[Client]:
    c = Client(orchestrator_url=look.base, api_key=procs.API_KEY,
               signing_key=procs.SIGNING_KEY)
    yield c
    await c.aclose()


async def _race(look: LookStack, client: Client, function: str, inp: dict[str, Any],
                events: list[dict[str, Any]], pause: float = 0.0) -> tuple[Any, float]:
    """Start a run, send ``events`` while its step runs, let the step end ``pause`` s
    later; the run's output and when the events were sent."""
    h = await client.run_no_wait(function, inp)
    await look.until_ready(h.id)
    sent = time.time()
    for data in events:
        await client.send_event("look.go", data)
    if pause:
        await asyncio.sleep(pause)
    look.go(h.id)
    return await h.result(timeout=30), sent


@pytest.mark.parametrize("function", ["look-wait", "look-wait-sync"])
async def test_an_event_sent_during_the_step_satisfies_a_wait_with_lookback(
    look: LookStack, client: Client, function: str
) -> None:
    key = f"k-{function}"
    out, sent = await _race(look, client, function,
                            {"key": key, "lookback": 30, "timeout": 20},
                            [{"key": key, "n": 1}])
    assert out["event"]["name"] == "look.go"
    assert out["event"]["data"] == {"key": key, "n": 1}
    assert out["event"]["ts"] >= sent - 1
    if function == "look-wait":  # resumed at once, not at the timeout
        assert out["resumed_at"] - sent < 10


async def test_without_lookback_the_same_race_times_out(
    look: LookStack, client: Client
) -> None:
    out, _ = await _race(look, client, "look-wait", {"key": "k-none", "timeout": 1.0},
                         [{"key": "k-none"}])
    assert out["event"] is None


async def test_an_event_older_than_the_lookback_is_not_used(
    look: LookStack, client: Client
) -> None:
    out, _ = await _race(look, client, "look-wait",
                         {"key": "k-old", "lookback": 0.5, "timeout": 1.0},
                         [{"key": "k-old"}], pause=1.5)
    assert out["event"] is None


async def test_match_fields_are_respected_the_earliest_is_taken_and_not_taken_twice(
    look: LookStack, client: Client
) -> None:
    out, _ = await _race(look, client, "look-wait-twice",
                         {"key": "k-m", "lookback": 30, "timeout": 1.5},
                         [{"key": "other", "n": 0}, {"key": "k-m", "n": 1},
                          {"key": "k-m", "n": 2}])
    assert out["first"]["data"] == {"key": "k-m", "n": 1}
    assert out["second"]["data"] == {"key": "k-m", "n": 2}
    out, _ = await _race(look, client, "look-wait-twice",
                         {"key": "k-one", "lookback": 30, "timeout": 1.0},
                         [{"key": "k-one", "n": 1}])
    assert out["first"]["data"] == {"key": "k-one", "n": 1}
    assert out["second"] is None  # the first wait's event is not delivered again


async def test_a_lookback_wait_with_nothing_in_its_window_gets_a_later_event(
    look: LookStack, client: Client
) -> None:
    h = await client.run_no_wait("look-wait", {"key": "k-later", "lookback": 30,
                                               "timeout": 20})
    await look.until_ready(h.id)
    look.go(h.id)
    for _ in range(500):
        run = await client.get_run(h.id)
        if run["waiting"] and run["waiting"]["kind"] == "event":
            break
        await asyncio.sleep(0.02)
    assert run["waiting"]["kind"] == "event"
    await client.send_event("look.go", {"key": "k-later"})
    out = await h.result(timeout=20)
    assert out["event"]["data"] == {"key": "k-later"}
