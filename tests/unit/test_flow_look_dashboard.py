"""The dashboard's words for flow control (orchestrator/dashboard/flow.py) and a run's
priority on its page: shown when the run says it is not the default, absent otherwise
(the run view of an orchestrator before flow control has no ``priority``)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any, cast

import pytest

from orchestrator.dashboard.app import Dashboard
from orchestrator.dashboard.flow import describe, priority_label, task_concurrency
from orchestrator.engine.engine import Engine
from sdk import Concurrency, Debounce, Priority, Singleton, Throttle, task


def run_view(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "id": "r1", "function": "f", "status": "completed", "attempt": 0,
        "parent_id": None, "task": None, "created_at": "2026-12-04T00:00:00Z",
        "started_at": "2026-12-04T00:00:00Z", "ended_at": "2026-12-04T00:00:01Z",
        "input": 1, "event": None, "output": 1, "error": None, "waiting": None,
        "steps": [], "children": [], "history": [], "idempotency_key": None}
    r.update(over)
    return r


class FakeEngine:
    """What the run page's handler reads: ``get_run`` and the settings."""

    def __init__(self, run: dict[str, Any]) -> None:
        self.run = run
        self.settings = SimpleNamespace(dashboard_secret=None, signing_key="k" * 32,
                                        dashboard_session_max_age=3600)

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return self.run


async def run_page(run: dict[str, Any]) -> str:
    dash = Dashboard(cast(Engine, FakeEngine(run)))
    values = await dash._run_values("r1")
    ctx = SimpleNamespace(admin=False)
    return dash.env.get_template("run_body.html").render(ctx=ctx, csrf="", csrf_field="c",
                                                         **values)


@pytest.mark.parametrize(("priority", "shown"), [(5, "5"), (10, "10"), (1, None),
                                                 (None, None), (True, None), ("5", None)])
def test_priority_label(priority: Any, shown: str | None) -> None:
    run = run_view() if priority is None else run_view(priority=priority)
    assert priority_label(run) == shown


async def test_a_runs_page_shows_a_priority_other_than_the_default() -> None:
    page = await run_page(run_view(priority=7))
    assert '<span id="priority">priority 7</span>' in page
    for run in (run_view(priority=1), run_view()):
        assert 'id="priority"' not in await run_page(run)


def test_describe_follows_the_declaration_order_and_says_each_key() -> None:
    @task("f", concurrency=[Concurrency(2, key="input.a"), Concurrency(9)],
          throttle=Throttle(10, period=1.5), debounce=Debounce(period=2),
          singleton=Singleton(key="input.a"), priority=Priority(default=4))
    async def f(ctx: Any, inp: Any) -> None: ...
    controls = describe(f.config())
    assert [c.name for c in controls] == ["concurrency", "concurrency", "throttle",
                                          "debounce", "singleton", "priority"]
    assert controls[0].words.startswith("at most 2 running at once per value of input.a")
    assert controls[1].words.startswith("at most 9 running at once across all its runs")
    assert controls[2].words == ("at most 10 starts per 1.5 s across all its runs; the "
                                 "excess is queued and starts later")
    assert "once none has come for 2 s, with" in controls[3].words  # no max_wait
    assert controls[5].words.startswith("the trigger's priority if given, else 4;")
    assert describe({"name": "plain"}) == []


def test_a_config_it_cannot_read_is_shown_as_json() -> None:
    controls = describe({"concurrency": [{"limit": 0}], "throttle": {"limit": 1}})
    assert [(c.name, c.words) for c in controls] == [
        ("concurrency", '[{"limit": 0}]'), ("throttle", '{"limit": 1}')]


def test_task_concurrency() -> None:
    assert task_concurrency({"name": "t"}) == ""
    assert task_concurrency({"name": "t", "concurrency": [{"limit": 3}]}).startswith(
        "at most 3 running at once across all its runs")
