"""Unit tests of DAG workflows in the SDK: declaring them (``sdk.Workflow``), their
config, running their tasks through ``sdk.handler.execute`` / ``Handler.handle`` with
hand-built requests (``request["task"]`` and ``request["parents"]``, shaped as
``orchestrator.engine.dag`` sends them), and binding them to a client.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import timedelta
from typing import Any

import pytest

from sdk import Client, Context, Function, Retry, SyncContext, Task, Workflow
from sdk import function as function_mod
from sdk import protocol as p
from sdk.handler import Handler, execute
from sdk.workflow import Workflow as WorkflowClass

RUN_ID = "run-task-1"
CALL_ID = "call-task-1"
KEY = "unit-test-key"


# -- helpers -----------------------------------------------------------------------------------


def task_request(
    wf: Workflow | str,
    task: str | None,
    parents: Mapping[str, Any] | None = None,
    *,
    input: Any = None,
    memo: Iterable[Mapping[str, Any]] = (),
    call_id: str = CALL_ID,
    failure: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    name = wf if isinstance(wf, str) else wf.name
    req = p.invoke_request(
        call_id=call_id, function=name, run_id=RUN_ID, attempt=1, input=input, event=None,
        memo=[dict(e) for e in memo], budget_ms=30_000, parent_id="wf-run-1", task=task,
        parents=parents, failure=failure,
    )
    return json.loads(p.dumps(req))  # as the app decodes it


async def run_task(wf: Workflow, task: str, parents: Mapping[str, Any] | None = None,
                   **kw: Any) -> dict[str, Any]:
    """One call of one task; the answer as the orchestrator decodes and validates it."""
    req = task_request(wf, task, parents, **kw)
    raw = await execute(wf, req, len(p.dumps(req)))
    answer = p.loads(p.dumps(raw))
    p.parse_answer(answer, req["call_id"])
    return answer  # type: ignore[no-any-return]


def done(output: Any) -> dict[str, Any]:
    """A parent's view as ``dag._view`` builds it for a completed task."""
    return {"status": "completed", "output": output}


SKIPPED: dict[str, Any] = {"status": "skipped"}


def step_entry(step_id: str, seq: int, output: Any) -> dict[str, Any]:
    return {"id": step_id, "seq": seq, "name": step_id, "kind": "step", "status": "completed",
            "attempts": 1, "output": output, "started_at": 1.0, "ended_at": 2.0}


# -- declaring: config() -----------------------------------------------------------------------


def test_config_lists_tasks_with_parent_names() -> None:
    etl = Workflow("etl", triggers=["upload.done"], retry=Retry(max_attempts=5))

    @etl.task()
    async def extract(ctx: Context) -> int:
        return 1

    @etl.task(parents=[extract])
    async def clean_rows(ctx: Context) -> int:
        return 2

    @etl.task("load", parents=[extract, clean_rows])
    def load_fn(ctx: SyncContext) -> int:
        return 3

    assert isinstance(extract, Task) and extract.workflow is etl
    assert clean_rows.name == "clean-rows"  # underscores become dashes
    assert load_fn.name == "load"  # an explicit name wins
    assert repr(load_fn) == "<Task etl.load>"
    cfg = etl.config()
    assert cfg == {
        "name": "etl",
        "kind": "workflow",
        "triggers": [{"event": "upload.done"}],
        "retry": Retry(max_attempts=5).to_wire(),
        "tasks": [
            {"name": "extract", "parents": [], "conditional": False},
            {"name": "clean-rows", "parents": ["extract"], "conditional": False},
            {"name": "load", "parents": ["extract", "clean-rows"], "conditional": False},
        ],
    }
    assert list(etl.tasks) == ["extract", "clean-rows", "load"]


def test_task_config_carries_retry_and_timeout_when_given() -> None:
    wf = Workflow("timed")

    @wf.task(retry=Retry(max_attempts=2, initial_delay=0.5), timeout=30)
    async def a(ctx: Context) -> None:
        return None

    @wf.task(parents=[a], timeout=timedelta(minutes=2))
    async def b(ctx: Context) -> None:
        return None

    tasks = wf.config()["tasks"]
    assert tasks[0]["retry"] == Retry(max_attempts=2, initial_delay=0.5).to_wire()
    assert tasks[0]["timeout"] == 30.0
    assert "retry" not in tasks[1]
    assert tasks[1]["timeout"] == 120.0


def test_conditional_is_true_when_skip_if_is_set() -> None:
    wf = Workflow("cond")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    @wf.task(parents=[a], skip_if=lambda ctx: True)
    async def b(ctx: Context) -> None:
        return None

    assert [t["conditional"] for t in wf.config()["tasks"]] == [False, True]
    assert b.skip_if is not None and a.skip_if is None


def test_on_failure_config() -> None:
    wf = Workflow("guarded", timeout=600)

    @wf.task()
    async def work(ctx: Context) -> None:
        return None

    @wf.on_failure(retry=Retry(max_attempts=1), timeout=15)
    async def alert_ops(ctx: Context) -> None:
        return None

    cfg = wf.config()
    assert cfg["on_failure"] == {"name": "alert-ops", "parents": [], "conditional": False,
                                 "retry": Retry(max_attempts=1).to_wire(), "timeout": 15.0}
    assert [t["name"] for t in cfg["tasks"]] == ["work"]  # not a task of the graph
    assert cfg["timeout"] == 600.0
    assert wf.failure_task is alert_ops
    assert wf.find("alert-ops") is alert_ops and wf.find("work") is work
    assert wf.find(None) is None and wf.find("nope") is None


def test_a_workflow_without_on_failure_has_no_on_failure_key() -> None:
    wf = Workflow("plain")

    @wf.task()
    async def only(ctx: Context) -> None:
        return None

    assert "on_failure" not in wf.config()
    assert wf.failure_task is None


def test_config_passes_registration() -> None:
    from orchestrator.engine.registration import validate_functions

    wf = Workflow("registrable")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    @wf.task(parents=[a], skip_if=lambda ctx: False, retry=Retry(max_attempts=2), timeout=5)
    async def b(ctx: Context) -> None:
        return None

    @wf.on_failure()
    async def c(ctx: Context) -> None:
        return None

    out, crons = validate_functions([wf.config()])
    assert out == [wf.config()] and crons == []


# -- declaring: errors -------------------------------------------------------------------------


def test_a_parent_from_another_workflow_is_refused() -> None:
    one, two = Workflow("one"), Workflow("two")

    @one.task()
    async def a(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="same workflow"):
        @two.task(parents=[a])
        async def b(ctx: Context) -> None:
            return None

    assert two.tasks == {}


@pytest.mark.parametrize("parent", ["a", None, 42])
def test_a_parent_that_is_not_a_task_is_refused(parent: Any) -> None:
    wf = Workflow("w")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="parents must be tasks"):
        @wf.task(parents=[parent])
        async def b(ctx: Context) -> None:
            return None

    assert list(wf.tasks) == ["a"]


def test_a_duplicate_task_name_is_refused() -> None:
    wf = Workflow("w")

    @wf.task("step")
    async def first(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="already has a task 'step'"):
        @wf.task("step")
        async def second(ctx: Context) -> None:
            return None

    assert wf.tasks["step"] is first


def test_on_failure_and_task_names_must_differ() -> None:
    wf = Workflow("w")

    @wf.task()
    async def work(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="already has a task 'work'"):
        @wf.on_failure("work")
        async def alert(ctx: Context) -> None:
            return None

    @wf.on_failure()
    async def cleanup(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="already has a task 'cleanup'"):
        @wf.task("cleanup")
        async def late(ctx: Context) -> None:
            return None


def test_a_workflow_with_no_tasks_fails_at_config_time() -> None:
    wf = Workflow("empty")
    with pytest.raises(ValueError, match="'empty' has no tasks"):
        wf.config()

    @wf.on_failure()
    async def alert(ctx: Context) -> None:
        return None

    with pytest.raises(ValueError, match="has no tasks"):  # on_failure alone is not a task
        wf.config()


def test_bad_task_declarations_are_refused() -> None:
    wf = Workflow("w")
    with pytest.raises(ValueError, match="invalid task name"):
        wf.task("bad name")(lambda ctx: None)
    with pytest.raises(TypeError, match="takes the context first"):
        wf.task("no-ctx")(lambda: None)
    with pytest.raises(ValueError, match="timeout must be positive"):
        wf.task("t", timeout=0)(lambda ctx: None)
    assert wf.tasks == {}


# -- executing tasks ---------------------------------------------------------------------------


def _pipeline(calls: dict[str, int]) -> tuple[Workflow, Task, Task, Task, Task]:
    wf = Workflow("pipeline")

    @wf.task()
    async def extract(ctx: Context, value: Any) -> Any:
        calls["extract"] = calls.get("extract", 0) + 1
        return value

    @wf.task()
    async def lookup(ctx: Context) -> Any:
        return "lookup"

    def skip_when_empty(ctx: Any) -> bool:
        calls["skip_if"] = calls.get("skip_if", 0) + 1
        return not ctx.parent(extract)

    @wf.task(parents=[extract, lookup], skip_if=skip_when_empty)
    async def transform(ctx: Context, value: Any) -> Any:
        calls["transform"] = calls.get("transform", 0) + 1
        rows = await ctx.step.run("double", lambda: [r * 2 for r in ctx.parent(extract)])
        return {"rows": rows, "by_name": ctx.parent("extract"), "lookup": ctx.parent(lookup),
                "lookup_skipped": ctx.was_skipped(lookup), "input": value,
                "task": ctx.task, "failure": ctx.failure}

    @wf.on_failure()
    async def alert(ctx: Context) -> Any:
        calls["alert"] = calls.get("alert", 0) + 1
        return {"failure": ctx.failure, "task": ctx.task}

    return wf, extract, lookup, transform, alert


async def test_a_task_reads_its_parents_by_object_and_by_name() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await run_task(wf, "transform",
                            {"extract": done([1, 2]), "lookup": done({"k": "v"})}, input=7)
    assert answer["status"] == "complete", answer.get("error")
    assert answer["output"] == {"rows": [2, 4], "by_name": [1, 2], "lookup": {"k": "v"},
                                "lookup_skipped": False, "input": 7, "task": "transform",
                                "failure": None}
    assert "skipped" not in answer
    assert [s["id"] for s in answer["steps"]] == ["double"]
    assert calls == {"skip_if": 1, "transform": 1}


async def test_only_the_requested_task_runs() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await run_task(wf, "extract", {}, input=[3])
    assert answer["status"] == "complete"
    assert answer["output"] == [3]
    assert calls == {"extract": 1}


async def test_a_skipped_parent_is_seen_as_skipped_with_no_output() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await run_task(wf, "transform", {"extract": done([5]), "lookup": SKIPPED})
    assert answer["status"] == "complete", answer.get("error")
    assert answer["output"]["lookup"] is None
    assert answer["output"]["lookup_skipped"] is True


async def test_was_skipped_is_false_for_a_completed_parent_with_null_output() -> None:
    wf = Workflow("nulls")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    @wf.task(parents=[a])
    async def b(ctx: Context) -> Any:
        return [ctx.parent(a), ctx.was_skipped(a), ctx.was_skipped("a")]

    answer = await run_task(wf, "b", {"a": {"status": "completed", "output": None}})
    assert answer["output"] == [None, False, False]


async def test_parent_raises_key_error_for_a_task_that_is_not_a_parent() -> None:
    wf = Workflow("strangers")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    @wf.task()
    async def other(ctx: Context) -> None:
        return None

    @wf.task(parents=[a])
    async def b(ctx: Context) -> Any:
        out = []
        for probe in (other, "other", "nope"):
            try:
                ctx.parent(probe)
            except KeyError as exc:
                out.append(str(exc))
        try:
            ctx.was_skipped(other)
        except KeyError as exc:
            out.append(str(exc))
        return out

    answer = await run_task(wf, "b", {"a": done(1)})
    assert answer["status"] == "complete", answer.get("error")
    assert len(answer["output"]) == 4
    assert all("is not a parent of task 'b'" in m for m in answer["output"])
    assert "'other'" in answer["output"][0] and "'nope'" in answer["output"][2]


async def test_an_uncaught_key_error_from_parent_is_an_error_answer() -> None:
    wf = Workflow("uncaught")

    @wf.task()
    async def a(ctx: Context) -> Any:
        return ctx.parent("ghost")

    answer = await run_task(wf, "a", {})
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "KeyError"
    assert "'ghost' is not a parent of task 'a'" in answer["error"]["message"]


async def test_skip_if_true_answers_skipped_without_running_the_body() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await run_task(wf, "transform", {"extract": done([]), "lookup": done(None)})
    assert answer["status"] == "complete"
    assert answer["skipped"] is True
    assert answer["output"] is None
    assert answer["steps"] == [] and answer["events"] == []
    assert calls == {"skip_if": 1}  # the condition ran; the body did not


async def test_skip_if_false_runs_the_body() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await run_task(wf, "transform", {"extract": done([1]), "lookup": done(None)})
    assert answer["status"] == "complete" and "skipped" not in answer
    assert calls == {"skip_if": 1, "transform": 1}


async def test_skip_if_is_not_evaluated_on_a_replay() -> None:
    """With a non-empty memo the task already started: its condition held then."""
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    # extract's output is now empty, which would skip; the memo says the task ran
    answer = await run_task(wf, "transform", {"extract": done([]), "lookup": done("x")},
                            memo=[step_entry("double", 0, [42])])
    assert answer["status"] == "complete", answer.get("error")
    assert "skipped" not in answer
    assert answer["output"]["rows"] == [42]  # replayed from the memo
    assert answer["steps"] == []
    assert calls == {"transform": 1}  # no "skip_if"


async def test_skip_if_sees_a_sync_context_for_a_sync_task() -> None:
    wf = Workflow("sync-skip")
    seen: list[type] = []

    @wf.task()
    def a(ctx: SyncContext) -> int:
        return 0

    def cond(ctx: Any) -> bool:
        seen.append(type(ctx))
        return ctx.parent(a) == 0

    @wf.task(parents=[a], skip_if=cond)
    def b(ctx: SyncContext) -> str:
        return "ran"

    skipped = await run_task(wf, "b", {"a": done(0)})
    ran = await run_task(wf, "b", {"a": done(1)})
    assert skipped["skipped"] is True and skipped["output"] is None
    assert ran["output"] == "ran" and "skipped" not in ran
    assert seen == [SyncContext, SyncContext]


async def test_a_failing_skip_if_is_an_error_answer() -> None:
    wf = Workflow("bad-cond")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    def cond(ctx: Any) -> bool:
        raise RuntimeError("condition broke")

    @wf.task(parents=[a], skip_if=cond)
    async def b(ctx: Context) -> None:
        return None

    answer = await run_task(wf, "b", {"a": done(1)})
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "RuntimeError"
    assert "condition broke" in answer["error"]["message"]


async def test_a_sync_task_reads_its_parents() -> None:
    wf = Workflow("sync")

    @wf.task()
    def a(ctx: SyncContext) -> int:
        return 1

    @wf.task(parents=[a])
    def b(ctx: SyncContext, value: Any) -> Any:
        return {"a": ctx.parent(a), "skipped": ctx.was_skipped("a"), "input": value,
                "failure": ctx.failure}

    answer = await run_task(wf, "b", {"a": done(10)}, input="in")
    assert answer["output"] == {"a": 10, "skipped": False, "input": "in", "failure": None}


async def test_the_on_failure_task_sees_the_failure() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    failure = {"task": "transform", "status": "failed",
               "error": {"type": "ValueError", "message": "bad row", "retriable": False}}
    answer = await run_task(wf, "alert", {}, failure=failure)
    assert answer["status"] == "complete", answer.get("error")
    assert answer["output"] == {"failure": failure, "task": "alert"}
    assert calls == {"alert": 1}


async def test_failure_is_a_copy() -> None:
    wf = Workflow("copy")

    @wf.task()
    async def a(ctx: Context) -> None:
        return None

    @wf.on_failure()
    async def alert(ctx: Context) -> Any:
        f = ctx.failure
        assert f is not None
        f["task"] = "changed"
        return ctx.failure

    answer = await run_task(wf, "alert", {}, failure={"task": "a", "status": "timed_out"})
    assert answer["output"] == {"task": "a", "status": "timed_out"}


async def test_a_task_uses_its_own_retry_policy_or_the_workflows() -> None:
    wf = Workflow("retries", retry=Retry(max_attempts=1))

    def boom() -> None:
        raise RuntimeError("boom")

    @wf.task()
    async def inherits(ctx: Context) -> None:
        await ctx.step.run("s", boom)

    @wf.task(retry=Retry(max_attempts=3, initial_delay=0.01, jitter=0))
    async def own(ctx: Context) -> None:
        await ctx.step.run("s", boom)

    first = await run_task(wf, "inherits", {})
    assert first["status"] == "error"  # one attempt: the step failed for good
    assert first["steps"][0]["status"] == "failed"
    second = await run_task(wf, "own", {})
    assert second["status"] == "yield"  # three attempts: the step is retried
    assert second["steps"][0]["status"] == "retrying"
    assert second["op"]["op"] == "resume"


async def test_execute_refuses_an_unknown_task() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    with pytest.raises(LookupError, match="no task 'nope'"):
        await execute(wf, task_request(wf, "nope", {}), 100)
    assert calls == {}


async def test_a_task_named_failure_does_not_pose_as_a_failure() -> None:
    """BUG: a task may be named "failure" (the name is valid for ``Workflow.task`` and
    for registration), but the request carries the on_failure task's details under the
    same key of ``parents`` ({"failure": {...}}, see ``dag._fail``). A child of a task
    named "failure" therefore sees ``ctx.failure`` set to its parent's view, as if the
    workflow had failed. Fix: reserve the name (refuse it in ``Workflow.task`` and in
    ``check_graph``) or carry the failure in its own request field."""
    wf = Workflow("names")
    try:
        @wf.task("failure")
        async def first(ctx: Context) -> int:
            return 1
    except ValueError as exc:  # reserving the name is a fine fix
        assert "failure" in str(exc)
        return

    @wf.task(parents=[first])
    async def second(ctx: Context) -> Any:
        return {"parent": ctx.parent(first), "failure": ctx.failure}

    answer = await run_task(wf, "second", {"failure": done(1)})
    assert answer["output"]["parent"] == 1
    assert answer["output"]["failure"] is None


# -- Handler.handle ----------------------------------------------------------------------------


def _handler(wf: Workflow) -> Handler:
    return Handler([wf], p.Signer(KEY), "unit-app")


async def _handle(h: Handler, msg: Mapping[str, Any]) -> dict[str, Any]:
    body = p.dumps(msg)
    resp = await h.handle(body, p.Signer(KEY).sign(body))
    assert resp.status == 200
    p.Signer(KEY).verify(resp.body, resp.headers)  # signed with the app's key
    answer = p.parse_answer(json.loads(resp.body), msg["call_id"])
    return dict(answer)


async def test_handle_answers_an_unknown_task_with_function_not_found() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await _handle(_handler(wf), task_request(wf, "nope", {}, call_id="c-nope"))
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "FunctionNotFound"
    assert answer["error"]["retriable"] is False
    assert "'pipeline'" in answer["error"]["message"]
    assert "task 'nope'" in answer["error"]["message"]
    assert answer["steps"] == [] and answer["events"] == []
    assert calls == {}


async def test_handle_answers_a_workflow_request_without_a_task_with_function_not_found(
) -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    answer = await _handle(_handler(wf), task_request(wf, None))
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "FunctionNotFound"
    assert calls == {}


async def test_handle_runs_a_task_and_the_on_failure_task() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    h = _handler(wf)
    answer = await _handle(h, task_request(wf, "extract", {}, input=[1]))
    assert answer["status"] == "complete" and answer["output"] == [1]
    failure = {"task": "extract", "status": "failed"}
    answer = await _handle(h, task_request(wf, "alert", {}, failure=failure,
                                                call_id="call-alert-1"))
    assert answer["output"] == {"failure": failure, "task": "alert"}
    assert calls == {"extract": 1, "alert": 1}


async def test_handle_introspection_lists_the_workflow_config() -> None:
    calls: dict[str, int] = {}
    wf, *_ = _pipeline(calls)
    body = p.dumps(p.introspect_request())
    resp = await _handler(wf).handle(body, p.Signer(KEY).sign(body))
    assert resp.status == 200
    assert json.loads(resp.body)["functions"] == [wf.config()]


# -- the trigger API binding -------------------------------------------------------------------


def test_client_workflow_binds_the_client() -> None:
    client = Client(orchestrator_url="http://orchestrator.invalid:1", app_id="unit")
    wf = client.workflow("bound", triggers=["x.y"], retry=Retry(max_attempts=2))
    assert isinstance(wf, WorkflowClass)
    assert wf.client is client
    assert wf.name == "bound" and wf.triggers == ["x.y"] and wf.retry.max_attempts == 2
    assert wf.sync._r is wf  # the blocking facade goes through the same runnable


def test_client_task_binds_the_client() -> None:
    client = Client(orchestrator_url="http://orchestrator.invalid:1", app_id="unit")

    @client.task("bound-task", triggers=["a.b"])
    async def bound(ctx: Context, value: Any) -> Any:
        return value

    assert isinstance(bound, Function)
    assert bound.client is client
    assert bound.name == "bound-task" and bound.triggers == ["a.b"]


def test_two_clients_bind_independently() -> None:
    c1, c2 = Client(app_id="one"), Client(app_id="two")
    w1, w2 = c1.workflow("w1"), c2.workflow("w2")
    assert w1.client is c1 and w2.client is c2
    assert w1.bind(c2) is w1 and w1.client is c2  # rebinding


def test_an_unbound_workflow_makes_one_client_lazily() -> None:
    wf = Workflow("unbound")
    first = wf.client
    assert isinstance(first, Client)
    assert wf.client is first  # made once, then kept


def test_an_unbound_runnable_triggers_through_the_default_factory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Client] = []

    def factory() -> Client:
        made.append(Client(app_id="from-factory"))
        return made[-1]

    monkeypatch.setattr(function_mod, "_default_client", None)
    with pytest.raises(RuntimeError, match="bound to no client"):
        Workflow("orphan").client  # noqa: B018
    function_mod.set_default_client(factory)
    wf = Workflow("adopted")
    assert wf.client is made[0] and wf.client is made[0] and len(made) == 1
    assert Workflow("bound").bind(made[0]).client is made[0]
