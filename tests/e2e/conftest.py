from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from orchestrator.store import Store
from sdk import Client
from tests.support import procs
from tests.support.pg import PgCluster


@dataclass
class Stack:
    tmp: Path
    orch: procs.Proc
    app: procs.Proc
    base: str
    app_url: str
    effects: Path

    def client(self) -> Client:
        return Client(orchestrator_url=self.base, api_key=procs.API_KEY,
                      signing_key=procs.SIGNING_KEY)

    def rest(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=f"{self.base}/api/v1", timeout=30,
                                 headers={"authorization": f"Bearer {procs.API_KEY}"})


def start_stack(tmp: Path, db_url: str | None = None) -> Stack:
    effects = tmp / "effects.log"
    app, app_url = procs.app(tmp, extra_env={"TESTAPP_EFFECTS": str(effects),
                                             "TESTAPP_FLAGS": str(tmp)})
    app.start()
    orch, base = procs.orchestrator(tmp, app_url=app_url, db_url=db_url)
    orch.start()
    stack = Stack(tmp, orch, app, base, app_url, effects)
    try:
        r = httpx.post(f"{base}/api/v1/apps", json={"url": app_url},
                       headers={"authorization": f"Bearer {procs.API_KEY}"}, timeout=10)
        assert r.status_code == 200, r.text
    except BaseException:
        orch.stop()
        app.stop()
        raise
    return stack


@contextmanager
def running_stack(request: pytest.FixtureRequest, tmp: Path, db: str) -> Iterator[Stack]:
    """A stack on ``db`` ("sqlite", or "postgres": a fresh database of the session's
    cluster), stopped afterwards."""
    db_url = request.getfixturevalue("pg").create_db() if db == "postgres" else None
    s = start_stack(tmp, db_url)
    try:
        yield s
    finally:
        s.orch.stop()
        s.app.stop()


@pytest.fixture(scope="session")
def pg() -> Iterator[PgCluster]:
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def store(pg: PgCluster) -> AsyncIterator[Store]:
    """A ``Store`` opened on a fresh database of the session's PostgreSQL cluster."""
    s = Store(pg.create_db())
    await s.open()
    yield s
    await s.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def stack(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[Stack]:
    """The orchestrator (on SQLite, then on PostgreSQL) and the test app."""
    with running_stack(request, tmp_path_factory.mktemp("stack"), request.param) as s:
        yield s


@pytest.fixture
async def client(stack: Stack) -> AsyncIterator[Client]:
    c = stack.client()
    yield c
    await c.aclose()


@pytest.fixture
async def rest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with stack.rest() as r:
        yield r


@pytest.fixture(scope="module")
def bad_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An app declaring broken workflows; its base URL (append the case)."""
    proc, url = procs.app(tmp_path_factory.mktemp("bad"), "tests.apps.badapp:app")
    proc.start()
    try:
        yield url.rsplit("/api/durable", 1)[0]
    finally:
        proc.stop()
