"""Flow control at run creation (engine/flow.py): GCRA's arithmetic, and each control
applied by ``ingest.create_runs`` on a real SQLite store."""

from __future__ import annotations

import json
import random
from typing import Any, cast

import pytest
from sqlalchemy import select

from orchestrator.engine.flow import IDLE_S, Gcra, controls, hold_starts
from orchestrator.engine.ingest import NewRun, create_runs
from orchestrator.engine.lifecycle import Effects
from orchestrator.engine.registry import FunctionInfo, Registry
from orchestrator.store import Store
from orchestrator.store.models import queue
from sdk import flow as f
from sdk.function import Retry

# -- GCRA ------------------------------------------------------------------------------


def windows_max(starts: list[float], period: float) -> int:
    """The most starts in any half-open window [a, a + period) (a at each start), to a
    microsecond (``flow.EPSILON_S``)."""
    starts = sorted(starts)
    best = j = 0
    for i, a in enumerate(starts):
        while j < len(starts) and starts[j] < a + period - 1e-6:
            j += 1
        best = max(best, j - i)
    return best


@pytest.mark.parametrize(("limit", "period", "burst"),
                         [(1, 1.0, 1), (5, 1.0, 1), (10, 60.0, 3), (7, 0.5, 7), (3, 2.0, 10)])
def test_throttle_schedule_never_exceeds_limit_plus_burst_minus_one(
        limit: int, period: float, burst: int) -> None:
    g = Gcra.of(limit, period, burst)
    rng = random.Random(limit * 1000 + burst)
    for _ in range(20):
        tat, now, starts = 0.0, 1000.0, []
        for _ in range(200):
            now += rng.choice([0.0, 0.0, rng.random() * period / limit * 2, rng.random()])
            start, tat = g.schedule(tat, now)
            assert start >= now  # delayed, never earlier than the trigger
            starts.append(start)
        assert windows_max(starts, period) <= limit + burst - 1
    # and the schedule is not needlessly slow: a backlog goes at the limit, after the burst
    n = burst + limit * 3
    burst_starts = []
    tat = 0.0
    for _ in range(n):
        start, tat = g.schedule(tat, 5000.0)
        burst_starts.append(start)
    assert burst_starts[:burst] == [5000.0] * burst
    assert burst_starts[-1] == pytest.approx(5000.0 + (n - burst) * period / limit)


def test_throttle_at_a_period_boundary() -> None:
    g = Gcra.of(2, 1.0)  # one start every 0.5 s
    s1, tat = g.schedule(0.0, 10.0)
    s2, tat = g.schedule(tat, 10.0)
    s3, tat = g.schedule(tat, 10.0)
    assert (s1, s2, s3) == (10.0, 10.5, 11.0)
    # [10, 11) holds two: the third is exactly at the boundary, in the next window
    assert windows_max([s1, s2, s3], 1.0) == 2
    # a trigger after the backlog drained starts at once
    s4, _ = g.schedule(tat, 20.0)
    assert s4 == 20.0


def test_rate_limit_admits_the_burst_then_one_per_interval() -> None:
    g = Gcra.of(10, 60.0, burst=3)  # interval 6 s, 3 at once
    tat, ok = 0.0, []
    for _ in range(5):
        admitted, tat = g.admit(tat, 100.0)
        ok.append(admitted)
    assert ok == [True, True, True, False, False]
    assert g.admit(tat, 105.9)[0] is False
    admitted, tat2 = g.admit(tat, 106.0)  # one interval later: one more
    assert admitted and g.admit(tat2, 106.0)[0] is False
    # a dropped trigger uses no capacity: the stored tat is unchanged
    assert g.admit(tat, 101.0) == (False, tat)


def test_rate_limit_window_invariant_under_random_arrivals() -> None:
    g = Gcra.of(4, 1.0, burst=2)
    rng = random.Random(7)
    tat, now, admitted = 0.0, 0.0, []
    for _ in range(2000):
        now += rng.expovariate(20)
        ok, tat = g.admit(tat, now)
        if ok:
            admitted.append(now)
    assert windows_max(admitted, 1.0) <= 4 + 2 - 1
    assert len(admitted) >= now * 4 * 0.9  # close to the rate, not starved


def test_clock_going_backwards_grants_no_extra_starts() -> None:
    g = Gcra.of(1, 10.0)
    ok, tat = g.admit(0.0, Gcra.clock(100.0, 0.0))
    assert ok
    # a replica whose clock is 50 s behind: the key's time does not go back with it
    t = Gcra.clock(50.0, 100.0)
    assert t == 100.0
    assert g.admit(tat, t)[0] is False
    start, _ = g.schedule(tat, Gcra.clock(50.0, 100.0))
    assert start == 110.0


# -- create_runs with the controls -----------------------------------------------------


class StubRegistry:
    def __init__(self, infos: dict[str, FunctionInfo]) -> None:
        self.infos = infos

    async def get_many(self, names: set[str]) -> dict[str, FunctionInfo]:
        return {n: self.infos[n] for n in names if n in self.infos}


def info(name: str, fc: f.FlowControl, triggers: list[str] | None = None) -> FunctionInfo:
    cfg: dict[str, Any] = {**fc.to_wire(), "triggers": triggers or []}
    return FunctionInfo(name, "app", "http://app", "task", cfg, Retry())


async def make(store: Store, infos: list[FunctionInfo], specs: list[NewRun],
               now: float) -> list[str]:
    reg = cast(Registry, StubRegistry({i.name: i for i in infos}))
    fx = Effects(reg)
    async with store.write() as tx:
        ids = await create_runs(tx, specs, now, fx)
        await tx.queue.remove(fx.ended)  # as Hub.transact does before the commit
        return ids


async def runs_of(store: Store, ids: list[str]) -> dict[str, Any]:
    async with store.read() as tx:
        return await tx.runs.get_many(ids)


async def due_of(store: Store, ids: list[str]) -> dict[str, float]:
    """The due time of each of these runs' queue rows (those that have one)."""
    async with store.read() as tx:
        got = await tx.queue.conn.execute(
            select(queue.c.run_id, queue.c.due_at).where(queue.c.run_id.in_(ids)))
        return {r.run_id: float(r.due_at) for r in got}


def ev(data: Any) -> str:
    return json.dumps({"id": "e", "name": "x", "data": data, "ts": 0})


async def test_throttle_delays_runs_and_never_drops(store: Store) -> None:
    fn = info("t", f.FlowControl.of(throttle=f.Throttle(2, period=1.0, key="input.k")))
    ids = await make(store, [fn], [NewRun("t", json.dumps({"k": "a"})) for _ in range(5)]
                     + [NewRun("t", json.dumps({"k": "b"}))], 100.0)
    due = await due_of(store, ids)
    assert [due[i] for i in ids] == [100.0, 100.5, 101.0, 101.5, 102.0, 100.0]
    more = await make(store, [fn], [NewRun("t", json.dumps({"k": "a"}))], 100.2)
    assert (await due_of(store, more))[more[0]] == 102.5  # behind the backlog


async def test_rate_limit_records_dropped_triggers_as_skipped_runs(store: Store) -> None:
    fn = info("r", f.FlowControl.of(rate_limit=f.RateLimit(1, period=60, burst=2)))
    ids = await make(store, [fn], [NewRun("r", "1") for _ in range(4)], 100.0)
    runs = await runs_of(store, ids)
    assert [runs[i].status for i in ids] == ["queued", "queued", "skipped", "skipped"]
    err = json.loads(runs[ids[2]].error_json)
    assert err["type"] == "RateLimited" and err["key"] == "" and "rate limit" in err["message"]
    assert set(await due_of(store, ids)) == set(ids[:2])  # no queue row for a dropped one


async def test_debounce_folds_a_burst_into_one_run_with_the_last_input(store: Store) -> None:
    fn = info("d", f.FlowControl.of(debounce=f.Debounce(2.0, key="event.data.k",
                                                        max_wait=5.0)))
    first = await make(store, [fn], [NewRun("d", "1", ev({"k": 1, "n": 1})),
                                     NewRun("d", "2", ev({"k": 1, "n": 2}))], 100.0)
    assert first[0] == first[1]
    assert (await due_of(store, first))[first[0]] == 102.0
    again = await make(store, [fn], [NewRun("d", "3", ev({"k": 1, "n": 3}))], 101.0)
    assert again == first[:1]
    run = (await runs_of(store, again))[again[0]]
    assert run.input_json == "3" and json.loads(run.event_json)["data"]["n"] == 3
    assert (await due_of(store, again))[again[0]] == 103.0
    for at in (102.5, 104.0):
        late = await make(store, [fn], [NewRun("d", "4", ev({"k": 1, "n": 4}))], at)
        assert late == first[:1]
    assert (await due_of(store, late))[late[0]] == 105.0  # max_wait: 100 + 5, not 106
    other = await make(store, [fn], [NewRun("d", "5", ev({"k": 2}))], 104.0)
    assert other != first[:1]
    # once claimed, a trigger opens a new burst
    async with store.write() as tx:
        claimed = await tx.queue.claim("me", 106.0, 200.0, 10)
        await tx.runs.mark_running([c.run_id for c in claimed], 106.0)
    assert {c.run_id for c in claimed} == {first[0], other[0]}
    new = await make(store, [fn], [NewRun("d", "6", ev({"k": 1}))], 106.5)
    assert new[0] not in (first[0], other[0])
    # a run due already (its quiet period over) but not claimed yet takes no more triggers
    after = await make(store, [fn], [NewRun("d", "7", ev({"k": 1}))], 109.0)
    assert after[0] != new[0]
    assert (await runs_of(store, new))[new[0]].input_json == "6"


async def test_singleton_skip_and_cancel(store: Store) -> None:
    skip = info("s", f.FlowControl.of(singleton=f.Singleton(key="input.k")))
    a = await make(store, [skip], [NewRun("s", '{"k": 1}'), NewRun("s", '{"k": 1}'),
                                   NewRun("s", '{"k": 2}')], 100.0)
    runs = await runs_of(store, a)
    assert [runs[i].status for i in a] == ["queued", "skipped", "queued"]
    assert json.loads(runs[a[1]].error_json) == {
        "type": "SingletonSkipped", "key": "1", "active_run": a[0],
        "message": f"run {a[0]} of the same key is active: this trigger was skipped"}
    cancel = info("c", f.FlowControl.of(singleton=f.Singleton(mode="cancel")))
    b = await make(store, [cancel], [NewRun("c", "1"), NewRun("c", "2")], 100.0)
    c = await make(store, [cancel], [NewRun("c", "3")], 101.0)
    runs = await runs_of(store, b + c)
    assert [runs[i].status for i in b + c] == ["cancelled", "cancelled", "queued"]
    assert json.loads(runs[b[1]].error_json)["replaced_by"] == c[0]
    assert set(await due_of(store, b + c)) == {c[0]}


async def test_batch_gathers_events_per_key(store: Store) -> None:
    fn = info("b", f.FlowControl.of(batch=f.Batch(3, timeout=10, key="event.data.k")),
              triggers=["x"])
    ids = await make(store, [fn], [NewRun("b", json.dumps({"k": i % 2, "i": i}),
                                          json.dumps({"id": f"e{i}", "name": "x",
                                                      "data": {"k": i % 2, "i": i}}))
                                   for i in range(7)], 100.0)
    assert len(set(ids)) == 3  # k=0: e0 e2 e4 | e6 ; k=1: e1 e3 e5
    runs = await runs_of(store, list(set(ids)))
    sizes = sorted(len(json.loads(r.events_json)) for r in runs.values())
    assert sizes == [1, 3, 3]
    due = await due_of(store, list(set(ids)))
    full = [rid for rid, r in runs.items() if len(json.loads(r.events_json)) == 3]
    assert all(due[rid] == 100.0 for rid in full)  # full: due at once
    [rest] = [rid for rid in runs if rid not in full]
    assert due[rest] == 110.0 and json.loads(runs[rest].input_json) == [{"k": 0, "i": 6}]
    later = await make(store, [fn], [NewRun("b", "{}", json.dumps(
        {"id": "e7", "name": "x", "data": {"k": 0, "i": 7}}))], 105.0)
    assert later == [rest]
    run = (await runs_of(store, later))[rest]
    assert [e["id"] for e in json.loads(run.events_json)] == ["e6", "e7"]
    assert json.loads(run.input_json) == [{"k": 0, "i": 6}, {"k": 0, "i": 7}]
    assert json.loads(run.event_json)["id"] == "e6"  # ctx.event: the first
    assert (await due_of(store, later))[rest] == 110.0
    direct = await make(store, [fn], [NewRun("b", '"x"')], 105.0)
    run = (await runs_of(store, direct))[direct[0]]
    assert run.events_json is None and run.input_json == '"x"'  # not batched


async def test_children_and_tasks_bypass_the_controls(store: Store) -> None:
    fn = info("r", f.FlowControl.of(rate_limit=f.RateLimit(1, period=60)))
    ids = await make(store, [fn], [NewRun("r", "1", parent_id="p") for _ in range(3)], 1.0)
    assert {r.status for r in (await runs_of(store, ids)).values()} == {"queued"}


async def test_controls_are_parsed_once_per_registry_entry() -> None:
    fn = info("x", f.FlowControl.of(throttle=f.Throttle(1, 1.0)))
    assert controls(fn) is controls(fn)
    assert controls(info("y", f.FlowControl.of(concurrency=3))) is None
    assert controls(None) is None


async def test_the_sweep_deletes_idle_state_only(store: Store) -> None:
    tfn = info("t", f.FlowControl.of(throttle=f.Throttle(1, 1.0)))
    sfn = info("s", f.FlowControl.of(singleton=f.Singleton()))
    await make(store, [tfn, sfn], [NewRun("t", "1"), NewRun("s", "1")], 100.0)
    async with store.write() as tx:
        assert await tx.flow.sweep(100.0 + IDLE_S / 2, IDLE_S, 100) == 0
        # the throttle's tat (101) is past by more than IDLE_S; the singleton's run is
        # still queued: its slot stays
        assert await tx.flow.sweep(102.0 + IDLE_S, IDLE_S, 100) == 1
        [single] = await tx.runs.matching("s", ["queued"], None, None, 10)
        await tx.runs.finish(single.id, "completed", None, None, 103.0)
        assert await tx.flow.sweep(102.0 + IDLE_S, IDLE_S, 100) == 1  # its run ended


async def test_the_claim_holds_back_throttled_runs_that_fell_due_together(
        store: Store) -> None:
    fn = info("t", f.FlowControl.of(throttle=f.Throttle(2, period=1.0)))
    ids = await make(store, [fn], [NewRun("t", "1") for _ in range(4)]
                     + [NewRun("t", "2", parent_id="p")], 100.0)
    got: list[list[str]] = []
    for now in (110.0, 110.2, 110.5, 111.0, 111.5):  # long after all were due
        async with store.write() as tx:
            claimed = await tx.queue.claim("me", now, now + 30, 10)
            runs = await tx.runs.get_many([c.run_id for c in claimed])
            queued = [runs[c.run_id] for c in claimed if runs[c.run_id].status == "queued"]
            held = await hold_starts(tx, queued, {"t": fn}, now)
            started = sorted(r.id for r in queued if r.id not in held)
            await tx.runs.mark_running(started, now)
            got.append(started)
            assert all(due > now for due in held.values())
    # the child is not a start the throttle counts; the others go one per 0.5 s
    assert got[0] == sorted([ids[0], ids[4]])
    assert [len(g) for g in got[1:]] == [0, 1, 1, 1]
    assert sorted(rid for g in got for rid in g) == sorted(ids)
    async with store.read() as tx:
        leases = await tx.queue.leases(ids[1:4])
    assert all(owner == "me" for owner, _ in leases.values())  # claimed when they started


# -- the wire: a batch run's events -----------------------------------------------------

def test_the_invoke_request_carries_a_batch_runs_events_only() -> None:
    from sdk import protocol as p

    evs = [{"id": "e1", "name": "x", "data": {"i": 1}, "ts": 1.0},
           {"id": "e2", "name": "x", "data": {"i": 2}, "ts": 2.0}]
    base = dict(call_id="r:1", function="f", run_id="r", attempt=0, input=[{"i": 1}],
                event=evs[0], memo=[], budget_ms=1000)
    msg = p.invoke_request(**base, events=evs)  # type: ignore[arg-type]
    assert p.parse_request(json.loads(p.dumps(msg)))["events"] == evs  # type: ignore[typeddict-item]
    plain = p.invoke_request(**base)  # type: ignore[arg-type]
    assert "events" not in plain  # other runs: the request as before
    with pytest.raises(p.ProtocolError):
        p.parse_request({**plain, "events": "nope"})


def test_a_workflow_declares_the_controls_that_delay_its_start() -> None:
    """Throttle, debounce and batch on a workflow: its run is queued until claimed
    (tests/e2e/test_flow_workflow.py), so the SDK and registration accept them."""
    from orchestrator.engine.registration import validate_functions
    from sdk import Debounce, Throttle, Workflow

    wf = Workflow("wf", throttle=Throttle(1, period=1), debounce=Debounce(period=1))

    @wf.task()
    def a(ctx: object) -> None: ...

    cfg = wf.config()
    assert cfg["throttle"]["limit"] == 1 and cfg["debounce"]["period"] == 1.0
    out, _ = validate_functions([cfg])
    assert out[0]["debounce"] == {"period": 1.0}
