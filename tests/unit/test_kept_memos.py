"""Kept memos: what an endpoint keeps between a run's calls (``sdk._kept``), what the
orchestrator remembers of it (``engine/tails.py``), and the endpoint's answers."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest

from orchestrator.engine.tails import MemoTails, final_head, memo_epoch
from sdk import Context, task
from sdk import protocol as p
from sdk._kept import MIN_KEPT, KeptMemos, thaw
from sdk.handler import Handler

SIGNER = p.Signer("k" * 32)


def entries(n: int, start: int = 0) -> list[p.MemoEntry]:
    return [p.memo_entry(f"s:{i}", i, "s", p.MemoKind.STEP, output=[i, {"x": i}])
            for i in range(start, n)]


def request(memo: list[p.MemoEntry], *, epoch: int | None = 0, start: int = 0,
            run: str = "r1", call: str = "r1:1", function: str = "f") -> p.InvokeRequest:
    return p.invoke_request(call_id=call, function=function, run_id=run, attempt=0,
                            input=None, event=None, memo=memo, budget_ms=5000,
                            memo_epoch=epoch, memo_from=start)


def test_keeps_the_final_head_and_joins_a_tail_to_it() -> None:
    kept = KeptMemos()
    memo = entries(12)
    memo.append(p.memo_entry("s:12", 12, "s", p.MemoKind.STEP, p.StepStatus.RETRYING))
    assert kept.keep(request(memo), memo) == 12  # a retrying step is not final
    assert kept.bytes > 0
    whole, head_bytes = kept.memo_of(request(entries(14, 10), start=10)) or ([], 0)
    assert [e["seq"] for e in whole] == list(range(14))
    assert whole[11]["output"] == [11, {"x": 11}] and head_bytes > 0


def test_a_head_is_not_used_across_epochs_or_when_short_or_unknown() -> None:
    kept = KeptMemos()
    memo = entries(10)
    kept.keep(request(memo), memo)
    assert kept.memo_of(request([], epoch=1, start=5)) is None  # a replay since
    assert kept.memo_of(request([], start=11)) is None  # more than is kept
    assert kept.memo_of(request([], start=5, run="other")) is None
    assert kept.memo_of(request(entries(3))) == (entries(3), 0)  # a whole memo: as sent


def test_short_memos_and_old_orchestrators_keep_nothing() -> None:
    kept = KeptMemos()
    short = entries(MIN_KEPT - 1)
    assert kept.keep(request(short), short) == 0
    memo = entries(20)
    assert kept.keep(request(memo, epoch=None), memo) == 0  # no memo_epoch: never kept
    assert len(kept) == 0


def test_bounded_by_runs_and_bytes_and_dropped() -> None:
    kept = KeptMemos(max_runs=2)
    memo = entries(10)
    for r in ("a", "b", "c"):
        kept.keep(request(memo, run=r), memo)
    assert len(kept) == 2 and kept.memo_of(request([], run="a", start=5)) is None
    one = kept.bytes // 2
    small = KeptMemos(max_bytes=one + one // 2)
    small.keep(request(memo, run="a"), memo)
    small.keep(request(memo, run="b"), memo)
    assert len(small) == 1 and small.bytes == one
    small.drop("b")
    assert len(small) == 0 and small.bytes == 0


def test_what_user_code_changes_does_not_change_what_is_kept() -> None:
    kept = KeptMemos()
    memo = entries(10)
    kept.keep(request(memo), memo)
    memo[3]["output"].append("changed after keeping")
    whole, _ = kept.memo_of(request([], start=10)) or ([], 0)
    out = thaw(whole[3]["output"])
    assert out == [3, {"x": 3}]
    out[1]["x"] = "changed by a replay"
    assert thaw(whole[3]["output"]) == [3, {"x": 3}]


@task("mutating")
async def mutating(ctx: Context) -> Any:
    for i in range(10):
        xs = await ctx.step.run("list", lambda i=i: [i])
        xs.append("changed")
    await ctx.sleep_for(60)


def _handle(handler: Handler, msg: p.InvokeRequest) -> dict[str, Any]:
    body = p.dumps(msg)
    resp = asyncio.run(handler.handle(body, SIGNER.sign(body)))
    assert resp.status == 200, resp.body
    SIGNER.verify(resp.body, resp.headers)
    out: dict[str, Any] = p.loads(resp.body)
    return out


def test_a_new_steps_recorded_output_is_what_it_returned() -> None:
    """Bug: the output recorded for a new step was the object user code got back, so a
    change made to it before the call's answer was sent was recorded too."""
    answer = _handle(Handler([mutating], SIGNER, "t"), request([], function="mutating"))
    assert answer["status"] == "yield"
    assert [s["output"] for s in answer["steps"]] == [[i] for i in range(10)]


def test_a_tail_without_its_head_asks_for_the_whole_memo_and_runs_nothing() -> None:
    handler = Handler([mutating], SIGNER, "t")
    first = _handle(handler, request(entries(0), function="mutating", call="r1:1"))
    memo = [p.memo_entry(s["id"], s["seq"], s["name"], s["kind"], output=s["output"])
            for s in first["steps"]]
    fresh = Handler([mutating], SIGNER, "t")  # another process: keeps nothing
    tail = request(memo[8:], function="mutating", call="r1:2", start=8)
    assert _handle(fresh, tail) == p.memo_needed("r1:2")
    whole = _handle(fresh, request(memo, function="mutating", call="r1:2"))  # same call id
    assert whole["status"] == "yield" and whole["op"]["op"] == "sleep"
    assert whole["memo_kept"] == 10
    # and the process that kept the head answers the tail itself
    assert _handle(handler, request(memo, function="mutating", call="r1:3"))["memo_kept"] == 10
    again = _handle(handler, request([], function="mutating", call="r1:4", start=10))
    assert again["status"] == "yield" and again["steps"] == []


def test_a_completed_run_is_dropped() -> None:
    @task("short")
    async def short(ctx: Context) -> int:
        return 1

    handler = Handler([short], SIGNER, "t")
    memo = entries(10)
    handler.kept.keep(request(memo, function="short"), memo)
    answer = _handle(handler, request(entries(10), function="short"))
    assert answer["status"] == "complete" and "memo_kept" not in answer
    assert len(handler.kept) == 0


def test_protocol_checks_the_new_fields() -> None:
    good = request([], start=0)
    assert p.parse_request(p.loads(p.dumps(good))) == good
    for bad in ({"memo_from": 3}, {"memo_from": -1, "memo_epoch": 0},
                {"memo_epoch": "x"}, {"memo_from": True, "memo_epoch": 0}):
        msg = {k: v for k, v in request([], epoch=None).items()} | bad
        with pytest.raises(p.ProtocolError):
            p.parse_request(msg)
    ans = p.answer_yield("c", [], [], p.resume_op(1.0))
    with pytest.raises(p.ProtocolError):
        p.parse_answer({**ans, "memo_kept": -2}, "c")
    assert p.parse_answer({**ans, "memo_kept": 4}, "c")["memo_kept"] == 4


@dataclass
class Run:
    id: str = "r1"
    history_json: str | None = None


@dataclass
class Row:
    seq: int
    status: str = "completed"


def test_the_orchestrator_remembers_at_most_what_it_sent_final() -> None:
    rows: Any = [Row(0), Row(1), Row(2, "retrying"), Row(3)]
    assert final_head(0, rows) == 2
    gap: Any = [Row(5), Row(7)]
    assert final_head(5, gap) == 6  # a gap ends the head
    ten: Any = [Row(i) for i in range(10)]
    tails = MemoTails(max_runs=2)
    run: Any = Run()
    yielded: Any = p.answer_yield("c", [], [], p.resume_op(1.0))
    tails.learn(run, 0, ten, {**yielded, "memo_kept": 12})
    assert tails.offer({"r1": run}, ["r1"]) == {"r1": 10}  # not more than was sent
    replayed: Any = Run(history_json='[{"from": "start"}]')
    assert memo_epoch(replayed) != memo_epoch(run)
    assert tails.offer({"r1": replayed}, ["r1"]) == {} and len(tails) == 0
    tails.learn(run, 0, ten, {**yielded, "memo_kept": 9})
    done = p.answer_complete("c", [], [], 1)
    tails.learn(run, 9, [], done)
    assert tails.offer({"r1": run}, ["r1"]) == {}
    for rid in ("a", "b", "c"):
        tails.learn(Run(rid), 0, ten, {**yielded, "memo_kept": 10})
    assert len(tails) == 2
