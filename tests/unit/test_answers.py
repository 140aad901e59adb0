"""The views' dicts are what ``answers.py`` (and so the OpenAPI document) says they are:
the same keys, values of the declared types."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from orchestrator.engine import answers as a
from orchestrator.engine import views
from sdk import protocol as p


def conforms(t: Any, answer: dict[str, Any]) -> None:
    """``answer``, as the wire carries it, is a ``t`` (strict: no "5" for 5)."""
    TypeAdapter(t).validate_json(json.dumps(answer), strict=True)


def _keys(t: Any) -> set[str]:
    return set(t.__required_keys__ | t.__optional_keys__)


def _run(**kw: Any) -> SimpleNamespace:
    row = {"id": "r1", "function": "f", "status": "queued", "attempt": 0, "parent_id": None,
           "task": None, "waiting_json": '{"kind": "sleep", "seq": 1, "name": "n", '
                                         '"until": 1700000000, "step": "s"}',
           "error_json": None, "created_at": 1700000000.0, "started_at": None,
           "ended_at": None, "input_json": '{"x": 1}', "event_json": None,
           "output_json": None, "idempotency_key": None, "parents_json": None, "priority": 1,
           "history_json": '[{"replayed_at": 1700000000, "from": "start", '
                           '"status": "failed", "attempt": 0, "steps": []}]'}
    row.update(kw)
    return SimpleNamespace(**row)


def test_a_run_summary_is_a_run_summary() -> None:
    out = views.run_summary(_run())
    assert set(out) == _keys(a.RunSummary)
    conforms(a.RunSummary, out)
    assert out["waiting"] == {"kind": "sleep", "until": "2023-11-14T22:13:20Z", "step": "s"}


def test_a_run_detail_is_a_run() -> None:
    step = SimpleNamespace(step_id="s1", name="charge", kind="step", status="completed",
                           attempts=1, output_json="3", error_json=None,
                           started_at=1700000000.0, ended_at=1700000001.0,
                           deadline_at=None)
    child = SimpleNamespace(id="c1", function="g", status="completed", parent_step="b",
                            task="b")
    out = views.run_detail(_run(status="completed"), [step], [child], ["a", "b"])
    assert set(out) == _keys(a.Run)
    conforms(a.Run, out)
    assert out["tasks"] == [{"name": "a", "id": None, "status": views.NOT_STARTED},
                            {"name": "b", "id": "c1", "status": "completed"}]


def test_schedules_and_crons_are_what_the_document_says() -> None:
    sched = views.schedule_view({"id": "s", "function": "f", "at": 1e300, "input_json": "1",
                                 "run_id": None, "created_at": 0.0})
    assert set(sched) == _keys(a.Schedule)
    conforms(a.Schedule, sched)
    cron = views.cron_view({"id": "c", "function": "f", "expression": "* * * * *",
                            "timezone": "UTC", "input_json": "null", "source": "api",
                            "next_fire_at": 60.0, "created_at": 0.0})
    assert set(cron) == _keys(a.Cron)
    conforms(a.Cron, cron)


def test_run_counts_name_every_status_and_the_total() -> None:
    out = views.run_counts({"failed": 2, "completed": 5})
    assert _keys(a.RunCounts) == {s.value for s in p.RunStatus} | {"total"}
    assert set(out) == _keys(a.RunCounts)
    conforms(a.RunCounts, out)
    assert (out["failed"], out["completed"], out["queued"], out["total"]) == (2, 5, 0, 7)


def test_an_answer_of_another_shape_is_refused() -> None:
    out = views.run_summary(_run())
    with pytest.raises(ValidationError):
        conforms(a.RunSummary, {**out, "status": "exploded"})
    with pytest.raises(ValidationError):
        conforms(a.RunSummary, {k: v for k, v in out.items() if k != "created_at"})
    with pytest.raises(ValidationError):
        conforms(a.RunSummary, {**out, "attempt": "0"})
