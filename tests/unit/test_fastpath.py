"""The SQLite fast path (orchestrator/store/fastpath.py) against a real SQLite file: each
prepared statement run as a ``Plan`` gives what SQLAlchemy gives for the same call."""

from __future__ import annotations

import asyncio
import importlib
import logging
import pkgutil
import tomllib
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from packaging.requirements import Requirement
from sqlalchemy import Column, Float, Integer, MetaData, Table, bindparam, text
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql.asyncpg import (
    AsyncAdapt_asyncpg_connection,
    PGDialect_asyncpg,
)
from sqlalchemy.exc import StatementError

import orchestrator.store as store_pkg
from orchestrator.store import Store
from orchestrator.store import queue as queue_mod
from orchestrator.store import runs as runs_mod
from orchestrator.store.db import PgConn, PostgresBackend, SQLiteBackend, SyncConn
from orchestrator.store.fastpath import PgPlan, Plan, Result


def prepared_getters() -> list[tuple[str, Any]]:
    """Every statement the store prepares (module-level ``prepared(...)``)."""
    out = []
    for info in pkgutil.iter_modules(store_pkg.__path__):
        mod = importlib.import_module(f"orchestrator.store.{info.name}")
        for name, value in vars(mod).items():
            if getattr(value, "__qualname__", "") == "prepared.<locals>.get":
                out.append((f"{info.name}.{name}", value))
    return out


def run_row(rid: str, **over: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"id": rid, "function": "f", "input_json": "1", "created_at": 5}
    row.update(over)
    return row


def test_every_prepared_statement_gets_a_plan_on_sqlite(store: Store) -> None:
    getters = prepared_getters()
    assert len(getters) >= 10
    slow = [name for name, get in getters if type(get(store.backend)) is not Plan]
    assert slow == []


async def both(store: Store, get: Any, params: Any) -> tuple[Any, Any]:
    """The same call through the plan and through SQLAlchemy, each in a transaction
    rolled back afterwards."""
    plan = get(store.backend)
    assert type(plan) is Plan
    out = []
    for stmt in (plan, plan.stmt):
        with store.db._sync_engine.connect() as conn:  # type: ignore[union-attr]
            res = await SyncConn(conn).execute(stmt, params)
            rows = [tuple(r) for r in res] if stmt is plan or res.returns_rows else []
            out.append((rows, res.rowcount))
            conn.rollback()
    return out[0], out[1]


async def test_inserts_fill_defaults_and_rows_match_sqlalchemy(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row("a"), run_row("b", status="running",
                                                         parent_waits=True, attempt=2)])
        await tx.queue.add_many([{"run_id": "a", "due_at": 1}, {"run_id": "b", "due_at": 2}])
    async with store.read() as tx:
        a, b = await tx.runs.get("a"), await tx.runs.get("b")
        assert isinstance(a, tuple) and a._asdict()["id"] == "a"
    # defaults of the table, coercions of the types (float columns, booleans)
    assert (a.status, a.attempt, a.child_index, a.parent_waits, a.output_json) == (
        "queued", 0, 0, False, None)
    assert (b.status, b.attempt, b.parent_waits) == ("running", 2, True)
    assert type(a.created_at) is float and type(a.parent_waits) is bool
    fast, slow = await both(store, runs_mod._GET, {"id": "b"})
    assert fast == slow and len(fast[0]) == 1
    assert [type(v) for v in fast[0][0]] == [type(v) for v in slow[0][0]]


async def test_in_lists_and_constant_lists_expand(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row(f"r{i}") for i in range(5)])
    fast, slow = await both(store, runs_mod._GET_MANY, {"ids": ["r1", "r3", "zz"]})
    assert fast == slow and sorted(r[0] for r in fast[0]) == ["r1", "r3"]
    # an UPDATE with a constant NOT IN list (terminal statuses) and a rowcount
    params = {"rid": "r2", "status": "completed", "output_json": "7", "error_json": None,
              "ended_at": 9}
    fast, slow = await both(store, runs_mod._FINISH, params)
    assert fast == slow == ([], 1)
    async with store.write() as tx:
        assert await tx.runs.finish("r2", "completed", "7", None, 9) is True
        assert await tx.runs.finish("r2", "failed", None, "{}", 10) is False  # ended once
        row = await tx.runs.get("r2")
    assert (row.status, row.output_json, row.ended_at) == ("completed", "7", 9.0)


async def test_returning_and_aggregates(store: Store) -> None:
    async with store.write() as tx:
        await tx.runs.insert_many([run_row("q1"), run_row("q2")])
        await tx.queue.add_many([{"run_id": "q1", "due_at": 1}, {"run_id": "q2", "due_at": 3}])
    fast, slow = await both(store, queue_mod._CLAIM,
                            {"now": 2, "limit": 10, "owner": "me", "until": 20})
    assert fast[0] == slow[0] == [("q1", 1, 0, None)]  # (rowcount with RETURNING: unused)
    async with store.write() as tx:
        assert await tx.queue.next_wakeup() == 1.0
        [claimed] = await tx.queue.claim("me", 2.0, 20.0, 10)
        assert (claimed.run_id, claimed.claims) == ("q1", 1)
        assert await tx.queue.fences(["q1", "q2"]) == {"q1": ("me", 1), "q2": (None, 0)}


async def test_calls_a_plan_cannot_run_go_to_sqlalchemy(store: Store) -> None:
    plan = runs_mod._GET_MANY(store.backend)
    with store.db._sync_engine.connect() as conn:  # type: ignore[union-attr]
        raw = conn.connection.driver_connection
        assert plan.run(raw, {"ids": []}) is None  # an empty IN list
        assert plan.run(raw, {}) is None  # a parameter not given
        assert isinstance(plan.run(raw, {"ids": ["x"]}), Result)
        # through the connection: SQLAlchemy answers the empty list, refuses the missing
        assert list(await SyncConn(conn).execute(plan, {"ids": []})) == []
        with pytest.raises(StatementError, match="ids"):
            await SyncConn(conn).execute(plan, {})
    insert = runs_mod._INSERT(store.backend)
    with store.db._sync_engine.connect() as conn:  # type: ignore[union-attr]
        raw = conn.connection.driver_connection
        assert insert.run(raw, [{"id": "x", "function": "f"}]) is None  # input_json: no default
        conn.rollback()


async def test_the_wal_is_checkpointed_in_the_background_and_emptied_on_close(
        tmp_path: Path) -> None:
    path = tmp_path / "ckpt.db"
    s = Store(f"sqlite:///{path}")
    await s.open()
    try:
        before = path.stat().st_size
        async with s.write() as tx:  # ~2 MB of rows, into the WAL
            await tx.runs.insert_many([run_row(f"big{i}", input_json="x" * 20_000)
                                       for i in range(100)])
        assert path.stat().st_size == before  # not in the database file yet
        assert Path(f"{path}-wal").stat().st_size > 2_000_000
        for _ in range(50):
            await asyncio.sleep(0.1)
            if path.stat().st_size > 2_000_000:
                break
        assert path.stat().st_size > 2_000_000  # copied without any commit paying for it
    finally:
        await s.close()
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_statement_without_a_plan_warns_once_with_the_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    md = MetaData()
    t = Table("t_defaults", md, Column("id", Integer, primary_key=True),
              Column("n", Integer, default=lambda: 1))  # computed at execution
    caplog.set_level(logging.WARNING, logger="orchestrator.store")
    stmt = t.insert().values(id=bindparam("id"))
    for _ in range(3):
        assert Plan.build(stmt, sqlite.dialect()) is None
        assert PgPlan.build(stmt, PGDialect_asyncpg()) is None  # type: ignore[no-untyped-call]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages  # once per statement and dialect, not per build
    assert all("Python-side defaults" in m and "INSERT INTO t_defaults" in m
               for m in messages)

    class Odd:  # anything unforeseen: SQLAlchemy runs it, and the warning says what broke
        def compile(self, dialect: Any) -> Any:
            raise KeyError("positiontup")

        def __str__(self) -> str:
            return "SELECT odd"

    caplog.clear()
    assert Plan.build(Odd(), sqlite.dialect()) is None
    assert Plan.build(Odd(), sqlite.dialect()) is None
    [record] = caplog.records
    assert "SELECT odd (KeyError: 'positiontup')" in record.getMessage()


def test_the_installed_sqlalchemy_is_a_version_fastpath_was_written_for() -> None:
    """fastpath.py (and db.PgConn) read SQLAlchemy internals: pyproject.toml bounds the
    versions it was written and tested for. Moving the bound means checking those
    internals again (the docstring of fastpath.py lists them), then this test."""
    with open(Path(__file__).parents[2] / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    [req] = [Requirement(r) for r in project["optional-dependencies"]["server"]
             if Requirement(r).name == "sqlalchemy"]
    assert any(s.operator == "<" for s in req.specifier), "SQLAlchemy needs an upper bound"
    installed = sqlalchemy.__version__
    assert req.specifier.contains(installed, prereleases=True), (
        f"SQLAlchemy {installed} is outside {req.specifier}, the versions whose internals "
        f"orchestrator/store/fastpath.py was written for: check them, then move the pin")
    # the internals themselves, on a compiled prepared statement and the asyncpg adapter
    c = runs_mod._GET_MANY(SQLiteBackend()).stmt.compile(dialect=sqlite.dialect())
    for name in ("positiontup", "binds", "_bind_processors", "_result_columns",
                 "insert_prefetch", "update_prefetch", "literal_execute_params"):
        assert hasattr(c, name), f"SQLAlchemy's compiler no longer has {name}"
    assert "__[POSTCOMPILE_ids]" in c.string
    assert callable(getattr(Float(), "_cached_result_processor", None))
    assert callable(getattr(AsyncAdapt_asyncpg_connection, "_start_transaction", None))


async def test_an_asyncpg_adapter_without_the_internals_warns_once_and_uses_sqlalchemy(
        caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    class Raw:
        dbapi_connection = object()  # no _start_transaction, _transaction, _connection

    class Conn:
        executed: list[Any] = []

        async def get_raw_connection(self) -> Raw:
            return Raw()

        async def execute(self, stmt: Any, params: Any = None) -> str:
            self.executed.append(stmt)
            return "by sqlalchemy"

    monkeypatch.setattr(PgConn, "adapter_warned", False)
    caplog.set_level(logging.WARNING, logger="orchestrator.store")
    plan = runs_mod._GET(PostgresBackend())
    conn = PgConn(Conn(), write=True)  # type: ignore[arg-type]
    assert await conn.execute(plan, {"id": "x"}) == "by sqlalchemy"
    assert await conn.execute(plan, {"id": "y"}) == "by sqlalchemy"
    assert Conn.executed == [plan.stmt, plan.stmt]
    [record] = caplog.records
    assert "lacks the internals" in record.getMessage()


@pytest.mark.parametrize(("setting", "pragma"), [(None, 2), ("full", 2), ("normal", 1)])
async def test_sqlite_commits_are_fsynced_by_default(tmp_path: Path, setting: str | None,
                                                     pragma: int) -> None:
    """Durable on acknowledgement by default (issue 14): SQLite runs with
    ``synchronous=FULL`` (2) unless NORMAL (1) is chosen explicitly."""
    kw = {} if setting is None else {"synchronous": setting}
    s = Store(f"sqlite:///{tmp_path / 'sync.db'}", **kw)
    await s.open()
    try:
        async with s.read() as tx:
            got = (await tx.runs.conn.execute(text("PRAGMA synchronous"))).scalar()
        assert got == pragma
    finally:
        await s.close()


def test_an_unknown_sqlite_synchronous_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="synchronous"):
        Store("sqlite:///nowhere/never.db", synchronous="off")
