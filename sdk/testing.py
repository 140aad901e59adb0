"""Run durable functions in-process, for users' own tests: no orchestrator, no HTTP.

``run_local`` plays the orchestrator's part: it calls the function through the same
replay machinery the endpoint uses, records its steps in a memo, skips sleeps, answers
waits from the events you give, and runs children with stubs (or the real functions)::

    from sdk.testing import run_local

    async def test_fulfil_order():
        run = await run_local(
            fulfil_order, {"order_id": "o-1", "amount_cents": 100, "customer": "ada",
                           "notify": ["a@x"]},
            events=[{"name": "shipment.delivered", "data": {"order_id": "o-1"}}],
            children={"send-notification": lambda msg: {"to": msg["to"]}},
        )
        assert run.status == "completed"
        assert run.output["notified"] == ["a@x"]
        assert [s["id"] for s in run.steps] == ["charge", "wait:shipment.delivered", ...]
"""

from __future__ import annotations

import inspect
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdk import protocol as p
from sdk.function import Runnable
from sdk.handler import execute
from sdk.workflow import Workflow

Stub = Callable[[Any], Any]


@dataclass
class LocalRun:
    """The outcome of ``run_local``."""

    status: str  # "completed", "failed" or "skipped"
    output: Any = None
    error: Mapping[str, Any] | None = None
    steps: list[p.MemoEntry] = field(default_factory=list)
    """The memo, in order: what the orchestrator would show as the run's timeline."""
    calls: int = 0
    """How many calls the function needed (a call ends at each sleep, wait, spawn...)."""
    sent_events: list[p.AnswerEvent] = field(default_factory=list)
    tasks: dict[str, LocalRun] = field(default_factory=dict)
    """For a workflow: each task's own run."""


class _World:
    def __init__(self, events: Iterable[Mapping[str, Any]], children: Mapping[str, Any],
                 functions: Iterable[Runnable], max_calls: int) -> None:
        self.events = [{"id": uuid.uuid4().hex, "data": {}, "ts": 0.0, **e} for e in events]
        self.children = dict(children)
        self.functions = {f.name: f for f in functions}
        self.max_calls = max_calls

    def take_event(self, name: str, match: Mapping[str, Any]) -> dict[str, Any] | None:
        # the orchestrator's rule: the same (name, {path: value}) key, compared as JSON
        key, fields = p.match_key(name, match), p.match_fields(match)
        for ev in self.events:
            if ev["name"] == name and p.event_match_key(ev, fields) == key:
                self.events.remove(ev)
                return ev
        return None

    async def child(self, run_id: str, function: str, input: Any) -> p.ChildResult:
        stub = self.children.get(function)
        if stub is not None:
            try:
                out = stub(input) if callable(stub) else stub
                if inspect.isawaitable(out):
                    out = await out
            except Exception as exc:
                return p.child_result(run_id, function, p.RunStatus.FAILED,
                                      error=p.error_info(type(exc).__name__, str(exc)))
            return p.child_result(run_id, function, p.RunStatus.COMPLETED, output=out)
        fn = self.functions.get(function)
        if fn is None:
            raise LookupError(f"no stub or function for child {function!r}: pass "
                              f"children={{{function!r}: ...}} or functions=[...]")
        run = await _run(fn, input, None, self, None, None)
        if run.status == p.RunStatus.COMPLETED:
            return p.child_result(run_id, function, run.status, output=run.output)
        return p.child_result(run_id, function, run.status, error=run.error)


async def run_local(
    runnable: Runnable,
    input: Any = None,
    *,
    event: Mapping[str, Any] | None = None,
    events: Iterable[Mapping[str, Any]] = (),
    children: Mapping[str, Stub | Any] | None = None,
    functions: Iterable[Runnable] = (),
    max_calls: int = 1000,
) -> LocalRun:
    """Run ``runnable`` (a task or a workflow) to its end, in this process.

    ``events`` answer ``wait_for_event`` (first match wins; none: the wait times out);
    ``children`` stub child runs by function name (a callable taking the child's input,
    or a value); ``functions`` are run for real when a child names them.
    """
    world = _World(events, children or {}, functions, max_calls)
    return await _run(runnable, input, event, world, None, None)


async def _run(fn: Runnable, input: Any, event: Mapping[str, Any] | None, world: _World,
               task: str | None, parents: Mapping[str, p.ParentResult] | None,
               failure: p.TaskFailure | None = None) -> LocalRun:
    if isinstance(fn, Workflow) and task is None:
        return await _workflow(fn, input, event, world)
    run_id = uuid.uuid4().hex
    memo: dict[str, p.MemoEntry] = {}
    out = LocalRun(status="running")
    attempt = 0
    retry = fn.retry
    if isinstance(fn, Workflow):
        t = fn.find(task)
        retry = (t.retry if t else None) or fn.retry
    while out.calls < world.max_calls:
        out.calls += 1
        req = p.invoke_request(
            call_id=f"{run_id}:{out.calls}", function=fn.name, run_id=run_id, attempt=attempt,
            input=input, event=dict(event) if event else None,
            memo=sorted(memo.values(), key=lambda e: e["seq"]), budget_ms=30_000,
            task=task, parents=parents, failure=failure)
        answer = await execute(fn, req, len(p.dumps(req)))
        for e in answer.get("steps", []):
            recorded = memo.get(e["id"])
            if (recorded and recorded.get("status")) in (None, p.StepStatus.RETRYING):
                memo[e["id"]] = e
        out.sent_events += answer.get("events", [])
        out.steps = sorted(memo.values(), key=lambda e: e["seq"])
        if answer["status"] == p.Status.COMPLETE:
            out.status = "skipped" if answer.get("skipped") else "completed"
            out.output = answer.get("output")
            return out
        if answer["status"] == p.Status.ERROR:
            err = answer["error"]
            if err.get("retriable", True) and attempt + 1 < retry.max_attempts:
                attempt += 1
                continue
            out.status, out.error = "failed", err
            return out
        op = answer["op"]
        if op["op"] == p.Op.RESUME:  # budget spent, step retry: just call again
            continue
        output: Any
        if op["op"] == p.Op.SLEEP:
            kind, output = p.MemoKind.SLEEP, 0  # time flies
        elif op["op"] == p.Op.WAIT_EVENT:
            kind, output = p.MemoKind.WAIT, world.take_event(op["event"], op.get("match") or {})
        else:
            ids = [f"{run_id}-child-{op['id']}-{i}" for i in range(len(op["children"]))]
            results = [await world.child(cid, c["function"], c.get("input"))
                       for cid, c in zip(ids, op["children"], strict=True)]
            if op.get("wait", True):
                kind, output = p.MemoKind.CHILDREN, results
            else:
                kind, output = p.MemoKind.SPAWN, ids
        memo[op["id"]] = p.memo_entry(op["id"], op["seq"], op["name"], kind, output=output)
    raise RuntimeError(f"{fn.name}: no end after {world.max_calls} calls")


async def _workflow(wf: Workflow, input: Any, event: Mapping[str, Any] | None,
                    world: _World) -> LocalRun:
    """Tasks in the order the orchestrator could start them, with the same semantics."""
    out = LocalRun(status="running")
    done: dict[str, LocalRun] = out.tasks
    pending = dict(wf.tasks)
    while pending:
        ready = [t for t in pending.values()
                 if all(q.name in done and done[q.name].status in ("completed", "skipped")
                        for q in t.parents)]
        if not ready:
            break
        for t in ready:
            del pending[t.name]
            if t.parents and all(done[q.name].status == "skipped" for q in t.parents):
                done[t.name] = LocalRun(status="skipped")
                continue
            view = {q.name: p.parent_result(done[q.name].status, output=done[q.name].output)
                    if done[q.name].status == "completed" else p.parent_result(done[q.name].status)
                    for q in t.parents}
            run = await _run(wf, input, event, world, t.name, view)
            done[t.name] = run
            out.calls += run.calls
            if run.status == "failed":
                failure = p.task_failure(t.name, "failed", error=run.error)
                if wf.failure_task is not None:
                    done[wf.failure_task.name] = await _run(
                        wf, input, event, world, wf.failure_task.name, {}, failure)
                out.status = "failed"
                out.error = {"type": "TaskFailed", "task": t.name,
                             "message": f"task {t.name!r} failed: "
                                        f"{(run.error or {}).get('message', '')}"}
                return out
    out.status = "completed"
    out.output = {n: r.output for n, r in done.items() if r.status == "completed"}
    return out


__all__ = ["LocalRun", "run_local"]
