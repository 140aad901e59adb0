"""Kept memos (issue 14, §3: a long durable loop): after its first calls, a long run's
call carries only its memo's tail; the app keeps the head. Real orchestrator and app
processes, on SQLite and PostgreSQL; the app logs each request's memo (tests/apps/
tails_app.py)."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from sdk import Client
from tests.support import procs


class TailsStack:
    def __init__(self, tmp: Path, db_url: str | None, tails: bool = True) -> None:
        self.tmp = tmp
        self.log = tmp / "tails.log"
        self.app, self.app_url = procs.app(
            tmp, "tests.apps.tails_app:app",
            extra_env={"TAILS_LOG": str(self.log), "TESTAPP_FLAGS": str(tmp)})
        self.orch, self.base = procs.orchestrator(
            tmp, db_url=db_url, app_url=self.app_url,
            extra_env={} if tails else {"DURABLE_MEMO_TAILS": "false"})

    def start(self) -> TailsStack:
        self.app.start()
        self.orch.start()
        r = httpx.post(f"{self.base}/api/v1/apps", json={"url": self.app_url},
                       headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
        return self

    def stop(self) -> None:
        self.orch.stop()
        self.app.stop()

    @contextlib.asynccontextmanager
    async def client(self) -> AsyncIterator[Client]:
        c = Client(orchestrator_url=self.base, api_key=procs.API_KEY)
        try:
            yield c
        finally:
            await c.aclose()

    def calls(self, run_id: str) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [c for c in map(json.loads, self.log.read_text().splitlines())
                if c["run"] == run_id]


@pytest.fixture(params=["sqlite", "postgres"])
def tails(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TailsStack]:
    db_url = request.getfixturevalue("pg").create_db() if request.param == "postgres" else None
    s = TailsStack(tmp_path, db_url).start()
    try:
        yield s
    finally:
        s.stop()


N = 40


async def test_a_long_loop_sends_tails_and_completes(tails: TailsStack) -> None:
    async with tails.client() as c:
        h = await c.run_no_wait("tails-loop", {"n": N})
        assert (await c.wait(h.id, timeout=60))["output"] == sum(range(N))
        m = await c.run_no_wait("tails-mutate", 30)
        mutated = (await c.wait(m.id, timeout=60))["output"]
    assert mutated == [1] * 30  # every replay saw the recorded output, not the mutated one
    calls = tails.calls(h.id)
    assert len(calls) == N + 1  # a call per iteration (a wake-up, a step, a sleep), the end
    # the memo grows to 2N entries; once the head is kept, each call carries a few
    assert max(c["memo"] for c in calls) <= 8 + 2, calls
    tailed = [c for c in calls if c["memo_from"] > 0]
    assert len(tailed) >= len(calls) - 6, calls
    assert all(c["status"] != "memo_needed" for c in calls)
    for prev, nxt in itertools.pairwise(calls):
        # the next tail starts at most where the app said its kept head ends
        assert nxt["memo_from"] <= prev["kept"]
        if prev["kept"]:
            assert nxt["memo_from"] > 0


async def test_a_restarted_app_asks_for_the_whole_memo(tails: TailsStack) -> None:
    async with tails.client() as c:
        # a long sleep after step 15: the app restarts meanwhile, between two calls
        h = await c.run_no_wait("tails-loop", {"n": 30, "pause_at": 15, "pause": 5})
        deadline = time.monotonic() + 30
        while len(tails.calls(h.id)) < 16:  # the call that ran step 15 answered
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert tails.calls(h.id)[-1]["kept"] > 0
        tails.app.stop()  # its kept memos are gone with it
        tails.app.start()
        run = await c.wait(h.id, timeout=60)
    assert run["status"] == "completed" and run["output"] == sum(range(30)), run
    calls = tails.calls(h.id)
    needed = [i for i, x in enumerate(calls) if x["status"] == "memo_needed"]
    assert needed, calls  # the new process did not have the head ...
    i = needed[0]
    assert calls[i]["memo_from"] > 0
    again = calls[i + 1]  # ... and was sent the whole memo at once, under the same call
    assert again["call"] == calls[i]["call"] and again["memo_from"] == 0
    assert again["memo"] >= calls[i]["memo_from"] and again["status"] != "memo_needed"
    # the call was not run twice: each step recorded once, in order
    steps = [s for s in run["steps"] if s["kind"] == "step"]
    assert [s["output"] for s in steps] == [sum(range(k + 1)) for k in range(30)]
    assert all(s["attempts"] == 1 for s in steps)


async def test_a_replayed_run_is_not_fed_the_head_kept_before(tails: TailsStack) -> None:
    async with tails.client() as c:
        h = await c.run_no_wait("tails-loop", {"n": 30, "pause_at": 15, "pause": 60})
        deadline = time.monotonic() + 30
        while len(tails.calls(h.id)) < 16:  # asleep after step 15, its head kept
            assert time.monotonic() < deadline
            time.sleep(0.02)
        before = tails.calls(h.id)[-1]
        assert before["kept"] > 0
        await c.cancel(h.id)
        # from the start, with a new input: every step's output differs
        await c.replay(h.id, from_start=True, input={"n": 20, "base": 1000})
        run = await c.wait(h.id, timeout=60)
    assert run["status"] == "completed" and run["output"] == 1000 + sum(range(20)), run
    after = tails.calls(h.id)[16:]
    assert after[0]["memo_from"] == 0 and after[0]["epoch"] != before["epoch"]
    assert all(x["status"] != "memo_needed" for x in after)


async def test_memo_tails_can_be_turned_off(tmp_path: Path) -> None:
    s = TailsStack(tmp_path, None, tails=False).start()
    try:
        async with s.client() as c:
            h = await c.run_no_wait("tails-loop", {"n": 20})
            assert (await c.wait(h.id, timeout=60))["output"] == sum(range(20))
        calls = s.calls(h.id)
        assert calls and all(x["memo_from"] == 0 and x["epoch"] is None for x in calls)
        assert max(x["memo"] for x in calls) == 2 * 20  # the whole memo, each time
    finally:
        s.stop()
