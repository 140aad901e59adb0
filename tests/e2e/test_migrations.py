"""Schema migrations (``orchestrator/store/migrate.py``), on SQLite and PostgreSQL: an
empty database migrated is the models' schema; a v4 database holding runs in every state
is migrated by ``orchestrator migrate`` and its runs then finish; ``serve`` refuses an
old schema, ``dev`` migrates it; migrators at once; the queue table's autovacuum."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text

from orchestrator.store import migrate
from orchestrator.store.db import Database
from orchestrator.store.models import metadata
from tests.e2e.conftest import start_stack
from tests.support import procs
from tests.support.pg import PgCluster

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a SQLite file, or a fresh database of the session's cluster."""
    if request.param == "postgres":
        cluster: PgCluster = request.getfixturevalue("pg")
        return cluster.create_db()
    return f"sqlite:///{tmp_path / 'orchestrator.db'}"


def _diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, metadata))


def _shape(conn: Connection) -> dict[str, Any]:
    """Tables, columns (type, nullability), keys, indexes and unique constraints."""
    insp = inspect(conn)
    out: dict[str, Any] = {}
    for t in sorted(insp.get_table_names()):
        out[t] = {
            "columns": [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
            "pk": insp.get_pk_constraint(t)["constrained_columns"],
            "indexes": sorted((i["name"], tuple(i["column_names"]), bool(i["unique"]))
                              for i in insp.get_indexes(t)),
            "uniques": sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
        }
    return out


def _sql(url: str, *statements: str) -> list[Any]:
    """Run statements in one transaction; the rows of the last one (if it has any)."""
    def run(conn: Connection) -> list[Any]:
        rows: list[Any] = []
        for s in statements:
            result = conn.execute(text(s))
            rows = list(result) if result.returns_rows else []
        return rows
    return migrate.on_connection(url, run)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_")}
    return {**env, "PYTHONPATH": str(procs.ROOT), **extra}


def _migrate_cli(url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", "migrate", "--database-url",
                           url], env=_env(), cwd=procs.ROOT, capture_output=True, text=True,
                          timeout=120)


async def test_an_empty_database_migrated_is_the_models_schema(
        db_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    before, now = migrate.upgrade(db_url)
    assert before.empty and now == migrate.head() == migrate.current(db_url)
    assert migrate.on_connection(db_url, _diff) == []
    migrated = migrate.on_connection(db_url, _shape)
    assert "ix_runs_created" in {i[0] for i in migrated["runs"]["indexes"]}
    assert ("url",) in migrated["apps"]["uniques"]
    # what a new database gets at start (SQLite: create_all and a stamp) is the same
    other = (f"sqlite:///{tmp_path / 'created.db'}" if db_url.startswith("sqlite")
             else request.getfixturevalue("pg").create_db())
    db = Database(other)
    try:
        await db.create_schema()
    finally:
        await db.dispose()
    assert migrate.current(other) == migrate.head()
    assert migrate.on_connection(other, _diff) == []
    assert migrate.on_connection(other, _shape) == migrated
    # and migrating again does nothing
    again, _ = migrate.upgrade(db_url)
    assert again.revision == migrate.head()


def test_each_revision_goes_down_and_up_again(db_url: str) -> None:
    migrate.upgrade(db_url)
    head = migrate.on_connection(db_url, _shape)
    migrate.downgrade(db_url, "0001")
    v4 = migrate.on_connection(db_url, _shape)
    assert "deadline_at" not in [c[0] for c in v4["steps"]["columns"]]
    assert "paused" not in [c[0] for c in v4["crons"]["columns"]]
    assert "ix_events_ts" not in {i[0] for i in v4["events"]["indexes"]}
    migrate.downgrade(db_url, "base")
    assert set(migrate.on_connection(db_url, _shape)) == {"alembic_version"}
    migrate.upgrade(db_url)
    assert migrate.on_connection(db_url, _shape) == head
    assert migrate.on_connection(db_url, _diff) == []


def _make_v4(url: str) -> None:
    """What a database made before migrations at schema version 4 looks like."""
    migrate.downgrade(url, "0001")
    _sql(url, "DROP TABLE alembic_version",
         "INSERT INTO meta (key, value) VALUES ('schema_version', '4')")


async def _until(what: str, check: Any, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = await check()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def _status(rest: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    r = await rest.get(f"/runs/{run_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def _start(rest: httpx.AsyncClient, function: str, input: Any) -> str:
    r = await rest.post("/runs", json={"function": function, "input": input})
    assert r.status_code in (200, 201, 202), r.text
    return r.json()["id"]  # type: ignore[no-any-return]


async def _waiting(rest: httpx.AsyncClient, run_id: str, kind: str) -> bool:
    w = (await _status(rest, run_id))["waiting"]
    return bool(w and w["kind"] == kind)


@pytest.mark.parametrize("db", ["sqlite", "postgres"])
async def test_a_v4_database_with_runs_in_every_state_is_migrated_and_they_finish(
        db: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    url = (request.getfixturevalue("pg").create_db() if db == "postgres"
           else f"sqlite:///{tmp_path / 'orchestrator.db'}")
    stack = start_stack(tmp_path, url)
    try:
        async with stack.rest() as rest:
            done = await _start(rest, "chain", 3)
            failed = await _start(rest, "always-fails", None)
            cancelled = await _start(rest, "long-sleep", None)
            sleeping = await _start(rest, "sleeper", 15)
            waits = {k: await _start(rest, "waiter", {"key": k, "timeout": t})
                     for k, t in (("no-timeout", None), ("timeout", 600.0), ("expires", 12.0))}
            shipped = await _start(rest, "cancellable", {"order_id": "o-shipped"})
            to_cancel = await _start(rest, "cancellable", {"order_id": "o-cancelled"})
            flow = await _start(rest, "durable-dag", "k-mig")
            cron = (await rest.post("/crons", json={"function": "chain", "input": 1,
                                                    "expression": "*/3 * * * * *"})).json()
            at = datetime.now(UTC) + timedelta(seconds=20)
            schedule = (await rest.post("/schedules", json={
                "function": "chain", "input": 2, "at": at.isoformat()})).json()
            for rid, status in ((done, "completed"), (failed, "failed")):
                await _until(f"{rid} {status}", lambda rid=rid, status=status: _is(
                    rest, rid, status))
            await _until("long-sleep sleeping", lambda: _waiting(rest, cancelled, "sleep"))
            assert (await rest.post(f"/runs/{cancelled}/cancel", json={})).status_code == 200
            await _until("sleeper sleeping", lambda: _waiting(rest, sleeping, "sleep"))
            for rid in (*waits.values(), shipped, to_cancel):
                await _until(f"{rid} waiting", lambda rid=rid: _waiting(rest, rid, "event"))

            async def approve_waits() -> bool:
                kids = (await _status(rest, flow))["children"]
                approve = [c for c in kids if c["task"] == "approve"]
                return bool(approve) and await _waiting(rest, approve[0]["id"], "event")
            await _until("the workflow mid-graph", approve_waits)
            await _until("the cron's first fire", lambda: _cron_fired(rest, cron["id"], 0))
            # a run not yet started: the app is down when it is (its delivery fails)
            stack.app.stop()
            queued = await _start(rest, "chain", 2)
            assert (await _status(rest, queued))["status"] in ("queued", "running")
            before = {rid: (await _status(rest, rid))["status"] for rid in
                      (done, failed, cancelled, sleeping, queued, flow, *waits.values())}
        assert before[cancelled] == "cancelled"
        stack.orch.stop()
        _make_v4(url)
        assert migrate.status(url).legacy_version == 4

        p = _migrate_cli(url)
        assert p.returncode == 0, p.stderr
        assert p.stdout.strip() == (f"migrated the database from schema version 4 (before "
                                    f"migrations) to revision {migrate.head()}")
        assert migrate.current(url) == migrate.head()
        assert migrate.on_connection(url, _diff) == []

        stack.app.start()
        restarted = time.time()
        stack.orch.start()
        async with stack.rest() as rest:
            for rid, status in ((done, "completed"), (failed, "failed"),
                                (cancelled, "cancelled")):
                assert (await _status(rest, rid))["status"] == status
            events = [{"name": "test.go", "data": {"key": "no-timeout"}},
                      {"name": "test.go", "data": {"key": "timeout"}},
                      {"name": "order.shipped", "data": {"order_id": "o-shipped"}},
                      {"name": "order.cancelled", "data": {"order_id": "o-cancelled"}},
                      {"name": "flow.approved", "data": {"key": "k-mig", "by": "ops"}}]
            assert (await rest.post("/events", json=events)).status_code == 202
            expect = {sleeping: "completed", queued: "completed", flow: "completed",
                      shipped: "completed", to_cancel: "cancelled",
                      **{rid: "completed" for rid in waits.values()}}
            ended = {}
            for rid in expect:
                r = await rest.get(f"/runs/{rid}/wait", params={"timeout": 60})
                ended[rid] = r.json()
            assert {rid: run["status"] for rid, run in ended.items()} == expect
            assert ended[waits["no-timeout"]]["output"]["event"]["data"] == {"key": "no-timeout"}
            assert ended[waits["timeout"]]["output"]["event"]["data"] == {"key": "timeout"}
            assert ended[waits["expires"]]["output"] == {"event": None}
            assert ended[queued]["output"] == 1 and ended[shipped]["output"] == "shipped"
            assert ended[sleeping]["output"]["slept"] >= 15
            # the cron fires again, the schedule fires (it fell due while stopped or after)
            await _until("the cron fires after the restart",
                         lambda: _cron_fired(rest, cron["id"], restarted))

            async def schedule_run() -> str | None:
                got = (await rest.get(f"/schedules/{schedule['id']}")).json()
                return got["run_id"]  # type: ignore[no-any-return]
            sid_run = await _until("the schedule fires", schedule_run)
            r = await rest.get(f"/runs/{sid_run}/wait", params={"timeout": 60})
            assert r.json()["status"] == "completed" and r.json()["output"] == 1
    finally:
        stack.orch.stop()
        stack.app.stop()


async def _is(rest: httpx.AsyncClient, run_id: str, status: str) -> bool:
    return bool((await _status(rest, run_id))["status"] == status)


async def _cron_fired(rest: httpx.AsyncClient, cron_id: str, after: float) -> bool:
    crons = (await rest.get("/crons")).json()["crons"]
    last = next(c for c in crons if c["id"] == cron_id)["last_fire_at"]
    return last is not None and datetime.fromisoformat(last).timestamp() > after


def _behind(url: str) -> None:
    migrate.upgrade(url)
    migrate.downgrade(url, "0002")


def test_serve_refuses_a_database_behind_in_one_line_and_dev_migrates_it(
        db_url: str, tmp_path: Path) -> None:
    _behind(db_url)
    p = subprocess.run([sys.executable, "-m", "orchestrator", "serve", "--port",
                        str(procs.free_port()), "--database-url", db_url],
                       env=_env(DURABLE_API_KEY=procs.API_KEY,
                                DURABLE_SIGNING_KEY=procs.SIGNING_KEY),
                       cwd=procs.ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode != 0
    out = (p.stdout + p.stderr).strip()
    assert len(out.splitlines()) == 1, out
    assert "revision 0002" in out and "run `orchestrator migrate`" in out, out
    assert migrate.current(db_url) == "0002"  # serve changed nothing

    orch, base = procs.orchestrator(tmp_path, db_url=db_url)
    orch.start(timeout=60)
    try:
        assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
        assert migrate.current(db_url) == migrate.head()
        r = httpx.post(f"{base}/api/v1/events", json={"name": "after.migrating", "data": {}},
                       headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=10)
        assert r.status_code == 202, r.text
    finally:
        orch.stop()


def _cli(db_url: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator", *argv, "--database-url",
                           db_url], env=_env(DURABLE_API_KEY=procs.API_KEY,
                                             DURABLE_SIGNING_KEY=procs.SIGNING_KEY),
                          cwd=procs.ROOT, capture_output=True, text=True, timeout=60)


def test_a_database_a_newer_orchestrator_migrated_is_refused(db_url: str) -> None:
    migrate.upgrade(db_url)
    _sql(db_url, "UPDATE alembic_version SET version_num = '9999'")
    # the newer version says it is not compatible with this one (a contract step)
    _sql(db_url, "UPDATE meta SET value = '9999' WHERE key = 'compatible_from'")
    for argv in (["serve", "--port", str(procs.free_port())], ["dev", "--port",
                                                              str(procs.free_port())],
                 ["migrate"]):
        p = _cli(db_url, *argv)
        out = (p.stdout + p.stderr).strip()
        assert p.returncode != 0, out
        assert len(out.splitlines()) == 1, out
        assert "revision 9999, newer than this orchestrator knows" in out, out
    assert migrate.current(db_url) == "9999"


def test_a_newer_but_compatible_schema_is_run_on_during_a_rolling_upgrade(
        db_url: str) -> None:
    """A newer version's additive migration leaves ``compatible_from`` at this version's
    head: the replicas not yet replaced keep starting (with a warning), and this
    version's ``migrate`` does nothing."""
    migrate.upgrade(db_url)
    _sql(db_url, "UPDATE alembic_version SET version_num = '9999'")
    port = procs.free_port()
    p = subprocess.Popen([sys.executable, "-m", "orchestrator", "serve", "--port",
                          str(port), "--database-url", db_url],
                         env=_env(DURABLE_API_KEY=procs.API_KEY,
                                  DURABLE_SIGNING_KEY=procs.SIGNING_KEY),
                         cwd=procs.ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert p.poll() is None, p.communicate()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "never ready"
            time.sleep(0.1)
    finally:
        p.terminate()
        _, err = p.communicate(timeout=30)
    assert "newer than this orchestrator knows" in err and "rolling upgrade" in err, err
    m = _cli(db_url, "migrate")
    assert m.returncode == 0, m.stderr
    assert migrate.current(db_url) == "9999"


def test_migrate_is_idempotent_and_says_so(db_url: str) -> None:
    first = _migrate_cli(db_url)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == f"created the schema (empty database) at revision " \
                                   f"{migrate.head()}"
    again = _migrate_cli(db_url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"the database is at revision {migrate.head()}: nothing to do"


def _at_once(n: int, fn: Any) -> list[Any]:
    """``fn()`` in ``n`` threads released together; what each returned (or raised)."""
    barrier = threading.Barrier(n)
    out: list[Any] = [None] * n

    def one(i: int) -> None:
        barrier.wait()
        try:
            out[i] = fn()
        except Exception as exc:  # collected: the test shows which failed
            out[i] = exc
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_migrators_at_once_on_postgresql_take_turns(pg: PgCluster) -> None:
    url = pg.create_db()
    _behind(url)
    _make_v4(url)
    results = _at_once(4, lambda: migrate.upgrade(url))
    assert not [r for r in results if isinstance(r, Exception)], results
    befores = sorted(r[0].describe() for r in results)
    # one migrated it; the others, after it, found it at head
    assert befores == [*[f"revision {migrate.head()}"] * 3,
                       "schema version 4 (before migrations)"]
    assert migrate.current(url) == migrate.head()
    assert migrate.on_connection(url, _diff) == []


def test_replicas_starting_at_once_on_an_empty_postgresql_database(pg: PgCluster) -> None:
    url = pg.create_db()

    async def open_one() -> None:
        db = Database(url)
        try:
            await db.create_schema()
        finally:
            await db.dispose()
    results = _at_once(4, lambda: asyncio.run(open_one()))
    assert results == [None] * 4
    assert migrate.current(url) == migrate.head()


def _reloptions(url: str) -> set[str]:
    rows = _sql(url, "SELECT reloptions FROM pg_class WHERE relname = 'queue'")
    return set(rows[0][0] or [])


QUEUE_OPTIONS = {"fillfactor=90", "autovacuum_vacuum_scale_factor=0.01",
                 "autovacuum_vacuum_threshold=50", "autovacuum_analyze_scale_factor=0.02"}


async def test_the_queue_table_has_its_autovacuum_settings(pg: PgCluster) -> None:
    migrated = pg.create_db()
    migrate.upgrade(migrated)
    assert _reloptions(migrated) == QUEUE_OPTIONS
    started = pg.create_db()  # what an orchestrator starting on an empty database makes
    db = Database(started)
    try:
        await db.create_schema()
    finally:
        await db.dispose()
    assert _reloptions(started) == QUEUE_OPTIONS
    migrate.downgrade(started, "0002")
    assert _reloptions(started) == set()
    # a v5 database made before migrations (no options) gets them when migrated
    _sql(started, "DROP TABLE alembic_version",
         "INSERT INTO meta (key, value) VALUES ('schema_version', '5')")
    migrate.upgrade(started)
    assert _reloptions(started) == QUEUE_OPTIONS


def test_migrate_says_in_one_line_why_it_cannot(tmp_path: Path) -> None:
    unreachable = f"postgresql://postgres@127.0.0.1:{procs.free_port()}/none"
    p = _migrate_cli(unreachable)
    assert p.returncode != 0
    assert p.stderr.strip().startswith("orchestrator migrate: "), p.stderr
    assert "Connect call failed" in p.stderr and len(p.stderr.strip().splitlines()) == 1
    old = tmp_path / "old.db"
    _sql(f"sqlite:///{old}", "CREATE TABLE runs (id TEXT PRIMARY KEY)")  # version 1
    p = _migrate_cli(f"sqlite:///{old}")
    assert p.returncode != 0
    assert p.stderr.strip() == (
        "orchestrator migrate: the database has schema version 1, older than the first "
        "migration (schema version 4): use a new database (for `make run`, delete "
        ".durable/dev.db)")
