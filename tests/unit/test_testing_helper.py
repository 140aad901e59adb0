"""``sdk.testing.run_local``: users' functions run in-process, with the real replay."""

from __future__ import annotations

from typing import Any

from examples.functions.orders import fulfil_order
from sdk import Context, task
from sdk.testing import run_local
from tests.apps import flows, testapp


async def test_a_chain_of_steps() -> None:
    run = await run_local(testapp.chain, 5)
    assert run.status == "completed" and run.output == 10
    assert [s["id"] for s in run.steps] == ["add", "add:1", "add:2", "add:3", "add:4"]
    assert run.calls == 1  # consecutive steps run in one call


async def test_sleeps_are_skipped_and_waits_answered_from_events() -> None:
    run = await run_local(testapp.waiter, {"key": "k"},
                          events=[{"name": "test.go", "data": {"key": "other"}},
                                  {"name": "test.go", "data": {"key": "k", "n": 1}}])
    assert run.output["event"]["data"] == {"key": "k", "n": 1}
    timed_out = await run_local(testapp.waiter, {"key": "nobody", "timeout": 5})
    assert timed_out.output == {"event": None}
    slept = await run_local(testapp.sleeper, 86400.0)
    assert slept.status == "completed" and slept.output["slept"] < 60
    assert [s["kind"] for s in slept.steps] == ["step", "sleep", "step"]


async def test_waits_match_events_as_the_orchestrator_does() -> None:
    @task("numbered-waiter")
    async def numbered_waiter(ctx: Context) -> Any:
        return await ctx.wait_for_event("test.n", match={"data.n": 1}, timeout=5)

    # JSON values compare as JSON: true and 1.0 are not 1 (Python's == says they are)
    run = await run_local(numbered_waiter, events=[{"name": "test.n", "data": {"n": True}},
                                                   {"name": "test.n", "data": {"n": 1.0}},
                                                   {"name": "test.n", "data": {"n": 1}}])
    assert run.output["data"] == {"n": 1} and type(run.output["data"]["n"]) is int


async def test_children_run_for_real_or_from_stubs() -> None:
    real = await run_local(testapp.fan_out, 4, functions=[testapp.double])
    assert real.output == {"sum": 2 * (0 + 1 + 2 + 3), "n": 4}
    stubbed = await run_local(testapp.fan_out, 3, children={"double": lambda x: 100})
    assert stubbed.output == {"sum": 300, "n": 3}
    failing = await run_local(testapp.fan_out_failing, functions=[testapp.double,
                                                                 testapp.always_fails])
    assert failing.output == {"failed": ["completed", "failed"]}


async def test_the_order_example_with_stubbed_notifications() -> None:
    order = {"order_id": "o-1", "amount_cents": 100, "customer": "ada",
             "notify": ["a@x", "b@x"]}
    run = await run_local(
        fulfil_order, order,
        events=[{"name": "shipment.delivered", "data": {"order_id": "o-1", "carrier": "ups"}}],
        children={"send-notification": lambda msg: {"to": msg["to"]}},
    )
    assert run.status == "completed"
    assert run.output["notified"] == ["a@x", "b@x"] and run.output["carrier"] == "ups"
    undelivered = await run_local(fulfil_order, order)
    assert undelivered.output["status"] == "not delivered"


async def test_retries_failures_and_sent_events() -> None:
    ok = await run_local(testapp.flaky, 2)
    assert ok.output == {"result": "ok after 3"} and ok.steps[0]["attempts"] == 3
    bad = await run_local(testapp.step_fails_for_good)
    assert bad.status == "failed" and bad.error is not None
    assert bad.error["type"] == "StepError"
    sent = await run_local(testapp.sender, "k")
    assert [e["name"] for e in sent.sent_events] == ["test.go"]


async def test_workflows_run_with_dag_semantics() -> None:
    run = await run_local(flows.diamond, 1)
    assert run.output["d"] == 2 * 2 + 2 * 3
    assert set(run.tasks) == {"a", "b", "c", "d"}
    branch = await run_local(flows.branching, {"amount": 5})
    assert branch.tasks["big"].status == "skipped"
    assert branch.tasks["after-big"].status == "skipped"
    assert branch.output["merge"]["skipped"] == ["big"]
    failed = await run_local(flows.failing)
    assert failed.status == "failed" and failed.error is not None
    assert failed.error["task"] == "boom"
    assert failed.tasks["report"].output["failure"]["task"] == "boom"


async def test_a_sync_function() -> None:
    @task("local-sync")
    def double_it(ctx: Any, x: int) -> int:
        return int(ctx.step.run("double", lambda: x * 2))

    assert (await run_local(double_it, 21)).output == 42


async def test_input_validation_fails_the_run() -> None:
    @task("typed-local", input_model=testapp.Typed)
    async def typed(ctx: Context, inp: testapp.Typed) -> str:
        return inp.name

    run = await run_local(typed, {"name": "x"})
    assert run.status == "failed" and run.error is not None
    assert run.error["type"] == "InputValidationError"
