"""``wait_for_event(..., lookback=)``: the SDK checks it and sends it on the wait op (async
and sync contexts, seconds or a timedelta), leaves it out when not given (the op an older
orchestrator knows), refuses a bad value with a ``UsageError``; the protocol's parser
refuses a bad one, and the orchestrator's invoker then fails the call with a clear
reason, as for any malformed op."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from typing import Any, cast

import httpx
import pytest
import respx

from orchestrator.engine.invoker import Failed, Invoker
from sdk import Context, SyncContext, task
from sdk import protocol as p
from sdk.handler import execute

CALL_ID = "call-1"
KEY = "unit-test-key"
URL = "http://app.test/api/durable"


@task("look-async")
async def look_async(ctx: Context, back: Any) -> Any:
    return await ctx.wait_for_event("look.go", match={"data.k": 1}, timeout=5,
                                    lookback=back)


@task("look-sync")
def look_sync(ctx: SyncContext, back: Any) -> Any:
    return ctx.wait_for_event("look.go", match={"data.k": 1}, lookback=back)


async def call(fn: Any, back: Any, memo: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    req = p.invoke_request(call_id=CALL_ID, function=fn.name, run_id="r1", attempt=1,
                           input=back, event=None,
                           memo=cast("list[p.MemoEntry]", memo or []), budget_ms=30_000)
    req = json.loads(p.dumps(req))
    answer = p.loads(p.dumps(await execute(fn, req, len(p.dumps(req)))))
    p.parse_answer(answer, CALL_ID)
    return answer  # type: ignore[no-any-return]


async def run_with(fn: Any, back: Any) -> dict[str, Any]:
    """Call ``fn`` with ``lookback=back`` given as is (a timedelta cannot be an input)."""
    @task(f"{fn.name}-direct")
    async def direct(ctx: Context) -> Any:
        return await ctx.wait_for_event("look.go", lookback=back)
    return await call(direct, None)


@pytest.mark.parametrize("fn", [look_async, look_sync], ids=["async", "sync"])
async def test_the_wait_op_carries_the_lookback(fn: Any) -> None:
    answer = await call(fn, 30)
    assert answer["status"] == "yield"
    op = answer["op"]
    assert op["op"] == "wait_event" and op["lookback"] == 30.0
    assert op["match"] == {"data.k": 1}


@pytest.mark.parametrize("fn", [look_async, look_sync], ids=["async", "sync"])
async def test_without_lookback_the_op_is_as_before(fn: Any) -> None:
    for back in (None, 0):
        op = (await call(fn, back))["op"]
        assert "lookback" not in op, op
        assert set(op) == {"op", "id", "seq", "name", "event", "match", "timeout_at"}


async def test_a_timedelta_is_seconds() -> None:
    op = (await run_with(look_async, timedelta(minutes=2)))["op"]
    assert op["lookback"] == 120.0


@pytest.mark.parametrize("back", [-1, p.MAX_LOOKBACK_S + 1, math.nan, math.inf, True, "60",
                                  timedelta(days=2)])
async def test_a_bad_lookback_is_a_usage_error(back: Any) -> None:
    answer = await run_with(look_async, back)
    assert answer["status"] == "error"
    assert answer["error"]["type"] == "UsageError"
    assert "lookback" in answer["error"]["message"]
    assert answer["error"]["retriable"] is False


async def test_a_recorded_wait_replays_whatever_the_lookback() -> None:
    memo = [{"id": "wait:look.go", "seq": 0, "name": "wait:look.go", "kind": "wait",
             "status": "completed", "output": {"id": "e1", "name": "look.go"}}]
    answer = await call(look_sync, 30, memo)
    assert answer["status"] == "complete"
    assert answer["output"] == {"id": "e1", "name": "look.go"}


def wait_op(**extra: Any) -> dict[str, Any]:
    return {"op": "wait_event", "id": "w", "seq": 0, "name": "w", "event": "e",
            "match": {}, "timeout_at": None, **extra}


@pytest.mark.parametrize("back", [0, 0.5, 60, p.MAX_LOOKBACK_S])
def test_the_parser_accepts_a_lookback_in_range(back: float) -> None:
    assert p.parse_op(wait_op(lookback=back))["lookback"] == back  # type: ignore[typeddict-item]


@pytest.mark.parametrize("back", [-0.1, p.MAX_LOOKBACK_S + 0.1, "60", True, [1], {}])
def test_the_parser_refuses_a_bad_lookback(back: Any) -> None:
    with pytest.raises(p.ProtocolError, match="lookback must be seconds in"):
        p.parse_op(wait_op(lookback=back))


@pytest.mark.respx(using="httpx")
async def test_the_orchestrator_fails_an_answer_with_a_bad_lookback(
    respx_mock: respx.MockRouter
) -> None:
    inv = Invoker(p.Signer(KEY), timeout=5.0)
    try:
        body = p.dumps({"v": p.VERSION, "call_id": CALL_ID, "status": "yield", "steps": [],
                        "events": [], "op": wait_op(lookback=-5)})
        respx_mock.post(URL).mock(return_value=httpx.Response(
            200, content=body, headers={"content-type": "application/json",
                                        **p.Signer(KEY).sign(body)}))
        outcome = await inv.invoke(URL, b"{}", CALL_ID)
    finally:
        await inv.close()
    assert isinstance(outcome, Failed)
    assert "malformed answer" in outcome.reason and "lookback" in outcome.reason
