"""The row types (orchestrator/store/rows.py) cannot drift from the tables: each row type
names exactly the columns its repository methods return, with the column's type and
nullability; each insert TypedDict names only columns and requires those without a
default; ``CreatedRun`` is a whole run row with the table's defaults."""

from __future__ import annotations

import types
import typing
from typing import Any

import pytest
from sqlalchemy import Column, Table, TypeDecorator

from orchestrator.store import Store, rows
from orchestrator.store.models import (
    api_keys,
    apps,
    crons,
    events,
    functions,
    queue,
    runs,
    schedules,
    steps,
    waits,
    webhook_sources,
)
from sdk import protocol as p

T0 = 1000.0


def attributes(proto: type) -> dict[str, Any]:
    """A row Protocol's column attributes and their types."""
    out: dict[str, Any] = {}
    for klass in proto.__mro__:
        for name, value in vars(klass).items():
            if isinstance(value, property) and name not in out:
                assert value.fget is not None
                out[name] = typing.get_type_hints(value.fget)["return"]
    return out


def column_type(col: Column[Any]) -> Any:
    t = col.type
    base = (t.impl_instance if isinstance(t, TypeDecorator) else t).python_type
    return base | None if col.nullable else base


# which table each row type's attributes come from (a join: the first table that has it)
SOURCES: dict[type, tuple[Table, ...]] = {
    rows.RunCore: (runs,), rows.ChildRow: (runs,), rows.RunSummaryRow: (runs,),
    rows.RunRow: (runs,), rows.StepRow: (steps,), rows.ClaimedRow: (queue,),
    rows.TakenWait: (waits,), rows.MatchedWait: (waits,), rows.MisconfiguredApp: (apps,),
    rows.AppRow: (apps,), rows.RegisteredFunction: (functions, apps),
    rows.ScheduleRow: (schedules,), rows.CronRow: (crons,),
    rows.ApiKeyGrant: (api_keys,), rows.ApiKeyRow: (api_keys,),
    rows.WebhookSourceRow: (webhook_sources,), rows.EventRow: (events,),
}


def column(tables: tuple[Table, ...], name: str) -> Column[Any]:
    return next(t.c[name] for t in tables if name in t.c)


@pytest.mark.parametrize("proto", list(SOURCES), ids=lambda t: t.__name__)
def test_each_attribute_has_its_columns_type(proto: type) -> None:
    for name, hint in attributes(proto).items():
        assert hint == column_type(column(SOURCES[proto], name)), f"{proto.__name__}.{name}"


def test_whole_row_types_name_every_column() -> None:
    for proto, table in [(rows.RunRow, runs), (rows.StepRow, steps), (rows.AppRow, apps),
                         (rows.ScheduleRow, schedules), (rows.CronRow, crons),
                         (rows.WebhookSourceRow, webhook_sources), (rows.EventRow, events)]:
        assert set(attributes(proto)) == set(table.c.keys()), proto.__name__


async def seed(store: Store) -> None:
    async with store.write() as tx:
        await tx.apps.save("a1", "http://app/api", "py", [{"name": "f"}], T0)
        await tx.apps.mark_misconfigured("http://app/api", "bad signature", T0)
        await tx.runs.insert_many([
            {"id": "p", "function": "f", "input_json": "1", "timeout_at": T0,
             "parent_id": None, "parent_step": None},
            {"id": "c", "function": "f", "input_json": "2", "timeout_at": None,
             "parent_id": "p", "parent_step": "s1"},
        ])
        await tx.queue.add_many([{"run_id": "p", "due_at": T0}])
        await tx.steps.record([{"run_id": "p", "step_id": "s1", "seq": 1, "name": "s",
                                "kind": "step"}])
        await tx.waits.add([
            {"run_id": "p", "step_id": "w1", "seq": 2, "name": "w", "event": "e",
             "match_key": "k", "match_json": "{}", "expires_at": T0},
            {"run_id": "c", "step_id": "w2", "seq": 1, "name": "w", "event": "go",
             "match_key": p.match_key("go", {}), "match_json": "{}", "expires_at": None},
        ])
        await tx.schedules.add({"id": "s", "function": "f", "input_json": "1", "at": T0})
        await tx.crons.add({"id": "k", "function": "f", "expression": "* * * * *",
                            "input_json": "1", "next_fire_at": T0})
        await tx.keys.add({"id": "key", "prefix": "dk_abcdefgh", "hash": "h",
                           "scopes": "read", "name": "n", "created_at": T0})
        await tx.events.insert_new([{"id": "ev", "name": "e", "data_json": "{}", "ts": T0,
                                     "run_ids_json": "[]"}])


async def returned(store: Store) -> list[tuple[str, type, list[Any]]]:
    """What every repository method that returns rows gives for the seeded data:
    (method, the row type it declares, its rows)."""
    await seed(store)
    out: list[tuple[str, type, list[Any]]] = []
    async with store.write() as tx:
        got = await tx.runs.get("p")
        out.append(("runs.get", rows.RunRow, [got]))
        out.append(("runs.get_many", rows.RunRow, list((await tx.runs.get_many(["p"])).values())))
        out.append(("runs.lock", rows.RunRow, [await tx.runs.lock("p")]))
        out.append(("runs.timed_out", rows.RunRow,
                    [r for r, _ in await tx.runs.timed_out(T0 + 1, 10)]))
        out.append(("runs.matching", rows.RunRow, await tx.runs.matching("f", [], None, None, 10)))
        out.append(("runs.children_of", rows.ChildRow, await tx.runs.children_of("p")))
        out.append(("runs.children_of(step)", rows.ChildRow,
                    await tx.runs.children_of("p", "s1")))
        out.append(("runs.page", rows.RunSummaryRow, await tx.runs.page("f", None, 10, None)))
        out.append(("steps.memo", rows.StepRow, (await tx.steps.memo(["p"]))["p"]))
        out.append(("queue.claim", rows.ClaimedRow, await tx.queue.claim("me", T0, T0 + 5, 10)))
        out.append(("waits.take_expired", rows.TakenWait,
                    await tx.waits.take_expired(["p"], T0 + 1)))
        out.append(("waits.take_matching", rows.MatchedWait,
                    await tx.waits.take_matching({"name": "go", "data": {}})))
        out.append(("apps.misconfigured", rows.MisconfiguredApp, await tx.apps.misconfigured()))
        out.append(("apps.list_apps", rows.AppRow, await tx.apps.list_apps()))
        out.append(("apps.list_functions", rows.RegisteredFunction,
                    await tx.apps.list_functions()))
        out.append(("schedules.get", rows.ScheduleRow, [await tx.schedules.get("s")]))
        out.append(("schedules.pending", rows.ScheduleRow, await tx.schedules.pending("f", 10)))
        out.append(("schedules.due", rows.ScheduleRow, await tx.schedules.due(T0 + 1, 10)))
        out.append(("crons.get", rows.CronRow, [await tx.crons.get("k")]))
        out.append(("crons.all", rows.CronRow, await tx.crons.all("f")))
        out.append(("crons.due", rows.CronRow, await tx.crons.due(T0 + 1, 10)))
        out.append(("events.page", rows.EventRow, await tx.events.page("e", 10, None)))
        out.append(("events.get", rows.EventRow, [await tx.events.get("ev")]))
        out.append(("keys.grant", rows.ApiKeyGrant, [await tx.keys.grant("h")]))
        out.append(("keys.listed", rows.ApiKeyRow, await tx.keys.listed()))
        await tx.webhooks.add({"id": "w", "kind": "github", "event_from": "header",
                               "secret": "x"})
        out.append(("webhooks.get", rows.WebhookSourceRow, [await tx.webhooks.get("w")]))
        out.append(("webhooks.list_all", rows.WebhookSourceRow, await tx.webhooks.list_all()))
    return out


def check_shapes(found: list[tuple[str, type, list[Any]]]) -> None:
    assert len(found) >= 20
    for method, proto, got in found:
        assert got and all(r is not None for r in got), f"{method} returned no row"
        want = set(attributes(proto))
        for r in got:
            assert set(r._fields) == want, f"{method}: columns != {proto.__name__}"
            for name, hint in attributes(proto).items():  # values of the declared types
                value = getattr(r, name)
                allowed = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
                assert isinstance(value, allowed), f"{method}: {name}={value!r} is not {hint}"


async def test_every_method_returns_the_columns_of_its_row_type(store: Store) -> None:
    check_shapes(await returned(store))


def test_created_run_is_a_whole_run_row_with_the_table_defaults() -> None:
    fields = rows.CreatedRun.__dataclass_fields__
    assert set(fields) == set(attributes(rows.RunRow))
    for name, f in fields.items():
        col = runs.c[name]
        if col.default is not None:
            assert f.default == col.default.arg, name
        elif col.nullable:
            assert f.default is None, name
        else:
            assert name in rows.RunInsert.__required_keys__, name
    run = rows.CreatedRun(id="r", function="f", input_json="1", task="t")
    assert run._asdict()["task"] == "t" and run.status == "queued"
    with pytest.raises(TypeError):
        rows.CreatedRun(id="r", function="f", input_json="1", nope=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("typed, table", [
    (rows.RunInsert, runs), (rows.StepInsert, steps), (rows.QueueInsert, queue),
    (rows.WaitInsert, waits), (rows.EventInsert, events), (rows.ScheduleInsert, schedules),
    (rows.CronInsert, crons), (rows.ApiKeyInsert, api_keys),
    (rows.WebhookSourceInsert, webhook_sources),
], ids=lambda x: getattr(x, "__name__", ""))
def test_insert_dicts_name_columns_and_require_those_without_default(
        typed: Any, table: Table) -> None:
    hints = typing.get_type_hints(typed)
    assert set(hints) == set(table.c.keys())
    no_default = {c.name for c in table.c
                  if not c.nullable and c.default is None and c.server_default is None}
    assert typed.__required_keys__ == no_default
    for name, hint in hints.items():
        assert hint == column_type(table.c[name]), f"{typed.__name__}.{name}"
