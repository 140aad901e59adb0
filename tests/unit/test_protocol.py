"""Unit tests of the wire protocol: signing, key rotation, message shapes, event matching."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import pytest

from sdk import protocol as p

NOW = 1_700_000_000.0
BODY = b'{"v":1,"kind":"invoke","call_id":"c-1"}'


# -- signing ---------------------------------------------------------------------------------


def test_signed_body_verifies() -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW)
    assert headers[p.H_TIMESTAMP] == str(int(NOW))
    assert headers[p.H_VERSION] == str(p.VERSION)
    assert headers[p.H_SIGNATURE]
    signer.verify(BODY, headers, now=NOW)  # does not raise
    # another Signer holding the same key (the other side of the wire) agrees
    p.Signer("secret").verify(BODY, headers, now=NOW + 10)


def test_sign_uses_the_current_time_by_default() -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY)
    assert abs(int(headers[p.H_TIMESTAMP]) - time.time()) < 5
    signer.verify(BODY, headers)


def test_signature_is_deterministic_and_bound_to_the_timestamp() -> None:
    signer = p.Signer("secret")
    assert signer.sign(BODY, now=NOW) == signer.sign(BODY, now=NOW + 0.9)  # same second
    assert signer.sign(BODY, now=NOW)[p.H_SIGNATURE] != signer.sign(BODY, now=NOW + 1)[
        p.H_SIGNATURE
    ]


def test_an_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="key is required"):
        p.Signer("")


def test_forged_signature_with_a_wrong_key_is_refused() -> None:
    forged = p.Signer("not-the-secret").sign(BODY, now=NOW)
    with pytest.raises(p.SignatureError, match="does not match"):
        p.Signer("secret").verify(BODY, forged, now=NOW)


def test_garbage_signature_is_refused() -> None:
    headers = p.Signer("secret").sign(BODY, now=NOW)
    headers[p.H_SIGNATURE] = "!!not base64 at all!!"
    with pytest.raises(p.SignatureError, match="malformed signature"):
        p.Signer("secret").verify(BODY, headers, now=NOW)


@pytest.mark.parametrize(
    "tampered",
    [
        BODY.replace(b"c-1", b"c-2"),
        BODY + b" ",
        b"",
    ],
)
def test_tampered_body_is_refused(tampered: bytes) -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW)
    with pytest.raises(p.SignatureError, match="does not match"):
        signer.verify(tampered, headers, now=NOW)


def test_tampered_timestamp_is_refused() -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW)
    headers[p.H_TIMESTAMP] = str(int(NOW) + 1)  # still within the skew, but not signed
    with pytest.raises(p.SignatureError, match="does not match"):
        signer.verify(BODY, headers, now=NOW)


@pytest.mark.parametrize("missing", [p.H_SIGNATURE, p.H_TIMESTAMP])
def test_missing_header_is_refused(missing: str) -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW)
    del headers[missing]
    with pytest.raises(p.SignatureError, match="not signed"):
        signer.verify(BODY, headers, now=NOW)


def test_no_headers_at_all_is_refused() -> None:
    with pytest.raises(p.SignatureError, match="not signed"):
        p.Signer("secret").verify(BODY, {}, now=NOW)


def test_empty_header_values_are_refused() -> None:
    with pytest.raises(p.SignatureError, match="not signed"):
        p.Signer("secret").verify(BODY, {p.H_TIMESTAMP: "", p.H_SIGNATURE: ""}, now=NOW)


@pytest.mark.parametrize("ts", ["yesterday", "1.7e9", "1700000000.5", "0x10", "9" * 400,
                                "-" + "9" * 400, "-1", "+1700000000"])
def test_malformed_timestamp_is_refused(ts: str) -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW)
    headers[p.H_TIMESTAMP] = ts
    with pytest.raises(p.SignatureError, match="malformed"):
        signer.verify(BODY, headers, now=NOW)


@pytest.mark.parametrize("age", [p.MAX_CLOCK_SKEW_S + 1, 3600.0, 86400.0 * 365])
def test_stale_timestamp_is_refused(age: float) -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW - age)  # correctly signed, but long ago (a replay)
    with pytest.raises(p.SignatureError, match="clock skew"):
        signer.verify(BODY, headers, now=NOW)


@pytest.mark.parametrize("ahead", [p.MAX_CLOCK_SKEW_S + 1, 3600.0])
def test_timestamp_too_far_in_the_future_is_refused(ahead: float) -> None:
    signer = p.Signer("secret")
    headers = signer.sign(BODY, now=NOW + ahead)
    with pytest.raises(p.SignatureError, match="clock skew"):
        signer.verify(BODY, headers, now=NOW)


@pytest.mark.parametrize("offset", [-(p.MAX_CLOCK_SKEW_S - 1), p.MAX_CLOCK_SKEW_S - 1])
def test_timestamp_within_the_skew_is_accepted(offset: float) -> None:
    signer = p.Signer("secret")
    signer.verify(BODY, signer.sign(BODY, now=NOW + offset), now=NOW)


def test_custom_max_skew() -> None:
    strict = p.Signer("secret", max_skew=5)
    headers = strict.sign(BODY, now=NOW - 10)
    with pytest.raises(p.SignatureError, match="clock skew"):
        strict.verify(BODY, headers, now=NOW)
    p.Signer("secret").verify(BODY, headers, now=NOW)  # the default skew allows it


# -- key rotation ------------------------------------------------------------------------------


def test_message_signed_with_the_old_key_verifies_on_new_with_fallback_old() -> None:
    old_headers = p.Signer("old-key").sign(BODY, now=NOW)
    p.Signer("new-key", fallback="old-key").verify(BODY, old_headers, now=NOW)


def test_new_with_fallback_old_signs_with_the_new_key() -> None:
    headers = p.Signer("new-key", fallback="old-key").sign(BODY, now=NOW)
    assert headers == p.Signer("new-key").sign(BODY, now=NOW)
    p.Signer("new-key").verify(BODY, headers, now=NOW)
    with pytest.raises(p.SignatureError):
        p.Signer("old-key").verify(BODY, headers, now=NOW)


def test_rotation_still_refuses_unrelated_keys() -> None:
    rotating = p.Signer("new-key", fallback="old-key")
    with pytest.raises(p.SignatureError):
        rotating.verify(BODY, p.Signer("other-key").sign(BODY, now=NOW), now=NOW)
    # and the new key alone does not accept what only the old key signed
    with pytest.raises(p.SignatureError):
        p.Signer("new-key").verify(BODY, p.Signer("old-key").sign(BODY, now=NOW), now=NOW)


def test_fallback_does_not_bypass_the_timestamp_check() -> None:
    stale = p.Signer("old-key").sign(BODY, now=NOW - 2 * p.MAX_CLOCK_SKEW_S)
    with pytest.raises(p.SignatureError, match="clock skew"):
        p.Signer("new-key", fallback="old-key").verify(BODY, stale, now=NOW)


# -- JSON ----------------------------------------------------------------------------------------


def test_dumps_is_compact_utf8_and_refuses_non_json() -> None:
    assert p.dumps({"a": [1, 2], "b": "é"}) == '{"a":[1,2],"b":"é"}'.encode()
    assert p.loads(p.dumps({"x": None})) == {"x": None}
    with pytest.raises(ValueError):
        p.dumps(float("nan"))
    with pytest.raises(TypeError):
        p.dumps({"x": object()})


# -- requests --------------------------------------------------------------------------------


def good_request(**over: Any) -> dict[str, Any]:
    req = p.invoke_request(
        call_id="call-1", function="chain", run_id="run-1", attempt=1, input={"n": 3},
        event=None, memo=[], budget_ms=30_000,
    )
    req.update(over)
    return req


def wire(msg: Any) -> Any:
    """What the other side decodes."""
    return json.loads(p.dumps(msg))


def test_invoke_request_shape() -> None:
    req = p.invoke_request(
        call_id="c", function="f", run_id="r", attempt=2, input=[1], event={"name": "e"},
        memo=({"id": "a"},), budget_ms=5, parent_id="parent",
    )
    assert req == {
        "v": p.VERSION, "kind": "invoke", "call_id": "c", "function": "f",
        "run": {"id": "r", "attempt": 2, "parent_id": "parent"}, "input": [1],
        "event": {"name": "e"}, "memo": [{"id": "a"}], "budget_ms": 5,
    }


def test_parse_request_accepts_good_messages() -> None:
    req = wire(good_request())
    assert p.parse_request(req) is req
    intro = wire(p.introspect_request())
    assert p.parse_request(intro) is intro


def _without(d: dict[str, Any], key: str) -> dict[str, Any]:
    d = copy.deepcopy(d)
    del d[key]
    return d


@pytest.mark.parametrize(
    ("msg", "what"),
    [
        ([1, 2], "JSON object"),
        ("invoke", "JSON object"),
        (good_request(v=2), "version 2"),
        (good_request(v="1"), "version '1'"),
        (_without(good_request(), "v"), "version None"),
        (good_request(kind="explode"), "unknown request kind"),
        (_without(good_request(), "kind"), "unknown request kind"),
        (good_request(function=7), "function"),
        (_without(good_request(), "call_id"), "call_id"),
        (good_request(call_id=None), "call_id"),
        (good_request(run="run-1"), "run.id"),
        (good_request(run={"attempt": 1}), "run.id"),
        (good_request(run={"id": "r", "attempt": "1"}), "attempt"),
        (good_request(memo={}), "memo"),
        (good_request(budget_ms="30s"), "budget_ms"),
        (_without(good_request(), "budget_ms"), "budget_ms"),
        ({"v": 2, "kind": "introspect"}, "version"),
    ],
)
def test_parse_request_refuses_bad_messages(msg: Any, what: str) -> None:
    with pytest.raises(p.ProtocolError, match=what):
        p.parse_request(wire(msg))


# -- answers ------------------------------------------------------------------------------------


def step_entry(**over: Any) -> dict[str, Any]:
    e = {"id": "a", "seq": 0, "name": "a", "kind": "step", "status": "completed",
         "attempts": 1, "output": 1}
    e.update(over)
    return e


def answer(status: str = "complete", **over: Any) -> dict[str, Any]:
    a: dict[str, Any] = {"v": p.VERSION, "call_id": "call-1", "status": status,
                         "steps": [step_entry()], "events": []}
    a.update(over)
    return a


GOOD_ANSWERS = [
    answer(output={"ok": True}),
    answer(steps=[], events=[{"id": "e1", "name": "order.paid", "data": {}}]),
    {"v": p.VERSION, "call_id": "call-1", "status": "complete"},  # steps/events optional
    answer("yield", op={"op": "sleep", "id": "sleep", "seq": 1, "name": "sleep",
                        "until": NOW}),
    answer("yield", op={"op": "sleep", "id": "sleep", "seq": 1, "name": "sleep",
                        "until": int(NOW)}),
    answer("yield", op={"op": "wait_event", "id": "w", "seq": 1, "name": "w",
                        "event": "order.paid", "match": {"data.id": 1}, "timeout_at": None}),
    answer("yield", op={"op": "wait_event", "id": "w", "seq": 1, "name": "w", "event": "x"}),
    answer("yield", op={"op": "spawn", "id": "kids", "seq": 1, "name": "kids",
                        "children": [{"function": "double", "input": 2}], "wait": True}),
    answer("yield", op={"op": "resume", "at": NOW}),
    answer("error", error={"type": "RuntimeError", "message": "boom", "retriable": True}),
    answer(steps=[step_entry(kind=k, id=k, seq=i) for i, k in enumerate(p.MemoKind)]),
]


@pytest.mark.parametrize("msg", GOOD_ANSWERS)
def test_parse_answer_accepts_good_messages(msg: dict[str, Any]) -> None:
    decoded = wire(msg)
    assert p.parse_answer(decoded, "call-1") is decoded


def _memo_without(key: str) -> dict[str, Any]:
    return _without(step_entry(), key)


BAD_ANSWERS = [
    pytest.param("complete", "JSON object", id="not-an-object"),
    pytest.param(answer(v=0), "version", id="wrong-version"),
    pytest.param(_without(answer(), "v"), "version", id="no-version"),
    pytest.param(answer(call_id="call-2"), "not for this call", id="wrong-call-id"),
    pytest.param(_without(answer(), "call_id"), "not for this call", id="no-call-id"),
    pytest.param(answer("done"), "unknown answer status", id="unknown-status"),
    pytest.param(_without(answer(), "status"), "unknown answer status", id="no-status"),
    pytest.param(answer(steps={"a": 1}), "steps must be a list", id="steps-not-list"),
    pytest.param(answer(events={"name": "x"}), "events must be a list", id="events-not-list"),
    pytest.param(answer(events=[{"data": {}}]), "answer event", id="event-without-name"),
    pytest.param(answer(events=["x"]), "answer event", id="event-not-object"),
    # bad memo entries
    pytest.param(answer(steps=["a"]), "memo entry must be an object", id="memo-not-object"),
    pytest.param(answer(steps=[_memo_without("id")]), "id", id="memo-no-id"),
    pytest.param(answer(steps=[step_entry(id="")]), "id", id="memo-empty-id"),
    pytest.param(answer(steps=[step_entry(id=3)]), "id", id="memo-int-id"),
    pytest.param(answer(steps=[step_entry(seq="0")]), "seq", id="memo-str-seq"),
    pytest.param(answer(steps=[_memo_without("seq")]), "seq", id="memo-no-seq"),
    pytest.param(answer(steps=[step_entry(kind="task")]), "unknown memo kind", id="memo-kind"),
    pytest.param(answer(steps=[step_entry(name=None)]), "name", id="memo-no-name"),
    pytest.param(answer(steps=[step_entry(), step_entry(seq=None)]), "seq",
                 id="second-memo-entry-bad"),
    # bad ops
    pytest.param(answer("yield"), "op is invalid", id="yield-without-op"),
    pytest.param(answer("yield", op="sleep"), "op is invalid", id="op-not-object"),
    pytest.param(answer("yield", op={"op": "explode"}), "op is invalid", id="unknown-op"),
    pytest.param(answer("yield", op={"op": "sleep", "seq": 1, "name": "s", "until": NOW}),
                 "op.id", id="sleep-no-id"),
    pytest.param(answer("yield", op={"op": "sleep", "id": "s", "name": "s", "until": NOW}),
                 "op.seq", id="sleep-no-seq"),
    pytest.param(answer("yield", op={"op": "sleep", "id": "s", "seq": 1, "until": "soon"}),
                 "until", id="sleep-bad-until"),
    pytest.param(answer("yield", op={"op": "wait_event", "id": "w", "seq": 1}),
                 "event name", id="wait-no-event"),
    pytest.param(answer("yield", op={"op": "wait_event", "id": "w", "seq": 1, "event": "e",
                                     "match": [["data.id", 1]]}),
                 "match", id="wait-match-not-object"),
    pytest.param(answer("yield", op={"op": "spawn", "id": "k", "seq": 1}),
                 "children", id="spawn-no-children"),
    pytest.param(answer("yield", op={"op": "spawn", "id": "k", "seq": 1,
                                     "children": [{"input": 1}]}),
                 "function", id="spawn-child-no-function"),
    # bad errors
    pytest.param(answer("error"), "error", id="error-missing"),
    pytest.param(answer("error", error={"type": "X"}), "error", id="error-no-message"),
]


@pytest.mark.parametrize(("msg", "what"), BAD_ANSWERS)
def test_parse_answer_refuses_bad_messages(msg: Any, what: str) -> None:
    with pytest.raises(p.ProtocolError, match=what):
        p.parse_answer(wire(msg), "call-1")


def test_protocol_error_is_a_value_error() -> None:
    # callers catch (ValueError, ProtocolError) together for JSON and shape errors
    assert issubclass(p.ProtocolError, ValueError)


def test_error_body_shape() -> None:
    assert p.error_body("X", "m") == {"type": "X", "message": "m", "retriable": True,
                                      "retry_after_ms": None}
    assert p.error_body("X", "m", retriable=False, retry_after_ms=5)["retry_after_ms"] == 5


# -- event matching ----------------------------------------------------------------------------

EVENT = {
    "id": "evt-1",
    "name": "order.paid",
    "data": {"order": {"id": 42, "total": 9.5, "paid": True, "note": None}, "user": "ann"},
}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("name", "order.paid"),
        ("data.user", "ann"),
        ("data.order.id", 42),
        ("data.order.paid", True),
        ("data.order.note", None),  # present but null is not missing
        ("data.order", EVENT["data"]["order"]),
    ],
)
def test_lookup_finds_dotted_paths(path: str, value: Any) -> None:
    assert p.lookup(EVENT, path) == value
    assert p.lookup(EVENT, path) is not p.MISSING


@pytest.mark.parametrize(
    "path",
    ["data.customer", "data.order.id.more", "data.user.0", "nope", "data..order", ""],
)
def test_lookup_missing_paths(path: str) -> None:
    assert p.lookup(EVENT, path) is p.MISSING
    assert repr(p.MISSING) == "MISSING"


def test_lookup_does_not_index_lists() -> None:
    assert p.lookup({"a": [{"b": 1}]}, "a.0.b") is p.MISSING


def test_match_fields_is_sorted_and_canonical() -> None:
    assert p.match_fields({"data.z": 1, "data.a": 2}) == "data.a,data.z"
    assert p.match_fields({}) == ""


def test_match_key_is_independent_of_key_order() -> None:
    a = p.match_key("order.paid", {"data.order.id": 42, "data.user": "ann"})
    b = p.match_key("order.paid", {"data.user": "ann", "data.order.id": 42})
    assert a == b
    assert len(a) == 32 and int(a, 16) >= 0


def test_match_key_distinguishes_name_paths_and_values() -> None:
    base = p.match_key("order.paid", {"data.order.id": 42})
    assert p.match_key("order.shipped", {"data.order.id": 42}) != base
    assert p.match_key("order.paid", {"data.order.id": 43}) != base
    assert p.match_key("order.paid", {"data.order.id": "42"}) != base
    assert p.match_key("order.paid", {"data.id": 42}) != base
    assert p.match_key("order.paid", {}) != base


def test_event_match_key_equals_the_key_of_a_matching_wait() -> None:
    match = {"data.order.id": 42, "data.user": "ann"}
    wait_key = p.match_key("order.paid", match)
    assert p.event_match_key(EVENT, p.match_fields(match)) == wait_key


def test_event_with_other_values_has_another_key() -> None:
    match = {"data.order.id": 41}
    assert p.event_match_key(EVENT, p.match_fields(match)) != p.match_key("order.paid", match)


def test_event_missing_a_matched_path_has_no_key() -> None:
    assert p.event_match_key(EVENT, "data.order.id,data.customer") is None
    assert p.event_match_key({"name": "order.paid"}, "data.order.id") is None


def test_empty_match_keys_on_the_event_name_only() -> None:
    key = p.event_match_key(EVENT, p.match_fields({}))
    assert key == p.match_key("order.paid", {})
    assert key == p.event_match_key({"name": "order.paid", "data": {}}, "")
    assert key != p.event_match_key({"name": "order.refunded"}, "")


def test_match_key_survives_the_wire() -> None:
    """The key an app's wait has equals the key the orchestrator computes after JSON."""
    match = {"data.order.id": 42}
    decoded = wire({"event": "order.paid", "match": match})
    assert p.match_key(decoded["event"], decoded["match"]) == p.match_key("order.paid", match)
    assert p.event_match_key(wire(EVENT), p.match_fields(decoded["match"])) == p.match_key(
        "order.paid", match
    )


# -- dumps_value: the JSON values the orchestrator takes -------------------------------------


def _nested(depth: int) -> object:
    v: object = 1
    for _ in range(depth):
        v = {"a": [v]} if depth % 2 else [v]
    return v


def test_dumps_value_refuses_what_the_api_refuses() -> None:
    assert p.dumps_value(_nested(p.MAX_JSON_DEPTH)) == p.dumps(_nested(p.MAX_JSON_DEPTH))
    for bad in (_nested(p.MAX_JSON_DEPTH + 1), _nested(5000), {"x": float("nan")},
                [float("inf")], {"s": "\udc00"}):
        with pytest.raises(ValueError):
            p.dumps_value(bad)
    # many brackets, little depth: accepted (the depth walk only runs when needed)
    wide = [[{"k": []} for _ in range(100)]]
    assert p.dumps_value(wide) == p.dumps(wide)
    assert p.json_problem(wide) is None
    assert p.json_problem(_nested(p.MAX_JSON_DEPTH + 1)) == "nests deeper than 64 levels"


# -- builders round-trip through the parsers ----------------------------------------------------



def test_memo_entry_leaves_out_what_is_not_given() -> None:
    assert p.memo_entry("a", 0, "a", p.MemoKind.SLEEP) == {
        "id": "a", "seq": 0, "name": "a", "kind": "sleep", "status": "completed"}
    full = p.memo_entry("a:1", 3, "a", p.MemoKind.STEP, p.StepStatus.FAILED, attempts=2,
                        output=None, error=p.error_info("E", "m", "tb"), started_at=1.0,
                        ended_at=2.0)
    assert full == {"id": "a:1", "seq": 3, "name": "a", "kind": "step", "status": "failed",
                    "attempts": 2, "output": None, "error": {"type": "E", "message": "m",
                                                             "stack": "tb"},
                    "started_at": 1.0, "ended_at": 2.0}
    assert "output" in full  # a JSON null is an output; MISSING (the default) is none


@pytest.mark.parametrize("kind", list(p.MemoKind))
def test_memo_entries_round_trip(kind: p.MemoKind) -> None:
    e = p.memo_entry("x", 1, "x", kind, output=[1], attempts=0)
    decoded = wire(e)
    assert p.parse_memo_entry(decoded) is decoded
    assert decoded == e


OPS: list[p.AnyOp] = [
    p.sleep_op("nap", 1, "nap", NOW),
    p.wait_event_op("w", 2, "w", "order.paid", {"data.id": 1}, None),
    p.wait_event_op("w", 2, "w", "order.paid", {}, NOW + 5),
    p.spawn_op("kids", 3, "kids", [p.child_spec("double", 2), p.child_spec("f", None)], True),
    p.spawn_op("bg", 4, "bg", [], False),
    p.resume_op(NOW),
]


@pytest.mark.parametrize("op", OPS, ids=lambda op: str(op["op"]))
def test_ops_round_trip_through_a_yield_answer(op: p.AnyOp) -> None:
    steps = [p.memo_entry("a", 0, "a", p.MemoKind.STEP, attempts=1, output=1)]
    events = [p.answer_event("e1", "order.paid", {"id": 1})]
    msg = p.answer_yield("call-1", steps, events, op)
    decoded = wire(msg)
    a = p.parse_answer(decoded, "call-1")
    assert a is decoded and a == msg
    assert a["status"] == p.Status.YIELD
    assert a["op"] == op and p.parse_op(wire(op)) == op


def test_sleep_op_shape() -> None:
    assert p.sleep_op("s", 1, "n", NOW) == {"op": "sleep", "id": "s", "seq": 1, "name": "n",
                                             "until": NOW}
    assert p.resume_op(NOW) == {"op": "resume", "at": NOW}


def test_complete_and_error_answers_round_trip() -> None:
    done = p.answer_complete("call-1", [], [], {"ok": True})
    assert done == {"v": p.VERSION, "call_id": "call-1", "status": "complete", "steps": [],
                    "events": [], "output": {"ok": True}}  # no "skipped" unless true
    assert p.parse_answer(wire(done), "call-1") == done
    skipped = p.answer_complete("call-1", [], [], None, skipped=True)
    assert p.parse_answer(wire(skipped), "call-1")["skipped"] is True  # type: ignore[typeddict-item]
    err = p.answer_error("call-1", [], [], p.error_body("X", "m", retriable=False))
    assert p.parse_answer(wire(err), "call-1") == err
    assert err["error"] == {"type": "X", "message": "m", "retriable": False,
                            "retry_after_ms": None}


def test_error_body_can_leave_out_retry_after_and_carry_a_stack() -> None:
    e = p.error_body("X", "m", retriable=False, retry_after_ms=p.MISSING, stack="tb")
    assert e == {"type": "X", "message": "m", "retriable": False, "stack": "tb"}
    assert p.error_info("X", "m") == {"type": "X", "message": "m"}


def test_requests_round_trip() -> None:
    memo = [p.memo_entry("a", 0, "a", p.MemoKind.STEP, attempts=1, output={"n": 1})]
    req = p.invoke_request(
        call_id="c", function="wf", run_id="r", attempt=0, input=None, event=None, memo=memo,
        budget_ms=5, task="load", parents={"extract": p.parent_result("completed", output=3),
                                           "maybe": p.parent_result("skipped")},
        failure=p.task_failure("extract", "failed", error={"type": "E", "message": "m"}))
    decoded = wire(req)
    parsed = p.parse_request(decoded)
    assert parsed is decoded and parsed == req
    assert parsed["kind"] == p.Kind.INVOKE and parsed["memo"] == memo
    assert parsed["parents"] == {"extract": {"status": "completed", "output": 3},
                                 "maybe": {"status": "skipped"}}
    assert parsed["failure"] == {"task": "extract", "status": "failed",
                                 "error": {"type": "E", "message": "m"}}
    intro = wire(p.introspect_request())
    assert p.parse_request(intro) == {"v": p.VERSION, "kind": "introspect"}


# -- each parser refuses each malformed shape ----------------------------------------------------


@pytest.mark.parametrize(
    ("entry", "what"),
    [
        ("a", "must be an object"),
        (_memo_without("id"), "id"),
        (step_entry(id=""), "id"),
        (step_entry(seq=1.5), "seq"),
        (step_entry(kind=None), "unknown memo kind"),
        (step_entry(name=1), "name"),
    ],
)
def test_parse_memo_entry_refuses(entry: Any, what: str) -> None:
    with pytest.raises(p.ProtocolError, match=what):
        p.parse_memo_entry(wire(entry))


@pytest.mark.parametrize(
    ("op", "what"),
    [
        (None, "op is invalid"),
        ({"op": "nap"}, "op is invalid"),
        ({"op": "sleep", "id": 1, "seq": 1, "until": NOW}, "op.id"),
        ({"op": "sleep", "id": "s", "seq": 1, "until": True}, "until"),
        ({"op": "sleep", "id": "s", "seq": 1, "until": 1e13}, "until"),
        ({"op": "resume", "at": -1}, "resume op"),
        ({"op": "wait_event", "id": "w", "seq": 1, "event": ""}, "event name"),
        ({"op": "wait_event", "id": "w", "seq": 1, "event": "e", "match": {"a,b": 1}},
         "dotted paths"),
        ({"op": "wait_event", "id": "w", "seq": 1, "event": "e", "timeout_at": "later"},
         "timeout_at"),
        ({"op": "spawn", "id": "k", "seq": 1, "children": ["double"]}, "function"),
    ],
)
def test_parse_op_refuses(op: Any, what: str) -> None:
    with pytest.raises(p.ProtocolError, match=what):
        p.parse_op(wire(op))


@pytest.mark.parametrize(
    ("event", "what"),
    [
        ("x", "needs a name"),
        ({"name": ""}, "needs a name"),
        ({"name": 3}, "needs a name"),
        ({"name": "e", "data": [1]}, "data must be an object"),
    ],
)
def test_parse_answer_event_refuses(event: Any, what: str) -> None:
    with pytest.raises(p.ProtocolError, match=what):
        p.parse_answer_event(wire(event))


def test_parse_request_refuses_a_bad_memo_entry_and_bad_workflow_fields() -> None:
    with pytest.raises(p.ProtocolError, match="memo entry id"):
        p.parse_request(wire(good_request(memo=[step_entry(id=None)])))
    with pytest.raises(p.ProtocolError, match=r"request\.task"):
        p.parse_request(wire(good_request(task=3)))
    with pytest.raises(p.ProtocolError, match="parents"):
        p.parse_request(wire(good_request(task="t", parents=[])))
    with pytest.raises(p.ProtocolError, match="failure"):
        p.parse_request(wire(good_request(task="t", failure="boom")))


def test_child_result_carries_an_output_or_an_error() -> None:
    assert p.child_result("r1", "double", "completed", output=4) == {
        "run_id": "r1", "function": "double", "status": "completed", "output": 4}
    assert p.child_result("r2", "double", "failed", error=None) == {
        "run_id": "r2", "function": "double", "status": "failed", "error": None}
    entry = p.memo_entry("kids", 0, "kids", p.MemoKind.CHILDREN,
                         output=[p.child_result("r1", "double", "completed", output=4)])
    assert p.parse_memo_entry(wire(entry)) == entry
