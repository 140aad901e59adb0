"""Unit tests of replay: ``sdk.handler.execute`` and ``Handler.handle`` with hand-built requests.

No servers: each test builds invoke requests with ``sdk.protocol.invoke_request``, runs one
call, and checks the answer as the orchestrator would receive it (JSON round trip plus
``parse_answer``). Memo entries are built by hand (the raw wire shape, independent of the
builders in ``sdk.protocol``), or taken from an earlier answer's
``steps`` the way the orchestrator records them.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from sdk import (
    Child,
    ChildRunError,
    Context,
    NonRetriableError,
    Retry,
    RetryAfterError,
    StepError,
    SyncContext,
    task,
)
from sdk import protocol as p
from sdk.function import Function
from sdk.handler import SDK_NAME, Handler, execute

RUN_ID = "run-1"
CALL_ID = "call-1"
KEY = "unit-test-key"

Memo = Iterable[Mapping[str, Any]]


# -- helpers -----------------------------------------------------------------------------------


def request(
    fn: Function | str,
    *,
    memo: Memo = (),
    input: Any = None,
    event: Any = None,
    budget_ms: int = 30_000,
    attempt: int = 1,
    call_id: str = CALL_ID,
    parent_id: str | None = None,
) -> dict[str, Any]:
    name = fn if isinstance(fn, str) else fn.name
    req = p.invoke_request(
        call_id=call_id, function=name, run_id=RUN_ID, attempt=attempt, input=input,
        event=event, memo=[dict(e) for e in memo], budget_ms=budget_ms, parent_id=parent_id,
    )
    return json.loads(p.dumps(req))  # as the app decodes it


async def call(fn: Function, **kw: Any) -> dict[str, Any]:
    """One invoke call; the answer as the orchestrator decodes and validates it."""
    req = request(fn, **kw)
    raw = await execute(fn, req, len(p.dumps(req)))
    answer = p.loads(p.dumps(raw))
    p.parse_answer(answer, req["call_id"])
    return answer  # type: ignore[no-any-return]


def merge(memo: Memo, steps: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The run's memo after recording an answer's steps (upserted by id, like the store)."""
    by_id = {e["id"]: dict(e) for e in memo}
    for e in steps:
        by_id[e["id"]] = dict(e)
    return sorted(by_id.values(), key=lambda e: e["seq"])


def completed(step_id: str, seq: int, output: Any, *, name: str | None = None,
              attempts: int = 1) -> dict[str, Any]:
    return {"id": step_id, "seq": seq, "name": name or step_id.split(":")[0], "kind": "step",
            "status": "completed", "attempts": attempts, "output": output,
            "started_at": 1.0, "ended_at": 2.0}


def memo_entry(step_id: str, seq: int, kind: str, output: Any = None, **extra: Any
               ) -> dict[str, Any]:
    return {"id": step_id, "seq": seq, "name": step_id, "kind": kind, "output": output, **extra}


def ids(answer: Mapping[str, Any]) -> list[str]:
    return [s["id"] for s in answer["steps"]]


def seqs(answer: Mapping[str, Any]) -> list[int]:
    return [s["seq"] for s in answer["steps"]]


def signed(body: bytes, key: str = KEY, now: float | None = None) -> dict[str, str]:
    return p.Signer(key).sign(body, now=now)


# -- new steps, deterministic ids --------------------------------------------------------------


async def test_new_steps_run_and_are_reported_with_deterministic_ids() -> None:
    ran: list[tuple[int, int]] = []

    async def add(a: int, b: int) -> int:
        ran.append((a, b))
        return a + b

    @task("chain")
    async def chain(ctx: Context, n: int) -> int:
        total = 0
        for i in range(n):
            total = await ctx.step.run("add", add, total, i)
        return await ctx.step.run("finish", lambda: total * 10)  # type: ignore[no-any-return]

    t0 = time.time()
    answer = await call(chain, input=4)
    assert answer["status"] == "complete"
    assert answer["output"] == 60
    assert answer["call_id"] == CALL_ID and answer["v"] == p.VERSION
    assert ids(answer) == ["add", "add:1", "add:2", "add:3", "finish"]
    assert seqs(answer) == [0, 1, 2, 3, 4]
    assert [s["name"] for s in answer["steps"]] == ["add"] * 4 + ["finish"]
    assert [s["output"] for s in answer["steps"]] == [0, 1, 3, 6, 60]
    assert all(s["kind"] == "step" and s["status"] == "completed" and s["attempts"] == 1
               for s in answer["steps"])
    assert all(t0 <= s["started_at"] <= s["ended_at"] <= time.time() for s in answer["steps"])
    assert ran == [(0, 0), (0, 1), (1, 2), (3, 3)]
    assert answer["events"] == []


async def test_interleaved_names_count_separately() -> None:
    @task("interleaved")
    async def interleaved(ctx: Context) -> list[Any]:
        return [
            await ctx.step.run("a", lambda: 1),
            await ctx.step.run("b", lambda: 2),
            await ctx.step.run("a", lambda: 3),
            await ctx.step.run("b", lambda: 4),
            await ctx.step.run("a", lambda: 5),
        ]

    answer = await call(interleaved)
    assert answer["output"] == [1, 2, 3, 4, 5]
    assert ids(answer) == ["a", "b", "a:1", "b:1", "a:2"]
    assert seqs(answer) == [0, 1, 2, 3, 4]


async def test_step_ids_are_the_same_on_every_call() -> None:
    @task("same-ids")
    async def same_ids(ctx: Context) -> None:
        for _ in range(3):
            await ctx.step.run("x", lambda: None)

    first, second = await call(same_ids), await call(same_ids)
    assert ids(first) == ids(second) == ["x", "x:1", "x:2"]


async def test_step_output_is_what_a_replay_will_see() -> None:
    """A first run gets the JSON round trip of the output, like a replay does."""

    @task("json-view")
    async def json_view(ctx: Context) -> dict[str, Any]:
        out = await ctx.step.run("t", lambda: {"pair": (1, 2), 3: "three"})
        return {"type": type(out["pair"]).__name__, "keys": sorted(out)}

    answer = await call(json_view)
    assert answer["output"] == {"type": "list", "keys": ["3", "pair"]}
    replay = await call(json_view, memo=answer["steps"])
    assert replay["output"] == answer["output"]


async def test_context_exposes_the_run() -> None:
    @task("whoami")
    async def whoami(ctx: Context) -> dict[str, Any]:
        return {"run_id": ctx.run_id, "attempt": ctx.attempt, "parent_id": ctx.parent_id,
                "function": ctx.function, "event": ctx.event, "input": ctx.input}

    event = {"id": "e1", "name": "order.created", "data": {"x": 1}}
    answer = await call(whoami, input={"x": 1}, event=event, attempt=3, parent_id="run-0")
    assert answer["output"] == {"run_id": RUN_ID, "attempt": 3, "parent_id": "run-0",
                                "function": "whoami", "event": event, "input": {"x": 1}}


async def test_step_names_must_be_non_empty_strings() -> None:
    @task("nameless")
    async def nameless(ctx: Context) -> None:
        await ctx.step.run("", lambda: 1)

    answer = await call(nameless)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "UsageError"
    assert answer["error"]["retriable"] is False
    assert "non-empty" in answer["error"]["message"]


# -- replay ------------------------------------------------------------------------------------


async def test_replay_returns_memoized_outputs_without_rerunning() -> None:
    calls: dict[str, int] = {}

    def effect(name: str, value: int) -> int:
        calls[name] = calls.get(name, 0) + 1
        return value

    @task("effects")
    async def effects(ctx: Context) -> list[int]:
        a = await ctx.step.run("charge", effect, "charge", 1)
        b = await ctx.step.run("ship", effect, "ship", 2)
        c = await ctx.step.run("ship", effect, "ship", 3)
        return [a, b, c]

    first = await call(effects)
    assert first["output"] == [1, 2, 3]
    assert calls == {"charge": 1, "ship": 2}

    replay = await call(effects, memo=first["steps"])
    assert replay["status"] == "complete"
    assert replay["output"] == [1, 2, 3]
    assert replay["steps"] == []  # nothing new to record
    assert calls == {"charge": 1, "ship": 2}  # nothing ran again


async def test_replay_uses_the_memo_not_the_callable() -> None:
    ran: list[str] = []

    @task("from-memo")
    async def from_memo(ctx: Context) -> list[Any]:
        a = await ctx.step.run("a", lambda: ran.append("a") or "fresh-a")
        b = await ctx.step.run("b", lambda: ran.append("b") or "fresh-b")
        return [a, b]

    memo = [completed("a", 0, {"recorded": True})]
    answer = await call(from_memo, memo=memo)
    assert answer["output"] == [{"recorded": True}, "fresh-b"]
    assert ran == ["b"]
    assert ids(answer) == ["b"] and seqs(answer) == [1]


async def test_replayed_null_output_is_not_rerun() -> None:
    ran: list[int] = []

    @task("null-output")
    async def null_output(ctx: Context) -> Any:
        return await ctx.step.run("n", lambda: ran.append(1))

    answer = await call(null_output, memo=[completed("n", 0, None)])
    assert answer["output"] is None and answer["steps"] == []
    assert ran == []


# -- blocking operations ---------------------------------------------------------------------


async def test_several_new_steps_in_one_call_until_a_sleep() -> None:
    ran: list[str] = []

    def step(name: str) -> str:
        ran.append(name)
        return name.upper()

    @task("sleepy")
    async def sleepy(ctx: Context) -> list[str]:
        a = await ctx.step.run("a", step, "a")
        b = await ctx.step.run("b", step, "b")
        await ctx.sleep_for(timedelta(minutes=1))
        c = await ctx.step.run("c", step, "c")
        return [a, b, c]

    t0 = time.time()
    answer = await call(sleepy)
    assert answer["status"] == "yield"
    assert ids(answer) == ["a", "b"] and seqs(answer) == [0, 1]
    op = answer["op"]
    assert op["op"] == "sleep"
    assert op["id"] == "sleep" and op["name"] == "sleep" and op["seq"] == 2
    assert t0 + 60 <= op["until"] <= time.time() + 60
    assert ran == ["a", "b"]  # "c" is after the sleep

    # the orchestrator records the sleep when it is over, then calls again
    memo = merge(answer["steps"], [memo_entry("sleep", 2, "sleep")])
    answer = await call(sleepy, memo=memo)
    assert answer["status"] == "complete"
    assert answer["output"] == ["A", "B", "C"]
    assert ids(answer) == ["c"] and seqs(answer) == [3]
    assert ran == ["a", "b", "c"]


async def test_sleep_until_with_named_sleeps() -> None:
    at = datetime.now().astimezone() + timedelta(hours=2)

    @task("named-sleeps")
    async def named_sleeps(ctx: Context) -> str:
        await ctx.sleep_until(at, name="nap")
        await ctx.sleep_for(5, name="nap")
        return "rested"

    answer = await call(named_sleeps)
    assert answer["op"] == {"op": "sleep", "id": "nap", "seq": 0, "name": "nap",
                            "until": at.timestamp()}
    answer = await call(named_sleeps, memo=[memo_entry("nap", 0, "sleep")])
    assert answer["op"]["id"] == "nap:1" and answer["op"]["seq"] == 1
    answer = await call(named_sleeps, memo=[memo_entry("nap", 0, "sleep"),
                                            memo_entry("nap:1", 1, "sleep")])
    assert answer["status"] == "complete" and answer["output"] == "rested"


async def test_a_sleep_already_over_is_recorded_without_yielding() -> None:
    @task("no-nap")
    async def no_nap(ctx: Context) -> str:
        await ctx.sleep_for(0)
        await ctx.sleep_for(-5)
        return "awake"

    answer = await call(no_nap)
    assert answer["status"] == "complete" and answer["output"] == "awake"
    assert [(s["id"], s["kind"]) for s in answer["steps"]] == [("sleep", "sleep"),
                                                              ("sleep:1", "sleep")]


async def test_naive_datetime_sleep_is_an_error() -> None:
    @task("naive")
    async def naive(ctx: Context) -> None:
        await ctx.sleep_until(datetime(2100, 1, 1))

    answer = await call(naive)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "ValueError" and "timezone" in answer["error"]["message"]


# -- the time budget --------------------------------------------------------------------------


def _slow_chain(n: int, delay: float, ran: list[int]) -> Function:
    async def slow(i: int) -> int:
        ran.append(i)
        await asyncio.sleep(delay)
        return i

    @task("slow-chain")
    async def slow_chain(ctx: Context) -> int:
        total = 0
        for i in range(n):
            total += await ctx.step.run("slow", slow, i)
        return total

    return slow_chain


async def test_time_budget_yields_resume_after_at_least_one_new_step() -> None:
    ran: list[int] = []
    fn = _slow_chain(8, 0.05, ran)
    t0 = time.time()
    answer = await call(fn, budget_ms=100)  # 80 ms to run new steps in
    assert answer["status"] == "yield"
    assert answer["op"]["op"] == "resume"
    assert t0 <= answer["op"]["at"] <= time.time()  # call again at once
    assert 1 <= len(answer["steps"]) < 8
    assert ids(answer) == ["slow"] + [f"slow:{i}" for i in range(1, len(answer["steps"]))]
    assert ran == list(range(len(answer["steps"])))  # nothing ran that is not reported


async def test_time_budget_always_allows_one_step_per_call() -> None:
    ran: list[int] = []
    fn = _slow_chain(3, 0.08, ran)
    memo: list[dict[str, Any]] = []
    calls = 0
    while True:
        calls += 1
        answer = await call(fn, memo=memo, budget_ms=1)  # floored at 50 ms
        assert answer["steps"], "every call makes progress"
        memo = merge(memo, answer["steps"])
        if answer["status"] == "complete":
            break
        assert answer["op"]["op"] == "resume"
        assert calls < 10
    assert answer["output"] == 0 + 1 + 2
    assert calls == 3  # each 80 ms step spends the whole budget
    assert ran == [0, 1, 2]  # each step ran exactly once over all the calls


async def test_budget_resumed_calls_complete_the_run_running_each_step_once() -> None:
    ran: list[int] = []
    fn = _slow_chain(6, 0.03, ran)
    memo: list[dict[str, Any]] = []
    for _ in range(10):
        answer = await call(fn, memo=memo, budget_ms=100)
        memo = merge(memo, answer["steps"])
        if answer["status"] == "complete":
            break
    assert answer["status"] == "complete"
    assert answer["output"] == sum(range(6))
    assert ran == list(range(6))
    assert [e["seq"] for e in memo] == list(range(6))


async def test_a_generous_budget_runs_everything_in_one_call() -> None:
    ran: list[int] = []
    answer = await call(_slow_chain(4, 0.01, ran), budget_ms=30_000)
    assert answer["status"] == "complete" and len(answer["steps"]) == 4


# -- non-determinism --------------------------------------------------------------------------


async def test_a_different_step_at_a_recorded_position_is_non_determinism() -> None:
    ran: list[str] = []

    @task("changed", retry=Retry(max_attempts=5))
    async def changed(ctx: Context) -> None:
        await ctx.step.run("b", lambda: ran.append("b"))
        await ctx.step.run("a", lambda: ran.append("a"))

    answer = await call(changed, memo=[completed("a", 0, "recorded")])
    assert answer["status"] == "error"
    err = answer["error"]
    assert err["type"] == "NonDeterminismError"
    assert err["retriable"] is False
    assert "'b'" in err["message"] and "'a'" in err["message"]
    assert ran == []  # the mismatched step did not run
    assert answer["steps"] == []


async def test_a_recorded_step_at_another_position_is_non_determinism() -> None:
    @task("moved")
    async def moved(ctx: Context) -> None:
        await ctx.step.run("a", lambda: 1)

    answer = await call(moved, memo=[completed("x", 0, 1), completed("a", 1, 2)])
    assert answer["status"] == "error"
    # "a" asked for at 0, where the memo records "x"; "a" itself is recorded at 1
    assert answer["error"]["type"] == "NonDeterminismError"
    assert answer["error"]["retriable"] is False
    # the error body's keys are today's: a failure the SDK stops the run with carries no
    # retry_after_ms (an exception raised by the function carries it, null or not)
    assert set(answer["error"]) == {"type", "message", "stack", "retriable"}


async def test_an_exception_error_body_has_every_key() -> None:
    @task("raises")
    async def raises(ctx: Context) -> None:
        raise RuntimeError("boom")

    answer = await call(raises)
    assert answer["error"] == {"type": "RuntimeError", "message": "boom", "retriable": True,
                               "retry_after_ms": None, "stack": answer["error"]["stack"]}
    assert "RuntimeError: boom" in answer["error"]["stack"]


async def test_a_step_of_another_kind_is_non_determinism() -> None:
    @task("kind-changed")
    async def kind_changed(ctx: Context) -> None:
        await ctx.step.run("pause", lambda: 1)

    answer = await call(kind_changed, memo=[memo_entry("pause", 0, "sleep")])
    assert answer["error"]["type"] == "NonDeterminismError"
    assert answer["error"]["retriable"] is False
    assert "sleep" in answer["error"]["message"]


# -- step failures and retries -----------------------------------------------------------------


def _charging(counter: list[int], exc: Exception | None = None) -> Function:
    def charge() -> str:
        counter.append(1)
        raise exc or ValueError(f"card declined #{len(counter)}")

    @task("charging", retry=Retry(max_attempts=3, initial_delay=10, factor=1.0, jitter=0))
    async def charging(ctx: Context) -> dict[str, Any]:
        try:
            await ctx.step.run("charge", charge)
        except StepError as exc:
            return {"caught": exc.error_type, "message": exc.error_message, "step": exc.step}
        return {"caught": None}

    return charging


async def test_a_failing_step_is_retried_then_fails_inside_the_function() -> None:
    counter: list[int] = []
    fn = _charging(counter)

    # attempt 1: recorded as retrying, the call yields to be resumed later
    t0 = time.time()
    answer = await call(fn)
    assert answer["status"] == "yield"
    assert answer["op"]["op"] == "resume"
    assert t0 + 10 <= answer["op"]["at"] <= time.time() + 10
    [entry] = answer["steps"]
    assert entry["id"] == "charge" and entry["seq"] == 0
    assert entry["status"] == "retrying" and entry["attempts"] == 1
    assert entry["error"]["type"] == "ValueError"
    assert entry["error"]["message"] == "card declined #1"
    assert "card declined #1" in entry["error"]["stack"]
    assert "output" not in entry
    memo = merge([], answer["steps"])

    # attempt 2: retrying again
    answer = await call(fn, memo=memo)
    assert answer["status"] == "yield" and answer["op"]["op"] == "resume"
    [entry] = answer["steps"]
    assert entry["status"] == "retrying" and entry["attempts"] == 2
    memo = merge(memo, answer["steps"])

    # attempt 3 of 3: failed for good; StepError is raised inside the function, catchable
    answer = await call(fn, memo=memo)
    assert answer["status"] == "complete"
    assert answer["output"] == {"caught": "ValueError", "message": "card declined #3",
                                "step": "charge"}
    [entry] = answer["steps"]
    assert entry["status"] == "failed" and entry["attempts"] == 3
    assert entry["error"]["type"] == "ValueError"
    memo = merge(memo, answer["steps"])
    assert len(counter) == 3

    # a replay raises the recorded failure again without running the step
    answer = await call(fn, memo=memo)
    assert answer["status"] == "complete"
    assert answer["output"] == {"caught": "ValueError", "message": "card declined #3",
                                "step": "charge"}
    assert answer["steps"] == []
    assert len(counter) == 3


async def test_a_retried_step_that_succeeds_counts_its_attempts() -> None:
    failures = [ValueError("flaky")]

    def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    @task("flaky")
    async def flaky_fn(ctx: Context) -> str:
        return await ctx.step.run("flaky", flaky)  # type: ignore[no-any-return]

    answer = await call(flaky_fn)
    assert answer["steps"][0]["status"] == "retrying"
    answer = await call(flaky_fn, memo=answer["steps"])
    assert answer["status"] == "complete" and answer["output"] == "ok"
    [entry] = answer["steps"]
    assert entry["status"] == "completed" and entry["attempts"] == 2 and entry["output"] == "ok"


async def test_an_uncaught_step_failure_fails_the_run() -> None:
    @task("uncaught", retry=Retry(max_attempts=1))
    async def uncaught(ctx: Context) -> None:
        await ctx.step.run("boom", lambda: 1 / 0)

    answer = await call(uncaught)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "StepError"
    assert answer["error"]["retriable"] is False
    assert "ZeroDivisionError" in answer["error"]["message"]
    [entry] = answer["steps"]  # the failure is recorded with the error answer
    assert entry["status"] == "failed" and entry["error"]["type"] == "ZeroDivisionError"


async def test_a_recorded_failed_step_raises_step_error_on_replay() -> None:
    ran: list[int] = []

    @task("failed-before")
    async def failed_before(ctx: Context) -> None:
        await ctx.step.run("boom", lambda: ran.append(1))

    entry = {"id": "boom", "seq": 0, "name": "boom", "kind": "step", "status": "failed",
             "attempts": 3, "error": {"type": "KeyError", "message": "'sku'"}}
    answer = await call(failed_before, memo=[entry])
    assert answer["error"]["type"] == "StepError"
    assert "KeyError" in answer["error"]["message"]
    assert ran == []


async def test_step_retry_policy_overrides_the_function_policy() -> None:
    @task("override", retry=Retry(max_attempts=10))
    async def override(ctx: Context) -> str:
        try:
            await ctx.step.run("once", lambda: 1 / 0, retry=Retry(max_attempts=1))
        except StepError as exc:
            return exc.error_type
        return "no error"

    answer = await call(override)
    assert answer["status"] == "complete" and answer["output"] == "ZeroDivisionError"
    assert answer["steps"][0]["status"] == "failed" and answer["steps"][0]["attempts"] == 1


async def test_non_retriable_error_fails_the_step_at_the_first_attempt() -> None:
    counter: list[int] = []
    answer = await call(_charging(counter, NonRetriableError("account closed")))
    assert answer["status"] == "complete"
    assert answer["output"] == {"caught": "NonRetriableError", "message": "account closed",
                                "step": "charge"}
    [entry] = answer["steps"]
    assert entry["status"] == "failed" and entry["attempts"] == 1
    assert entry["error"]["type"] == "NonRetriableError"
    assert len(counter) == 1


async def test_retry_after_error_sets_the_resume_time() -> None:
    counter: list[int] = []
    fn = _charging(counter, RetryAfterError("rate limited", timedelta(seconds=42)))
    t0 = time.time()
    answer = await call(fn)
    assert answer["status"] == "yield"
    assert answer["op"]["op"] == "resume"
    # 42 s, not the policy's 10 s
    assert t0 + 42 <= answer["op"]["at"] <= time.time() + 42
    [entry] = answer["steps"]
    assert entry["status"] == "retrying" and entry["error"]["type"] == "RetryAfterError"


async def test_retry_after_error_on_the_last_attempt_fails_the_step() -> None:
    counter: list[int] = []
    fn = _charging(counter, RetryAfterError("rate limited", 1.5))
    entry = {"id": "charge", "seq": 0, "name": "charge", "kind": "step", "status": "retrying",
             "attempts": 2, "error": {"type": "RetryAfterError", "message": "rate limited"}}
    answer = await call(fn, memo=[entry])
    assert answer["status"] == "complete"
    assert answer["output"]["caught"] == "RetryAfterError"
    assert answer["steps"][0]["status"] == "failed" and answer["steps"][0]["attempts"] == 3


async def test_steps_before_a_retry_are_kept_in_the_answer() -> None:
    @task("then-fail")
    async def then_fail(ctx: Context) -> None:
        await ctx.step.run("ok", lambda: "fine")
        await ctx.step.run("bad", lambda: 1 / 0)

    answer = await call(then_fail)
    assert answer["status"] == "yield" and answer["op"]["op"] == "resume"
    assert [(s["id"], s["status"]) for s in answer["steps"]] == [("ok", "completed"),
                                                                ("bad", "retrying")]


# -- function-level errors ---------------------------------------------------------------------


async def test_a_function_raising_a_plain_exception_is_a_retriable_error() -> None:
    @task("raises")
    async def raises(ctx: Context) -> None:
        await ctx.step.run("before", lambda: "kept")
        raise RuntimeError("something broke")

    answer = await call(raises)
    assert answer["status"] == "error"
    err = answer["error"]
    assert err["type"] == "RuntimeError"
    assert err["message"] == "something broke"
    assert err["retriable"] is True
    assert err["retry_after_ms"] is None
    assert "something broke" in err["stack"]
    assert ids(answer) == ["before"]  # recorded: a retry of the run will not redo it


async def test_a_function_raising_retry_after_error_asks_for_a_delay() -> None:
    @task("later")
    async def later(ctx: Context) -> None:
        raise RetryAfterError("busy", timedelta(seconds=1.5))

    answer = await call(later)
    assert answer["error"]["type"] == "RetryAfterError"
    assert answer["error"]["retriable"] is True
    assert answer["error"]["retry_after_ms"] == 1500


async def test_a_function_raising_non_retriable_error_is_final() -> None:
    @task("final")
    async def final(ctx: Context) -> None:
        raise NonRetriableError("bad order")

    answer = await call(final)
    assert answer["error"]["type"] == "NonRetriableError"
    assert answer["error"]["retriable"] is False


async def test_a_non_json_run_output_is_a_final_error() -> None:
    @task("odd-output")
    async def odd_output(ctx: Context) -> object:
        return object()

    answer = await call(odd_output)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "SerializationError"
    assert answer["error"]["retriable"] is False


# -- output limits -----------------------------------------------------------------------------


async def test_an_oversized_step_output_fails_the_step() -> None:
    ran: list[int] = []

    def huge() -> str:
        ran.append(1)
        return "x" * p.MAX_STEP_OUTPUT_BYTES  # JSON adds two quotes: over the limit

    @task("big-output", retry=Retry(max_attempts=5))
    async def big_output(ctx: Context) -> dict[str, Any]:
        try:
            await ctx.step.run("huge", huge)
        except StepError as exc:
            return {"type": exc.error_type, "message": exc.error_message}
        return {"type": None}

    answer = await call(big_output)
    assert answer["status"] == "complete"
    assert answer["output"]["type"] == "OutputTooLargeError"
    assert str(p.MAX_STEP_OUTPUT_BYTES) in answer["output"]["message"]
    [entry] = answer["steps"]
    assert entry["status"] == "failed" and entry["attempts"] == 1  # not retried
    assert entry["error"]["type"] == "OutputTooLargeError"
    assert "output" not in entry
    assert ran == [1]


async def test_a_step_output_at_the_limit_is_accepted() -> None:
    @task("at-limit")
    async def at_limit(ctx: Context) -> int:
        out = await ctx.step.run("fits", lambda: "x" * (p.MAX_STEP_OUTPUT_BYTES - 2))
        return len(out)

    answer = await call(at_limit)
    assert answer["status"] == "complete"
    assert answer["output"] == p.MAX_STEP_OUTPUT_BYTES - 2
    assert answer["steps"][0]["status"] == "completed"


async def test_a_non_json_step_output_fails_the_step() -> None:
    @task("set-output")
    async def set_output(ctx: Context) -> str:
        try:
            await ctx.step.run("s", lambda: {1, 2})
        except StepError as exc:
            return exc.error_type
        return "no error"

    answer = await call(set_output)
    assert answer["output"] == "SerializationError"
    assert answer["steps"][0]["status"] == "failed"


async def test_a_step_or_run_output_nesting_too_deep_is_refused() -> None:
    """The orchestrator's API refuses values deeper than MAX_JSON_DEPTH: the SDK does not
    store one in a memo (or as a run's output) either, even one too deep to encode."""
    def deep(depth: int) -> object:
        v: object = 0
        for _ in range(depth):
            v = [v]
        return v

    @task("deep-step")
    async def deep_step(ctx: Context) -> list[str]:
        out = []
        for depth in (p.MAX_JSON_DEPTH + 1, 100_000):
            try:
                await ctx.step.run(f"s{depth}", lambda depth=depth: deep(depth))
            except StepError as exc:
                out.append(exc.error_type)
        return out

    answer = await call(deep_step)
    assert answer["output"] == ["SerializationError", "SerializationError"]

    @task("deep-run")
    async def deep_run(ctx: Context) -> object:
        return deep(p.MAX_JSON_DEPTH + 1)

    answer = await call(deep_run)
    assert answer["status"] == "error" and answer["error"]["type"] == "SerializationError"


async def test_an_oversized_run_output_is_a_final_error() -> None:
    @task("big-run-output")
    async def big_run_output(ctx: Context) -> str:
        return "y" * (p.MAX_STEP_OUTPUT_BYTES + 1)

    answer = await call(big_run_output)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "OutputTooLargeError"
    assert answer["error"]["retriable"] is False


# -- sync functions ----------------------------------------------------------------------------


async def test_a_sync_function_with_sync_steps() -> None:
    ran: list[str] = []

    def inc(x: int) -> int:
        ran.append(f"inc{x}")
        return x + 1

    async def double(x: int) -> int:  # an async callable in a sync function
        ran.append(f"double{x}")
        return x * 2

    @task("sync-fn")
    def sync_fn(ctx: SyncContext, n: int) -> dict[str, Any]:
        x = n
        for _ in range(3):
            x = ctx.step.run("inc", inc, x)
        doubled = ctx.step.run("double", double, x)
        return {"x": x, "doubled": doubled, "attempt": ctx.attempt}

    assert not sync_fn.is_async
    answer = await call(sync_fn, input=1)
    assert answer["status"] == "complete"
    assert answer["output"] == {"x": 4, "doubled": 8, "attempt": 1}
    assert ids(answer) == ["inc", "inc:1", "inc:2", "double"]
    assert seqs(answer) == [0, 1, 2, 3]
    assert ran == ["inc1", "inc2", "inc3", "double4"]

    replay = await call(sync_fn, input=1, memo=answer["steps"])
    assert replay["output"] == answer["output"] and replay["steps"] == []
    assert len(ran) == 4


async def test_a_sync_function_yields_on_a_sleep_and_on_a_retry() -> None:
    @task("sync-sleepy", retry=Retry(max_attempts=2, initial_delay=5, jitter=0))
    def sync_sleepy(ctx: SyncContext) -> str:
        ctx.step.run("a", lambda: "a")
        ctx.sleep_for(30)
        ctx.step.run("b", lambda: 1 / 0)
        return "done"

    answer = await call(sync_sleepy)
    assert answer["status"] == "yield" and answer["op"]["op"] == "sleep"
    assert ids(answer) == ["a"] and answer["op"]["seq"] == 1
    memo = merge(answer["steps"], [memo_entry("sleep", 1, "sleep")])
    answer = await call(sync_sleepy, memo=memo)
    assert answer["status"] == "yield" and answer["op"]["op"] == "resume"
    assert answer["steps"][0]["id"] == "b" and answer["steps"][0]["status"] == "retrying"
    memo = merge(memo, answer["steps"])
    answer = await call(sync_sleepy, memo=memo)
    assert answer["status"] == "error" and answer["error"]["type"] == "StepError"


async def test_a_sync_function_without_input_and_its_errors() -> None:
    @task("sync-no-input")
    def sync_no_input(ctx: SyncContext) -> None:
        ctx.step.run("ok", lambda: 1)
        raise NonRetriableError("stop")

    answer = await call(sync_no_input, input={"ignored": True})
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "NonRetriableError"
    assert answer["error"]["retriable"] is False
    assert ids(answer) == ["ok"]


# -- wait_for_event ----------------------------------------------------------------------------


def _waiter(timeout: float | None = 30, name: str | None = None) -> Function:
    @task("waiter")
    async def waiter(ctx: Context, key: str) -> dict[str, Any]:
        await ctx.step.run("before", lambda: 1)
        ev = await ctx.wait_for_event("order.paid", match={"data.key": key}, timeout=timeout,
                                      name=name)
        return {"event": ev}

    return waiter


async def test_wait_for_event_yields_a_wait_op() -> None:
    t0 = time.time()
    answer = await call(_waiter(timeout=30), input="k-1")
    assert answer["status"] == "yield"
    assert ids(answer) == ["before"]
    op = answer["op"]
    assert op["op"] == "wait_event"
    assert op["id"] == "wait:order.paid" and op["name"] == "wait:order.paid"
    assert op["seq"] == 1
    assert op["event"] == "order.paid"
    assert op["match"] == {"data.key": "k-1"}
    assert t0 + 30 <= op["timeout_at"] <= time.time() + 30


async def test_wait_for_event_without_timeout_or_match() -> None:
    @task("any-wait")
    async def any_wait(ctx: Context) -> Any:
        return await ctx.wait_for_event("ping", name="pinged")

    answer = await call(any_wait)
    op = answer["op"]
    assert op["op"] == "wait_event" and op["id"] == "pinged" and op["seq"] == 0
    assert op["match"] == {} and op["timeout_at"] is None


async def test_wait_for_event_returns_the_recorded_event() -> None:
    event = {"id": "evt-9", "name": "order.paid", "data": {"key": "k-1", "amount": 5}}
    memo = [completed("before", 0, 1),
            memo_entry("wait:order.paid", 1, "wait", event, status="completed")]
    answer = await call(_waiter(), input="k-1", memo=memo)
    assert answer["status"] == "complete"
    assert answer["output"] == {"event": event}
    assert answer["steps"] == []


async def test_wait_for_event_returns_none_on_timeout() -> None:
    memo = [completed("before", 0, 1), memo_entry("wait:order.paid", 1, "wait", None)]
    answer = await call(_waiter(), input="k-1", memo=memo)
    assert answer["status"] == "complete"
    assert answer["output"] == {"event": None}


async def test_wait_for_event_refuses_structured_match_values() -> None:
    @task("bad-match")
    async def bad_match(ctx: Context) -> Any:
        return await ctx.wait_for_event("e", match={"data.ids": [1, 2]})

    answer = await call(bad_match)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "UsageError"
    assert answer["error"]["retriable"] is False
    assert "scalars" in answer["error"]["message"]


# -- spawn -------------------------------------------------------------------------------------


@task("double")
async def double_child(ctx: Context, x: int) -> int:
    return x * 2


def _parent() -> Function:
    @task("parent")
    async def parent(ctx: Context) -> dict[str, Any]:
        try:
            outs = await ctx.spawn(
                "kids",
                [Child(double_child, 1), Child("double", 2), {"function": "double", "input": 3}],
            )
        except ChildRunError as exc:
            return {"failed": [r["status"] for r in exc.results], "step": exc.step,
                    "message": str(exc)}
        return {"outs": outs}

    return parent


async def test_spawn_yields_a_spawn_op_with_children() -> None:
    answer = await call(_parent())
    assert answer["status"] == "yield"
    assert answer["steps"] == []
    assert answer["op"] == {
        "op": "spawn", "id": "kids", "seq": 0, "name": "kids", "wait": True,
        "children": [{"function": "double", "input": 1}, {"function": "double", "input": 2},
                     {"function": "double", "input": 3}],
    }


async def test_spawn_returns_the_children_outputs() -> None:
    results = [{"run_id": f"r{i}", "status": "completed", "output": 2 * i} for i in (1, 2, 3)]
    answer = await call(_parent(), memo=[memo_entry("kids", 0, "children", results,
                                                    status="completed")])
    assert answer["status"] == "complete"
    assert answer["output"] == {"outs": [2, 4, 6]}


async def test_a_failed_child_raises_child_run_error() -> None:
    results = [
        {"run_id": "r1", "status": "completed", "output": 2},
        {"run_id": "r2", "status": "failed", "error": {"type": "ValueError", "message": "no"}},
        {"run_id": "r3", "status": "cancelled", "error": None},
    ]
    answer = await call(_parent(), memo=[memo_entry("kids", 0, "children", results)])
    assert answer["status"] == "complete"
    out = answer["output"]
    assert out["failed"] == ["completed", "failed", "cancelled"]
    assert out["step"] == "kids"
    assert "2 of 3" in out["message"] and "r2" in out["message"]


async def test_an_uncaught_child_failure_fails_the_run_for_good() -> None:
    @task("parent-uncaught")
    async def parent_uncaught(ctx: Context) -> Any:
        return await ctx.invoke("only", "double", 5)

    results = [{"run_id": "r1", "status": "failed", "error": {"message": "boom"}}]
    answer = await call(parent_uncaught, memo=[memo_entry("only", 0, "children", results)])
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "ChildRunError"
    assert answer["error"]["retriable"] is False


async def test_invoke_is_a_spawn_of_one() -> None:
    @task("invoker")
    async def invoker(ctx: Context) -> Any:
        return await ctx.invoke("one", double_child, 21)

    answer = await call(invoker)
    assert answer["op"]["op"] == "spawn"
    assert answer["op"]["children"] == [{"function": "double", "input": 21}]
    results = [{"run_id": "r1", "status": "completed", "output": 42}]
    answer = await call(invoker, memo=[memo_entry("one", 0, "children", results)])
    assert answer["output"] == 42


async def test_spawn_no_wait_yields_then_returns_the_run_ids() -> None:
    @task("fire-and-forget")
    async def fire_and_forget(ctx: Context) -> list[str]:
        return await ctx.spawn_no_wait("bg", [Child("double", 5)])

    answer = await call(fire_and_forget)
    assert answer["op"]["op"] == "spawn" and answer["op"]["wait"] is False
    assert answer["op"]["children"] == [{"function": "double", "input": 5}]
    answer = await call(fire_and_forget, memo=[memo_entry("bg", 0, "spawn", ["run-child"])])
    assert answer["status"] == "complete" and answer["output"] == ["run-child"]


async def test_spawn_with_non_json_input_is_an_error() -> None:
    @task("bad-child")
    async def bad_child(ctx: Context) -> Any:
        return await ctx.spawn("kids", [Child("double", object())])

    answer = await call(bad_child)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "UsageError"
    assert answer["error"]["retriable"] is False


# -- send_event --------------------------------------------------------------------------------


async def test_send_event_records_a_memo_entry_and_returns_the_events() -> None:
    @task("sender")
    async def sender(ctx: Context) -> list[str]:
        first = await ctx.send_event("notify", {"name": "order.paid", "data": {"key": "k"}})
        more = await ctx.send_event("notify", [{"name": "a", "id": "fixed-id"}, {"name": "b"}])
        return first + more

    answer = await call(sender)
    assert answer["status"] == "complete"
    events = answer["events"]
    assert [e["name"] for e in events] == ["order.paid", "a", "b"]
    assert events[0]["data"] == {"key": "k"} and events[1]["data"] == {}
    assert events[1]["id"] == "fixed-id"
    assert len({e["id"] for e in events}) == 3
    assert answer["output"] == [e["id"] for e in events]
    assert ids(answer) == ["notify", "notify:1"]
    assert [s["kind"] for s in answer["steps"]] == ["send_event", "send_event"]
    assert answer["steps"][0]["output"] == [events[0]["id"]]
    assert answer["steps"][1]["output"] == ["fixed-id", events[2]["id"]]

    # a replay returns the recorded ids and sends nothing again
    replay = await call(sender, memo=answer["steps"])
    assert replay["status"] == "complete"
    assert replay["output"] == answer["output"]
    assert replay["events"] == [] and replay["steps"] == []


async def test_send_event_refuses_events_without_a_name() -> None:
    @task("bad-sender")
    async def bad_sender(ctx: Context) -> Any:
        return await ctx.send_event("notify", {"data": {}})

    answer = await call(bad_sender)
    assert answer["status"] == "error" and answer["error"]["type"] == "UsageError"
    assert answer["events"] == []


# -- input models ------------------------------------------------------------------------------


class Order(BaseModel):
    name: str
    count: int


@task("typed", input_model=Order)
async def typed(ctx: Context, order: Order) -> str:
    assert isinstance(order, Order)
    return f"{order.name} x{order.count}"


async def test_a_valid_input_is_parsed_into_the_model() -> None:
    answer = await call(typed, input={"name": "a", "count": 2})
    assert answer["status"] == "complete" and answer["output"] == "a x2"


@pytest.mark.parametrize("bad", [{"name": "a", "count": "many"}, {"name": "a"}, None, [1]])
async def test_an_invalid_input_is_a_final_input_validation_error(bad: Any) -> None:
    answer = await call(typed, input=bad)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "InputValidationError"
    assert answer["error"]["retriable"] is False
    assert "'typed'" in answer["error"]["message"]
    assert answer["steps"] == []


async def test_input_validation_error_names_the_field() -> None:
    answer = await call(typed, input={"name": "a", "count": "many"})
    assert "count" in answer["error"]["message"]


# -- Handler.handle ----------------------------------------------------------------------------


@task("echo", triggers=["test.echo"], retry=Retry(max_attempts=7))
async def echo(ctx: Context, value: Any) -> Any:
    return await ctx.step.run("echo", lambda: value)


@pytest.fixture
def handler() -> Handler:
    return Handler([echo, typed], p.Signer(KEY), "unit-app")


def _body(msg: Any) -> bytes:
    return p.dumps(msg)


def _refusal(resp: Any, status: int, what: str) -> None:
    assert resp.status == status
    assert resp.headers["content-type"] == "application/json"
    assert p.H_SIGNATURE not in resp.headers
    err = json.loads(resp.body)["error"]
    assert err["code"] == ("unauthorized" if status == 401 else "bad_request")
    assert what in err["message"]


async def test_handle_refuses_an_unsigned_request(handler: Handler) -> None:
    body = _body(request(echo, input=1))
    _refusal(await handler.handle(body, {}), 401, "not signed")


async def test_handle_refuses_a_forged_request(handler: Handler) -> None:
    body = _body(request(echo, input=1))
    resp = await handler.handle(body, signed(body, key="attacker-key"))
    _refusal(resp, 401, "does not match")


async def test_handle_refuses_a_tampered_request(handler: Handler) -> None:
    body = _body(request(echo, input=1))
    headers = signed(body)
    resp = await handler.handle(body.replace(b'"input":1', b'"input":2'), headers)
    _refusal(resp, 401, "does not match")


async def test_handle_refuses_a_stale_request(handler: Handler) -> None:
    body = _body(request(echo, input=1))
    resp = await handler.handle(body, signed(body, now=time.time() - 2 * p.MAX_CLOCK_SKEW_S))
    _refusal(resp, 401, "clock skew")


async def test_handle_refuses_a_malformed_timestamp(handler: Handler) -> None:
    body = _body(request(echo, input=1))
    headers = {**signed(body), p.H_TIMESTAMP: "now"}
    _refusal(await handler.handle(body, headers), 401, "malformed")


async def test_handle_refuses_a_signed_but_malformed_request(handler: Handler) -> None:
    for body, what in [(b"not json", "malformed request"),
                       (_body({"v": 99, "kind": "invoke"}), "version 99"),
                       (_body({"v": p.VERSION, "kind": "invoke"}), "function")]:
        _refusal(await handler.handle(body, signed(body)), 400, what)


async def test_handle_answers_introspection_signed(handler: Handler) -> None:
    body = _body(p.introspect_request())
    resp = await handler.handle(body, signed(body))
    assert resp.status == 200
    assert resp.headers["content-type"] == "application/json"
    p.Signer(KEY).verify(resp.body, resp.headers)  # the answer is signed with the app's key
    msg = json.loads(resp.body)
    assert msg["v"] == p.VERSION
    assert msg["app_id"] == "unit-app"
    assert msg["sdk"] == SDK_NAME
    assert msg["functions"] == [echo.config(), typed.config()]
    assert [f["name"] for f in msg["functions"]] == ["echo", "typed"]
    echo_cfg = msg["functions"][0]
    assert echo_cfg["kind"] == "task"
    assert echo_cfg["triggers"] == [{"event": "test.echo"}]
    assert echo_cfg["retry"]["max_attempts"] == 7


async def test_handle_answers_an_unknown_function_with_a_signed_error(handler: Handler) -> None:
    body = _body(request("no-such-function", call_id="call-x"))
    resp = await handler.handle(body, signed(body))
    assert resp.status == 200
    p.Signer(KEY).verify(resp.body, resp.headers)
    answer = p.parse_answer(json.loads(resp.body), "call-x")
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "FunctionNotFound"
    assert answer["error"]["retriable"] is False
    assert "no-such-function" in answer["error"]["message"]


async def test_handle_runs_a_function_and_signs_the_answer(handler: Handler) -> None:
    body = _body(request(echo, input={"hello": "world"}))
    resp = await handler.handle(body, signed(body))
    assert resp.status == 200
    p.Signer(KEY).verify(resp.body, resp.headers)
    with pytest.raises(p.SignatureError):
        p.Signer("another-key").verify(resp.body, resp.headers)
    answer = p.parse_answer(json.loads(resp.body), CALL_ID)
    assert answer["status"] == "complete"
    assert answer["output"] == {"hello": "world"}
    assert ids(answer) == ["echo"]


async def test_handle_accepts_a_request_signed_with_the_fallback_key() -> None:
    rotating = Handler([echo], p.Signer("new-key", fallback=KEY), "unit-app")
    body = _body(request(echo, input=3))
    resp = await rotating.handle(body, signed(body, key=KEY))
    assert resp.status == 200
    p.Signer("new-key").verify(resp.body, resp.headers)  # answered with the new key
    assert json.loads(resp.body)["output"] == 3


def test_handler_refuses_two_functions_with_one_name() -> None:
    @task("echo")
    async def other_echo(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="two functions"):
        Handler([echo, other_echo], p.Signer(KEY), "unit-app")


# -- bugs --------------------------------------------------------------------------------------


async def test_step_ids_stay_unique_when_a_name_looks_like_a_repeat() -> None:
    """A step named "a:1" and the second step named "a" must not share an id.

    Names may contain ':' (and ``wait_for_event`` names its steps "wait:<event>"), but
    ``Execution.begin`` numbers repeats as "<name>:<n>", so the two collide: the answer
    records two steps with one id, the store (keyed by run and step id) keeps one, and the
    replay of this deterministic function fails with NonDeterminismError.
    """

    @task("colliding")
    async def colliding(ctx: Context) -> list[int]:
        return [
            await ctx.step.run("a", lambda: 1),
            await ctx.step.run("a:1", lambda: 2),
            await ctx.step.run("a", lambda: 3),
        ]

    first = await call(colliding)
    assert first["output"] == [1, 2, 3]
    assert len(set(ids(first))) == 3, f"duplicate step ids: {ids(first)}"
    replay = await call(colliding, memo=merge([], first["steps"]))
    assert replay["status"] == "complete", replay.get("error")
    assert replay["output"] == [1, 2, 3]


async def test_a_non_json_match_value_is_an_error_answer_not_a_crash(handler: Handler) -> None:
    """``wait_for_event`` refuses dict/list match values but not other non-JSON ones.

    A datetime (or NaN) passes the check in ``Execution.wait_for_event``, is put in the
    yield op, and ``Handler._signed`` then fails to encode the answer: ``handle`` raises
    TypeError instead of answering, so the app returns HTTP 500 and the orchestrator
    redelivers the call until the app counts as unreachable.
    """

    @task("when-match")
    async def when_match(ctx: Context) -> Any:
        return await ctx.wait_for_event("e", match={"data.at": datetime(2030, 1, 1)})

    h = Handler([when_match], p.Signer(KEY), "unit-app")
    body = _body(request(when_match))
    resp = await h.handle(body, signed(body))  # raises TypeError today
    assert resp.status == 200
    p.Signer(KEY).verify(resp.body, resp.headers)
    answer = p.parse_answer(json.loads(resp.body), CALL_ID)
    assert answer["status"] == "error"
    assert "JSON" in answer["error"]["message"]
