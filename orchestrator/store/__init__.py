"""The store: all SQL lives here, split by aggregate, behind ``Store.write()/read()``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from orchestrator.store.apps import AppsRepo
from orchestrator.store.db import Backend, Conn, Database
from orchestrator.store.events import EventsRepo
from orchestrator.store.queue import QueueRepo
from orchestrator.store.runs import RunsRepo
from orchestrator.store.schedules import CronsRepo, SchedulesRepo
from orchestrator.store.steps import StepsRepo
from orchestrator.store.waits import WaitsRepo


class Tx:
    """One transaction's repositories."""

    def __init__(self, conn: Conn, backend: Backend) -> None:
        self.apps = AppsRepo(conn, backend)
        self.runs = RunsRepo(conn, backend)
        self.steps = StepsRepo(conn, backend)
        self.queue = QueueRepo(conn, backend)
        self.waits = WaitsRepo(conn, backend)
        self.events = EventsRepo(conn, backend)
        self.schedules = SchedulesRepo(conn, backend)
        self.crons = CronsRepo(conn, backend)


class Store:
    def __init__(self, url: str) -> None:
        self.db = Database(url)

    @property
    def backend(self) -> Backend:
        return self.db.backend

    async def open(self) -> None:
        await self.db.create_schema()

    async def close(self) -> None:
        await self.db.dispose()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.db.write_conn() as conn:
            yield Tx(conn, self.db.backend)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self.db.read_conn() as conn:
            yield Tx(conn, self.db.backend)


__all__ = ["Store", "Tx"]
