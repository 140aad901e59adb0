"""Unit tests of registration: ``validate_functions`` and ``check_graph``.

Valid configs come from the SDK (``Function.config()`` / ``Workflow.config()``), exactly
what an app's introspection carries; the error cases are plain dicts of the same shape.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from orchestrator.engine.registration import check_graph, validate_functions
from orchestrator.errors import Invalid
from sdk import CancelOn, Context, Cron, Retry, Workflow, task

# -- helpers -----------------------------------------------------------------------------------


def fn_cfg(name: str = "f", **extra: Any) -> dict[str, Any]:
    """A task config as ``Function.config()`` writes it."""
    return {"name": name, "kind": "task", "triggers": [], "retry": Retry().to_wire(), **extra}


def wf_cfg(name: str = "w", tasks: Any = None, **extra: Any) -> dict[str, Any]:
    """A workflow config as ``Workflow.config()`` writes it."""
    if tasks is None:
        tasks = [t_cfg("a"), t_cfg("b", ["a"])]
    return {"name": name, "kind": "workflow", "triggers": [], "retry": Retry().to_wire(),
            "tasks": tasks, **extra}


def t_cfg(name: str, parents: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "parents": list(parents or []), "conditional": False, **extra}


def invalid(configs: Any, *needles: str) -> Invalid:
    """``validate_functions(configs)`` fails on the "functions" field, naming ``needles``."""
    with pytest.raises(Invalid) as info:
        validate_functions(configs)
    err = info.value
    assert err.field == "functions", err.message
    assert err.status == 422 and err.code == "validation_error"
    for needle in needles:
        assert needle in err.message, f"{needle!r} not in {err.message!r}"
    return err


def graph_invalid(name: str, tasks: Any, *needles: str) -> Invalid:
    with pytest.raises(Invalid) as info:
        check_graph(name, tasks)
    err = info.value
    assert err.field == "functions", err.message
    for needle in needles:
        assert needle in err.message, f"{needle!r} not in {err.message!r}"
    return err


async def _noop(ctx: Context) -> None:
    return None


def _etl() -> Workflow:
    etl = Workflow("etl", triggers=["upload.done"], retry=Retry(max_attempts=4), timeout=600,
                   queue_timeout=60, crons=[Cron("0 3 * * *", "Europe/Paris", {"full": True})],
                   cancel_on=[CancelOn("upload.cancelled", {"data.id": "input.id"})])

    @etl.task()
    async def extract(ctx: Context) -> int:
        return 1

    @etl.task(parents=[extract], retry=Retry(max_attempts=2), timeout=30)
    async def transform(ctx: Context) -> int:
        return 2

    @etl.task(parents=[extract, transform], skip_if=lambda ctx: False)
    async def load(ctx: Context) -> int:
        return 3

    @etl.on_failure(retry=Retry(max_attempts=1), timeout=10)
    async def alert(ctx: Context) -> None:
        return None

    return etl


# -- valid configs -----------------------------------------------------------------------------


def test_sdk_task_and_workflow_configs_pass() -> None:
    @task("charge", triggers=["order.created", "order.retried"], retry=Retry(max_attempts=7),
          timeout=120, queue_timeout=5, crons=["*/5 * * * *"],
          cancel_on=[CancelOn("order.cancelled", {"data.id": "input.id"})])
    async def charge(ctx: Context, order: Any) -> None:
        return None

    configs = [charge.config(), _etl().config()]
    out, crons = validate_functions(configs)
    assert out == configs
    assert all(o is not c for o, c in zip(out, configs, strict=True))  # copies
    assert [o["kind"] for o in out] == ["task", "workflow"]
    assert [(c["function"], c["expression"], c["timezone"], c["source"]) for c in crons] == [
        ("charge", "*/5 * * * *", "UTC", "code"),
        ("etl", "0 3 * * *", "Europe/Paris", "code"),
    ]
    assert crons[0]["input_json"] == "null"
    assert crons[1]["input_json"] == '{"full":true}'
    for c in crons:
        assert re.fullmatch(rf"{re.escape(c['function'])}:[0-9a-f]{{12}}", c["id"]), c["id"]


def test_an_empty_app_and_minimal_configs_pass() -> None:
    assert validate_functions([]) == ([], [])
    out, crons = validate_functions([{"name": "bare"}])  # kind defaults to "task"
    assert out == [{"name": "bare"}] and crons == []


def test_a_workflow_without_on_failure_and_a_diamond_graph_pass() -> None:
    tasks = [t_cfg("a"), t_cfg("b", ["a"]), t_cfg("c", ["a"]), t_cfg("d", ["b", "c"])]
    out, _ = validate_functions([wf_cfg("diamond", tasks)])
    assert [t["name"] for t in out[0]["tasks"]] == ["a", "b", "c", "d"]
    check_graph("diamond", tasks)  # no exception
    check_graph("reversed", list(reversed(tasks)))  # order of declaration does not matter


def test_validate_functions_needs_a_list() -> None:
    with pytest.raises(Invalid) as info:
        validate_functions(None)
    assert info.value.field == "url"
    assert "function list" in info.value.message
    invalid(["not an object"], "must be an object")


# -- code crons --------------------------------------------------------------------------------


def _cron_ids(*specs: dict[str, Any], name: str = "nightly") -> list[str]:
    _, crons = validate_functions([fn_cfg(name, crons=list(specs))])
    return [c["id"] for c in crons]


def test_code_cron_ids_are_stable() -> None:
    spec = {"expression": "0 3 * * *", "timezone": "Europe/Paris", "input": {"n": 1}}
    first = _cron_ids(spec)
    assert first == _cron_ids(copy.deepcopy(spec))  # a re-sync keeps the id
    assert len(first) == 1 and first[0].startswith("nightly:")


def test_code_cron_ids_change_with_expression_timezone_input_or_function() -> None:
    base = {"expression": "0 3 * * *", "timezone": "Europe/Paris", "input": {"n": 1}}
    variants = [
        base,
        {**base, "expression": "0 4 * * *"},
        {**base, "timezone": "America/New_York"},
        {**base, "input": {"n": 2}},
        {**base, "input": None},
    ]
    ids = [_cron_ids(v)[0] for v in variants]
    assert len(set(ids)) == len(ids), ids
    other = _cron_ids(base, name="weekly")[0]
    assert other.startswith("weekly:") and other not in ids


def test_code_cron_timezone_defaults_to_utc() -> None:
    implicit = _cron_ids({"expression": "0 3 * * *"})
    explicit = _cron_ids({"expression": "0 3 * * *", "timezone": "UTC"})
    null_tz = _cron_ids({"expression": "0 3 * * *", "timezone": None})
    assert implicit == explicit == null_tz
    _, crons = validate_functions([fn_cfg("nightly", crons=[{"expression": "0 3 * * *"}])])
    assert crons[0]["timezone"] == "UTC"


def test_two_code_crons_of_one_function_get_two_ids() -> None:
    ids = _cron_ids({"expression": "0 3 * * *"}, {"expression": "0 4 * * *"})
    assert len(ids) == 2 and ids[0] != ids[1]


def test_a_cron_declared_twice_does_not_yield_two_rows_with_one_id() -> None:
    """BUG: ``code_crons`` derives the id from (expression, timezone, input) only, so a
    function that declares the same cron twice gets two rows with the same id. The store
    inserts both (``CronsRepo.replace_code_crons``) into a table whose primary key is the
    id: the registration dies with an IntegrityError (HTTP 500) instead of a 422, or
    the duplicate is silently meant to be one cron. Either refuse it (Invalid) or dedupe.
    """
    spec = {"expression": "*/5 * * * *", "timezone": "UTC", "input": None}
    try:
        ids = _cron_ids(spec, dict(spec))
    except Invalid as err:  # refusing it is a fine fix
        assert err.field == "functions"
        return
    assert len(ids) == len(set(ids)), f"duplicate cron ids: {ids}"


# -- functions: errors -------------------------------------------------------------------------


def test_duplicate_function_names_are_refused() -> None:
    invalid([fn_cfg("f"), wf_cfg("f")], "'f'", "twice")


@pytest.mark.parametrize("name", [None, "", "has space", "-leading", "x" * 129, 42])
def test_invalid_function_names_are_refused(name: Any) -> None:
    invalid([fn_cfg(name)], "invalid function name")


def test_an_unknown_kind_is_refused() -> None:
    invalid([fn_cfg("f", kind="cronjob")], "'f'", "unknown kind", "'cronjob'")


@pytest.mark.parametrize("event", ["bad event", "", None, 7])
def test_an_invalid_trigger_event_name_is_refused(event: Any) -> None:
    invalid([fn_cfg("f", triggers=[{"event": event}])], "trigger event of 'f'")


def test_a_trigger_that_is_not_an_object_is_refused() -> None:
    invalid([fn_cfg("f", triggers=["order.created"])], "trigger event of 'f'")


@pytest.mark.parametrize("retry", [
    {"max_attempts": 0},
    {"max_attempts": 3, "factor": 0.5},
    {"max_attempts": 3, "jitter": 2},
    {"max_attempts": 3, "initial_delay": -1},
    {"unknown": 1},
    ["not", "a", "dict"],
])
def test_an_invalid_retry_policy_is_refused(retry: Any) -> None:
    invalid([fn_cfg("f", retry=retry)], "'f'", "invalid retry policy")


def test_max_attempts_zero_names_the_cause() -> None:
    err = invalid([fn_cfg("f", retry={"max_attempts": 0})], "max_attempts")
    assert "at least 1" in err.message


@pytest.mark.parametrize("key", ["timeout", "queue_timeout"])
@pytest.mark.parametrize("value", [-1, 0, -0.5, True, "30"])
def test_a_non_positive_or_non_numeric_timeout_is_refused(key: str, value: Any) -> None:
    invalid([fn_cfg("f", **{key: value})], "'f'", key, "positive number of seconds")


@pytest.mark.parametrize("key", ["timeout", "queue_timeout"])
def test_positive_timeouts_pass(key: str) -> None:
    out, _ = validate_functions([fn_cfg("f", **{key: 0.5}), fn_cfg("g", **{key: 3600})])
    assert [o[key] for o in out] == [0.5, 3600]


def test_a_bad_cron_expression_is_refused() -> None:
    err = invalid([fn_cfg("f", crons=[{"expression": "61 * * * *"}])], "'f'", "61 * * * *")
    assert "does not parse" in err.message
    invalid([fn_cfg("f", crons=[{"expression": "* * *"}])], "'f'", "3 fields")


def test_a_bad_cron_time_zone_is_refused() -> None:
    invalid([fn_cfg("f", crons=[{"expression": "0 3 * * *", "timezone": "Mars/Olympus"}])],
            "'f'", "unknown time zone", "Mars/Olympus")


@pytest.mark.parametrize("specs", [[{"timezone": "UTC"}], [{"expression": 5}], ["0 3 * * *"]])
def test_a_cron_without_an_expression_is_refused(specs: Any) -> None:
    invalid([fn_cfg("f", crons=specs)], "'f'", "needs an expression")


def test_crons_must_be_a_list() -> None:
    invalid([fn_cfg("f", crons={"expression": "0 3 * * *"})], "'f'", "must be a list")


def test_a_cancel_on_rule_without_an_event_is_refused() -> None:
    invalid([fn_cfg("f", cancel_on=[{"match": {"data.id": "input.id"}}])],
            "cancel_on event of 'f'")
    invalid([fn_cfg("f", cancel_on=[{"event": "bad name!", "match": {}}])],
            "cancel_on event of 'f'")


def test_a_cancel_on_rule_with_a_bad_shape_is_refused() -> None:
    invalid([fn_cfg("f", cancel_on=["order.cancelled"])], "'f'", "{event, match}")
    invalid([fn_cfg("f", cancel_on=[{"event": "order.cancelled", "match": ["data.id"]}])],
            "'f'", "{event, match}")


def test_a_cancel_on_rule_without_match_passes() -> None:
    out, _ = validate_functions([fn_cfg("f", cancel_on=[{"event": "order.cancelled"}])])
    assert out[0]["cancel_on"] == [{"event": "order.cancelled"}]


@pytest.mark.parametrize("key", ["triggers", "cancel_on"])
def test_a_null_list_field_is_a_validation_error_not_a_crash(key: str) -> None:
    """BUG: ``validate_functions`` iterates ``c.get("triggers", [])`` and
    ``c.get("cancel_on", [])`` without checking they are lists: an app (e.g. an SDK in
    another language) that sends ``"triggers": null`` makes the registration raise
    TypeError ('NoneType' object is not iterable), an HTTP 500, instead of an Invalid.
    ``crons`` gets this right ("crons must be a list")."""
    invalid([fn_cfg("f", **{key: None})], "'f'")


# -- workflows: errors -------------------------------------------------------------------------


def test_a_workflow_with_no_tasks_is_refused() -> None:
    invalid([wf_cfg("w", [])], "'w'", "declares no tasks")
    invalid([wf_cfg("w", None) | {"tasks": None}], "'w'", "declares no tasks")
    bare = wf_cfg("w")
    del bare["tasks"]
    invalid([bare], "'w'", "declares no tasks")


def test_an_unknown_parent_is_refused() -> None:
    invalid([wf_cfg("w", [t_cfg("a"), t_cfg("b", ["a", "ghost"])])],
            "'w'", "task 'b'", "unknown parent 'ghost'")


def test_a_two_task_cycle_is_refused_and_named() -> None:
    err = invalid([wf_cfg("w", [t_cfg("a", ["b"]), t_cfg("b", ["a"])])], "'w'", "cycle")
    assert "a -> b -> a" in err.message


def test_a_self_loop_is_refused_and_named() -> None:
    err = invalid([wf_cfg("w", [t_cfg("root"), t_cfg("a", ["root", "a"])])], "cycle")
    assert "a -> a" in err.message


def test_a_longer_cycle_behind_a_valid_prefix_is_named_without_the_prefix() -> None:
    tasks = [t_cfg("start"), t_cfg("x", ["start", "z"]), t_cfg("y", ["x"]), t_cfg("z", ["y"])]
    err = graph_invalid("w", tasks, "cycle")
    cycle = err.message.split("cycle: ", 1)[1]
    hops = cycle.split(" -> ")
    assert hops[0] == hops[-1], cycle  # a closed path
    assert sorted(hops[:-1]) == ["x", "y", "z"], cycle  # exactly the cycle, no "start"


def test_duplicate_task_names_are_refused() -> None:
    invalid([wf_cfg("w", [t_cfg("a"), t_cfg("b", ["a"]), t_cfg("a")])],
            "'w'", "task 'a' twice")


@pytest.mark.parametrize("bad", [{"parents": []}, {"name": "bad name"}, "a", None])
def test_invalid_task_names_are_refused(bad: Any) -> None:
    invalid([wf_cfg("w", [t_cfg("ok"), bad])], "task name in workflow 'w'")


def test_parents_must_be_a_list() -> None:
    invalid([wf_cfg("w", [t_cfg("a"), {"name": "b", "parents": "a"}])],
            "'w'", "task 'b'", "parents must be a list")


def test_a_non_string_parent_is_a_validation_error_not_a_crash() -> None:
    """BUG: ``check_graph`` tests ``q not in names`` (a set) for each parent without
    checking it is a string: a parent that is a list or an object raises TypeError
    (unhashable type), an HTTP 500, instead of an Invalid naming the task."""
    graph_invalid("w", [t_cfg("a"), {"name": "b", "parents": [["a"]]}], "'b'")


def test_a_task_with_an_invalid_retry_or_timeout_is_refused() -> None:
    invalid([wf_cfg("w", [t_cfg("a", retry={"max_attempts": 0})])],
            "'w'", "task 'a'", "invalid retry policy")
    invalid([wf_cfg("w", [t_cfg("a", timeout=-5)])], "'w'", "task 'a'", "timeout")


def test_an_on_failure_task_named_like_a_task_is_refused() -> None:
    invalid([wf_cfg("w", on_failure=t_cfg("b"))], "'w'", "on_failure task 'b'", "also a task")


@pytest.mark.parametrize("bad", [{"name": "bad name"}, {}, "alert"])
def test_an_invalid_on_failure_task_is_refused(bad: Any) -> None:
    invalid([wf_cfg("w", on_failure=bad)], "on_failure task of 'w'")


def test_a_valid_on_failure_task_passes() -> None:
    out, _ = validate_functions([wf_cfg("w", on_failure=t_cfg("alert", timeout=5))])
    assert out[0]["on_failure"]["name"] == "alert"


@pytest.mark.parametrize("bad", [{"retry": {"max_attempts": 0}}, {"timeout": -1}])
def test_an_on_failure_task_with_an_invalid_retry_or_timeout_is_refused(bad: Any) -> None:
    """BUG: ``validate_functions`` checks the retry policy and timeout of every task
    (``check_graph``) but not those of the ``on_failure`` task. The registration accepts
    ``on_failure: {"retry": {"max_attempts": 0}}`` and the error surfaces only when the
    workflow fails: ``FunctionInfo.retry_for`` calls ``Retry.from_wire`` on it, which
    raises ValueError in the engine (a negative timeout is stored as is). The module's
    promise is "bad declarations fail the registration, never a run later"."""
    invalid([wf_cfg("w", on_failure=t_cfg("alert", **bad))], "'w'", "alert")


def test_check_graph_direct_errors() -> None:
    graph_invalid("w", "not a list", "declares no tasks")
    graph_invalid("w", [], "declares no tasks")
    graph_invalid("w", [t_cfg("a", ["a"])], "a -> a")


def test_a_long_chain_is_checked_without_blowing_the_stack() -> None:
    """BUG (robustness): the cycle check recurses once per ancestor. A chain of 1,000
    tasks listed children first (any order is valid: an SDK other than this one may list
    them so) raises RecursionError, an HTTP 500, instead of being accepted. An iterative
    DFS (or Kahn's algorithm) fixes it."""
    n = 1000
    chain = [t_cfg(f"t{i}", [f"t{i - 1}"] if i else []) for i in range(n)]
    check_graph("long", chain)  # parents first: fine
    check_graph("long", list(reversed(chain)))  # children first: RecursionError today
