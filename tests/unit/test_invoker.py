"""Unit tests of the orchestrator's invoker: delivery outcomes over mocked HTTP (respx)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from orchestrator.engine import invoker as invoker_mod
from orchestrator.engine.invoker import Delivered, Failed, Invoker, parse_retry_after
from sdk import protocol as p

# respx replaces the transport of any httpx client (the invoker's own is not httpcore)
pytestmark = pytest.mark.respx(using="httpx")

KEY = "shared-secret"
URL = "http://app.test/api/durable"
CALL_ID = "call-1"


@pytest.fixture
async def invoker() -> AsyncIterator[Invoker]:
    inv = Invoker(p.Signer(KEY), timeout=5.0)
    yield inv
    await inv.close()


def request_body(call_id: str = CALL_ID) -> bytes:
    return p.dumps(p.invoke_request(
        call_id=call_id, function="chain", run_id="run-1", attempt=1, input=3, event=None,
        memo=[], budget_ms=30_000,
    ))


def answer(call_id: str = CALL_ID, **over: Any) -> dict[str, Any]:
    a: dict[str, Any] = {
        "v": p.VERSION, "call_id": call_id, "status": "complete", "output": 6,
        "steps": [{"id": "add", "seq": 0, "name": "add", "kind": "step", "status": "completed",
                   "attempts": 1, "output": 6}],
        "events": [],
    }
    a.update(over)
    return a


def signed_response(body: bytes, key: str = KEY, status: int = 200,
                    now: float | None = None) -> httpx.Response:
    headers = {"content-type": "application/json", **p.Signer(key).sign(body, now=now)}
    return httpx.Response(status, content=body, headers=headers)


# -- delivered ---------------------------------------------------------------------------------


async def test_a_valid_signed_answer_is_delivered(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).mock(return_value=signed_response(p.dumps(answer())))
    body = request_body()
    outcome = await invoker.invoke(URL, body, CALL_ID)
    assert isinstance(outcome, Delivered)
    assert outcome.answer == answer()
    # what the app received: the body as given, signed with the shared key
    sent = route.calls.last.request
    assert sent.content == body
    assert sent.headers["content-type"] == "application/json"
    assert sent.headers[p.H_VERSION] == str(p.VERSION)
    p.Signer(KEY).verify(sent.content, sent.headers)


async def test_yield_and_error_answers_are_delivered(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    yielded = answer(status="yield", op={"op": "resume", "at": time.time()})
    errored = answer(status="error", error={"type": "RuntimeError", "message": "boom",
                                            "retriable": True})
    respx_mock.post(URL).mock(side_effect=[signed_response(p.dumps(yielded)),
                                           signed_response(p.dumps(errored))])
    first = await invoker.invoke(URL, request_body(), CALL_ID)
    second = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(first, Delivered) and first.answer["op"]["op"] == "resume"
    assert isinstance(second, Delivered) and second.answer["error"]["message"] == "boom"


async def test_an_answer_signed_with_the_fallback_key_is_delivered(
    respx_mock: respx.MockRouter,
) -> None:
    inv = Invoker(p.Signer("new-key", fallback=KEY))
    try:
        route = respx_mock.post(URL).mock(return_value=signed_response(p.dumps(answer())))
        outcome = await inv.invoke(URL, request_body(), CALL_ID)
        assert isinstance(outcome, Delivered)
        # requests are signed with the new (primary) key
        p.Signer("new-key").verify(route.calls.last.request.content,
                                   route.calls.last.request.headers)
    finally:
        await inv.close()


# -- HTTP errors -------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_5xx_answer_fails(
    invoker: Invoker, respx_mock: respx.MockRouter, status: int
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(status, text="upstream trouble"))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert f"HTTP {status}" in outcome.reason
    assert "upstream trouble" in outcome.reason
    assert outcome.retry_after is None


async def test_a_4xx_answer_fails(invoker: Invoker, respx_mock: respx.MockRouter) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(
        401, json={"error": {"code": "unauthorized", "message": "signature does not match"}}))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert "HTTP 401" in outcome.reason and "signature does not match" in outcome.reason


async def test_a_long_error_body_is_cut_in_the_reason(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(500, text="e" * 10_000))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason == "app answered HTTP 500: " + "e" * 300


@pytest.mark.parametrize(("header", "expected"), [("7", 7.0), ("0", 0.0), ("2.5", 2.5),
                                                  ("-3", 0.0)])
async def test_retry_after_in_seconds(
    invoker: Invoker, respx_mock: respx.MockRouter, header: str, expected: float
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(503, headers={"retry-after": header}))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.retry_after == expected


async def test_retry_after_as_an_http_date(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    when = datetime.now(UTC) + timedelta(seconds=120)
    header = email.utils.format_datetime(when, usegmt=True)  # "Wed, 21 Oct 2015 07:28:00 GMT"
    assert header.endswith("GMT")
    respx_mock.post(URL).mock(return_value=httpx.Response(503, headers={"Retry-After": header}))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.retry_after is not None
    assert 118.0 <= outcome.retry_after <= 120.5


async def test_retry_after_as_a_past_http_date_is_zero(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    header = "Wed, 21 Oct 2015 07:28:00 GMT"
    respx_mock.post(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": header}))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed) and "HTTP 429" in outcome.reason
    assert outcome.retry_after == 0.0


async def test_an_unparseable_retry_after_is_ignored(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(503, headers={"Retry-After": "soon"}))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.retry_after is None


def test_parse_retry_after() -> None:
    assert parse_retry_after(None) is None
    assert parse_retry_after("") is None
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after("not a date") is None
    future = email.utils.format_datetime(datetime.now(UTC) + timedelta(hours=1), usegmt=True)
    delay = parse_retry_after(future)
    assert delay is not None and 3598 <= delay <= 3600.5


# -- network errors ----------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout])
async def test_a_timeout_fails_as_a_timed_out_attempt(
    invoker: Invoker, respx_mock: respx.MockRouter, exc: type[Exception]
) -> None:
    route = respx_mock.post(URL).mock(side_effect=exc)
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason == "no answer within 5.0s"
    assert outcome.timed_out  # counts against the function's retry policy
    assert outcome.retry_after is None
    assert route.call_count == 1  # not retried: the app may be working on it


async def test_a_connect_timeout_is_a_delivery_failure(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ConnectTimeout)
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason == "could not connect within 5.0s"
    assert not outcome.timed_out  # nothing reached the app


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadError, httpx.WriteError])
async def test_a_connection_error_fails(
    invoker: Invoker, respx_mock: respx.MockRouter, exc: type[Exception]
) -> None:
    respx_mock.post(URL).mock(side_effect=exc)
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith(f"connection failed: {exc.__name__}")


async def test_a_protocol_error_is_a_failed_delivery_the_invoker_does_not_resend(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    # respx stands above any transport: this is what the invoker itself does when the
    # transport gives up. Re-sending on a dropped kept-alive connection is the transport's
    # (tests/unit/test_transport.py), not a second layer here.
    route = respx_mock.post(URL).mock(side_effect=[httpx.RemoteProtocolError,
                                                   signed_response(p.dumps(answer()))])
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("connection failed: RemoteProtocolError")
    assert not outcome.timed_out and not outcome.misconfigured
    assert route.call_count == 1


# -- answers that are refused ------------------------------------------------------------------


async def test_a_body_that_is_not_json_fails(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=signed_response(b"<html>oops</html>"))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("malformed")


async def test_a_body_that_is_not_utf8_fails(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=signed_response(b'{"v":1,"x":"\xff\xfe"}'))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("malformed")


async def test_an_unsigned_answer_is_discarded(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=answer()))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("answer discarded")
    assert "not signed" in outcome.reason


async def test_a_wrongly_signed_answer_is_discarded(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=signed_response(p.dumps(answer()), key="other"))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("answer discarded")
    assert "does not match" in outcome.reason


async def test_a_tampered_answer_is_discarded(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    good = signed_response(p.dumps(answer()))
    tampered = httpx.Response(200, content=p.dumps(answer(output=7)), headers=good.headers)
    respx_mock.post(URL).mock(return_value=tampered)
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed) and outcome.reason.startswith("answer discarded")


async def test_a_stale_answer_is_discarded(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    stale = signed_response(p.dumps(answer()), now=time.time() - 2 * p.MAX_CLOCK_SKEW_S)
    respx_mock.post(URL).mock(return_value=stale)
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert "clock skew" in outcome.reason


async def test_an_answer_for_another_call_fails(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=signed_response(p.dumps(answer("call-0"))))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("malformed")
    assert "not for this call" in outcome.reason


@pytest.mark.parametrize(
    "bad",
    [
        answer(status="finished"),
        answer(v=2),
        answer(status="yield"),  # no op
        answer(steps=[{"id": "", "seq": 0, "name": "a", "kind": "step"}]),
        [1, 2, 3],
    ],
)
async def test_an_answer_of_the_wrong_shape_fails(
    invoker: Invoker, respx_mock: respx.MockRouter, bad: Any
) -> None:
    respx_mock.post(URL).mock(return_value=signed_response(p.dumps(bad)))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert outcome.reason.startswith("malformed answer")


async def test_an_oversized_answer_fails(
    invoker: Invoker, respx_mock: respx.MockRouter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(invoker_mod.p, "MAX_ANSWER_BYTES", 100)
    body = p.dumps(answer(output="z" * 200))
    respx_mock.post(URL).mock(return_value=signed_response(body))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID)
    assert isinstance(outcome, Failed)
    assert f"answer of {len(body)} bytes exceeds 100" == outcome.reason


# -- the client pool ---------------------------------------------------------------------------


async def test_concurrent_calls_share_a_bounded_pool(respx_mock: respx.MockRouter) -> None:
    def answer_for(request: httpx.Request) -> httpx.Response:
        call_id = json.loads(request.content)["call_id"]
        return signed_response(p.dumps(answer(call_id)))

    respx_mock.post(URL).mock(side_effect=answer_for)
    inv = Invoker(p.Signer(KEY), pool_size=2)
    try:
        outcomes = await asyncio.gather(*(
            inv.invoke(URL, request_body(f"call-{i}"), f"call-{i}") for i in range(8)
        ))
        assert all(isinstance(o, Delivered) for o in outcomes)
        assert [o.answer["call_id"] for o in outcomes if isinstance(o, Delivered)] == [
            f"call-{i}" for i in range(8)
        ]
        # one pool per origin, and it never made more clients than its size
        assert list(inv.pool._pools) == ["http://app.test"]
        assert inv.pool.open_clients() <= 2
        # a second origin gets its own pool
        respx_mock.post("http://other.test/durable").mock(
            return_value=signed_response(p.dumps(answer())))
        assert isinstance(await inv.invoke("http://other.test/durable", request_body(),
                                           CALL_ID), Delivered)
        assert sorted(inv.pool._pools) == ["http://app.test", "http://other.test"]
    finally:
        await inv.close()
    assert inv.pool.open_clients() == 0


# -- exchange (introspection) ------------------------------------------------------------------


INTROSPECTION = {
    "v": p.VERSION, "app_id": "unit-app", "sdk": "durable-python/0.1.0",
    "functions": [{"name": "chain", "kind": "task", "triggers": [], "retry": {}}],
}


async def test_exchange_returns_a_verified_introspection(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    route = respx_mock.post(URL).mock(return_value=signed_response(p.dumps(INTROSPECTION)))
    msg = await invoker.exchange(URL, p.introspect_request())
    assert msg == INTROSPECTION
    sent = route.calls.last.request
    assert json.loads(sent.content) == {"v": p.VERSION, "kind": "introspect"}
    p.Signer(KEY).verify(sent.content, sent.headers)


async def test_exchange_refuses_a_non_200(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(404, text="no such route"))
    with pytest.raises(p.ProtocolError, match="HTTP 404"):
        await invoker.exchange(URL, p.introspect_request())


async def test_exchange_refuses_an_unsigned_answer(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=httpx.Response(200, json=INTROSPECTION))
    with pytest.raises(p.SignatureError):
        await invoker.exchange(URL, p.introspect_request())


async def test_exchange_refuses_a_wrongly_signed_answer(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(return_value=signed_response(p.dumps(INTROSPECTION), key="x"))
    with pytest.raises(p.SignatureError):
        await invoker.exchange(URL, p.introspect_request())


async def test_exchange_refuses_another_protocol_version(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        return_value=signed_response(p.dumps({**INTROSPECTION, "v": 2})))
    with pytest.raises(p.ProtocolError, match="version"):
        await invoker.exchange(URL, p.introspect_request())


async def test_exchange_raises_network_errors(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(side_effect=httpx.ConnectError)
    with pytest.raises(httpx.ConnectError):
        await invoker.exchange(URL, p.introspect_request())


# -- per-app key sets --------------------------------------------------------------------------


async def test_a_request_is_signed_with_the_apps_key_and_its_answer_verified_with_it(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    own = invoker.signer_for("key-of-app-a", "old-key-of-app-a")
    assert invoker.signer_for("key-of-app-a", "old-key-of-app-a") is own  # cached
    assert invoker.signer_for(None, None) is invoker.signer  # no key: the orchestrator's
    route = respx_mock.post(URL).mock(
        return_value=signed_response(p.dumps(answer()), key="old-key-of-app-a"))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID, own)
    assert isinstance(outcome, Delivered)  # the fallback verifies
    sent = route.calls.last.request
    p.Signer("key-of-app-a").verify(sent.content, sent.headers)  # signed with the primary
    with pytest.raises(p.SignatureError):
        p.Signer(KEY).verify(sent.content, sent.headers)


async def test_another_apps_key_cannot_sign_an_answer(
    invoker: Invoker, respx_mock: respx.MockRouter
) -> None:
    respx_mock.post(URL).mock(
        return_value=signed_response(p.dumps(answer()), key="key-of-app-b"))
    outcome = await invoker.invoke(URL, request_body(), CALL_ID,
                                   invoker.signer_for("key-of-app-a", None))
    assert isinstance(outcome, Failed) and outcome.misconfigured
    assert "answer discarded" in outcome.reason
