"""Unit tests of the request checks: ``epoch``, the run filter of a bulk body, unknown
fields, and the field names and messages of the 422 a ``ValidationError`` becomes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from orchestrator.api import parse
from orchestrator.api.bodies import BulkRunList, CancelRun, CancelRuns, CreateRun, Event
from orchestrator.api.fields import epoch, validated
from orchestrator.engine.engine import RunFilter
from orchestrator.errors import Invalid
from sdk import protocol as p

T0 = datetime(2024, 5, 1, 12, 30, tzinfo=UTC).timestamp()


def run_filter(body: dict[str, Any]) -> RunFilter:
    return parse.run_filter(validated(CancelRuns, body))


def refused(fn: Any, *args: Any, field: str, needle: str = "", **kw: Any) -> Invalid:
    with pytest.raises(Invalid) as info:
        fn(*args, **kw)
    err = info.value
    assert err.field == field, (err.field, err.message)
    assert err.status == 422
    assert needle in err.message, err.message
    return err


# -- epoch ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, T0, 1714566600.25, -5])
def test_epoch_numbers_are_epoch_seconds(value: float) -> None:
    got = epoch(value, "since")
    assert got == float(value)
    assert type(got) is float


@pytest.mark.parametrize("value", [
    "2024-05-01T12:30:00Z",
    "2024-05-01T12:30:00+00:00",
    "2024-05-01T14:30:00+02:00",
    "2024-05-01T07:30:00-05:00",
    "2024-05-01 12:30:00Z",
    "2024-05-01T12:30:00.000Z",
])
def test_epoch_iso_with_a_time_zone(value: str) -> None:
    assert epoch(value, "since") == T0


def test_epoch_iso_keeps_fractions() -> None:
    assert epoch("2024-05-01T12:30:00.250Z", "until") == T0 + 0.25


@pytest.mark.parametrize("value", ["2024-05-01T12:30:00", "2024-05-01"])
def test_epoch_refuses_a_naive_iso_time(value: str) -> None:
    err = refused(epoch, value, "since", field="since", needle="needs a time zone")
    assert "'since'" in err.message


@pytest.mark.parametrize("value", ["yesterday", "", "2024-13-01T00:00:00Z", "12:30Z",
                                   "1714566600"])
def test_epoch_refuses_garbage_strings(value: str) -> None:
    err = refused(epoch, value, "until", field="until", needle="not an ISO-8601 time")
    assert repr(value) in err.message


@pytest.mark.parametrize("value", [None, True, False, [T0], {"t": T0}])
def test_epoch_refuses_other_types(value: Any) -> None:
    refused(epoch, value, "at", field="at", needle="ISO-8601 time or epoch seconds")


# -- run_filter ----------------------------------------------------------------------------------


def test_run_filter_with_a_function_only() -> None:
    assert run_filter({"function": "charge"}) == RunFilter("charge", (), None, None, 1000)


def test_run_filter_status_as_a_string() -> None:
    f = run_filter({"status": "failed"})
    assert f.statuses == ("failed",)
    assert f.function is None and f.limit == 1000


def test_run_filter_status_as_a_list() -> None:
    f = run_filter({"status": ["failed", "timed_out", "cancelled"]})
    assert f.statuses == ("failed", "timed_out", "cancelled")


def test_run_filter_accepts_every_run_status() -> None:
    every = [s.value for s in p.RunStatus]
    assert run_filter({"status": every}).statuses == tuple(every)


@pytest.mark.parametrize("status", ["exploded", ["failed", "nope"], 3, None, {"s": "failed"},
                                    "FAILED"])
def test_run_filter_refuses_a_bad_status(status: Any) -> None:
    err = refused(run_filter, {"function": "f", "status": status}, field="status")
    assert "queued" in err.message and "timed_out" in err.message  # lists the choices


def test_run_filter_parses_since_and_until() -> None:
    f = run_filter({"since": "2024-05-01T12:30:00Z", "until": T0 + 60})
    assert f.since == T0
    assert f.until == T0 + 60
    assert f.function is None and f.statuses == ()


def test_run_filter_names_a_bad_since_or_until() -> None:
    refused(run_filter, {"since": "2024-05-01T12:30:00"}, field="since", needle="time zone")
    refused(run_filter, {"until": "soon"}, field="until", needle="ISO-8601")


def test_run_filter_null_since_and_until_are_absent() -> None:
    f = run_filter({"function": "f", "since": None, "until": None})
    assert f.since is None and f.until is None


@pytest.mark.parametrize("limit", [1, 500, 10_000])
def test_run_filter_limit_within_bounds(limit: int) -> None:
    assert run_filter({"function": "f", "limit": limit}).limit == limit


@pytest.mark.parametrize("limit", [0, -1, 10_001, 2.0, "5", True, None])
def test_run_filter_limit_out_of_bounds(limit: Any) -> None:
    err = refused(run_filter, {"function": "f", "limit": limit}, field="limit")
    assert "[1, 10000]" in err.message


@pytest.mark.parametrize("body", [{}, {"status": []}, {"limit": 10}, {"function": None},
                                  {"since": None, "until": None}])
def test_run_filter_refuses_an_empty_filter(body: dict[str, Any]) -> None:
    refused(run_filter, body, field="body", needle="at least one of")


def test_run_filter_refuses_a_non_string_function() -> None:
    refused(run_filter, {"function": ["a", "b"]}, field="function", needle="string")


def test_run_filter_with_everything() -> None:
    f = run_filter({"function": "charge", "status": ["failed"], "since": T0,
                    "until": "2024-05-01T13:30:00Z", "limit": 5})
    assert f == RunFilter("charge", ("failed",), T0, T0 + 3600, 5)


# -- unknown fields, field names ----------------------------------------------------------


def test_known_fields_are_taken() -> None:
    assert validated(CreateRun, {"function": "f", "input": None}).function == "f"
    refused(validated, CancelRun, {"reason": "r", "b": None}, field="b")


def test_an_unknown_field_is_named() -> None:
    err = refused(validated, CreateRun, {"function": "f", "inptu": 1}, field="inptu")
    assert "unknown field(s)" in err.message and "inptu" in err.message


def test_every_unknown_field_is_named_and_the_first_sorted_is_pointed_at() -> None:
    err = refused(validated, CancelRun, {"zeta": 1, "alpha": 2, "reason": "r"}, field="alpha")
    assert "['alpha', 'zeta']" in err.message


def test_a_nested_field_is_named_by_its_path() -> None:
    err = refused(validated, BulkRunList, {"runs": [{"function": "f"}, {"function": "g",
                                                                        "idempotency_key": 3}]},
                  field="runs[1].idempotency_key")
    assert err.message == "'runs[1].idempotency_key' must be a non-empty string"
    err = refused(validated, BulkRunList, {"runs": [{"function": "f", "x": 1}]},
                  field="runs[0].x")
    assert err.message == "unknown field(s): ['x']"


@pytest.mark.parametrize(("body", "field", "message"), [
    ({}, "function", "'function' is required"),
    ({"function": ""}, "function", "'function' must be a non-empty string"),
    ({"function": "f" * 4097}, "function", "'function' is longer than 4096 characters"),
    ({"function": "a\x00"}, "function", "'function' holds a NUL character"),
    ({"function": "f", "idempotency_key": "k" * 257}, "idempotency_key",
     "'idempotency_key' is longer than 256 characters"),
    ({"function": "f", "input": float("nan")}, "input",
     "'input' is not a JSON value the API takes: Out of range float values are not JSON "
     "compliant"),
    ([], "body", "expected a JSON object"),
])
def test_the_messages_of_today(body: Any, field: str, message: str) -> None:
    err = refused(validated, CreateRun, body, field=field)
    assert err.message == message


def test_an_event_is_named_under_its_place_in_the_body() -> None:
    err = refused(validated, Event, {"name": "a b"}, "body[2]", field="body[2].name")
    assert err.message.startswith("event names are 1-128")
    refused(validated, Event, {"name": "a", "id": "i" * 257}, "body", field="body.id")
    refused(validated, Event, {"name": "a", "data": []}, "body", field="body.data")
    refused(validated, Event, {"name": "a", "ts": True}, "body", field="body.ts")
    ev = validated(Event, {"name": "a", "data": None, "extra": 1}, "body")
    assert (ev.id, ev.data, ev.ts) == (None, {}, None)
    big = {"name": "a", "pad": "x" * p.MAX_EVENT_BYTES}
    err = refused(validated, Event, big, "body", field="body")
    assert err.message.startswith("event is ")


def test_the_unknown_fields_named_are_those_of_one_object() -> None:
    err = refused(validated, BulkRunList, {"runs": [{"function": "f", "zz": 1},
                                                    {"function": "g", "aa": 1, "bb": 2}]},
                  field="runs[0].zz")
    assert err.message == "unknown field(s): ['zz']"
    err = refused(validated, BulkRunList, {"runs": [{"function": "f"}, 3]}, field="runs[1]")
    assert err.message == "expected a JSON object"
