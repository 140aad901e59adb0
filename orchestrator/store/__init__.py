"""The store: all SQL lives here, split by aggregate, behind ``Store.write()/read()``."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from orchestrator.errors import DatabaseUnavailable
from orchestrator.loops import Health
from orchestrator.store.apps import AppsRepo
from orchestrator.store.db import (
    Backend,
    Conn,
    Database,
    DatabaseInUse,
    SchemaError,
    driver_reason,
)
from orchestrator.store.events import EventsRepo
from orchestrator.store.flow import FlowRepo, FlowSlot
from orchestrator.store.keys import KeysRepo
from orchestrator.store.queue import QueueRepo
from orchestrator.store.retention import RetentionRepo
from orchestrator.store.rows import (
    ApiKeyGrant,
    ApiKeyInsert,
    ApiKeyRow,
    AppKeys,
    AppRow,
    ChildRow,
    ClaimedRow,
    CreatedRun,
    CronInsert,
    CronRow,
    EventInsert,
    EventRow,
    EventRunIds,
    MatchedWait,
    MisconfiguredApp,
    QueueFlow,
    QueueInsert,
    RegisteredFunction,
    Row,
    RunCore,
    RunInsert,
    RunRow,
    RunSummaryRow,
    ScheduleInsert,
    ScheduleRow,
    StepInsert,
    StepRow,
    TakenWait,
    WaitInsert,
    WebhookSourceInsert,
    WebhookSourceRow,
)
from orchestrator.store.runs import RunsRepo
from orchestrator.store.schedules import CronsRepo, SchedulesRepo
from orchestrator.store.steps import StepsRepo
from orchestrator.store.waits import WaitsRepo
from orchestrator.store.webhooks import WebhooksRepo

T = TypeVar("T")
log = logging.getLogger("orchestrator.store")


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
        self.keys = KeysRepo(conn, backend)
        self.webhooks = WebhooksRepo(conn, backend)
        self.retention = RetentionRepo(conn, backend)
        self.flow = FlowRepo(conn, backend)


class Store:
    def __init__(self, url: str, *, pool_size: int = 40, synchronous: str = "full") -> None:
        self.db = Database(url, pool_size=pool_size, synchronous=synchronous)

    @property
    def backend(self) -> Backend:
        return self.db.backend

    @property
    def health(self) -> Health:
        """The database's health and that of the loops the engine supervises."""
        return self.db.health

    def storage_problem(self) -> str | None:
        """Why writes cannot be stored (the database is full), or None."""
        return self.db.storage_problem()

    @property
    def exclusive(self) -> bool:
        """Whether this process is the only orchestrator on this database."""
        return self.db.exclusive

    async def open(self, wait: float = 0.0) -> None:
        """Create or check the schema. A database that cannot be reached yet is tried
        again (backoff 0.1 s doubling to 2 s) for ``wait`` seconds, then
        ``DatabaseUnavailable`` says why."""
        deadline = time.monotonic() + wait
        delay = 0.1
        while True:
            try:
                await self.db.create_schema()
                return
            except (DatabaseInUse, SchemaError):
                raise  # reasons not to start, not to wait (DatabaseInUse wraps an OSError)
            except Exception as exc:
                if self.db.backend.failure(exc) != "unavailable":
                    raise
                why = driver_reason(exc)
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(
                        f"could not reach the database within {wait:g} s "
                        f"(DURABLE_DB_CONNECT_WAIT): {why}") from exc
                log.warning("the database cannot be reached yet (%s); retrying", why)
                await asyncio.sleep(delay)
                delay = min(2.0, delay * 2)

    def inject_faults(self) -> None:
        """The test hook ``DURABLE_TEST_FAULT_RATE``: from now on, fail that share of
        statements with a connection error (nothing unless the variable is set)."""
        self.db.inject_faults()

    async def close(self) -> None:
        await self.db.dispose()

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Tx]:
        async with self.db.write_conn() as conn:
            yield Tx(conn, self.db.backend)

    async def transact(self, work: Callable[[Tx], Awaitable[T]], attempts: int = 5) -> T:
        """Run ``work`` in a write transaction, again (after a short random pause) when
        the database aborted it for a reason that retrying cures (a PostgreSQL deadlock
        or serialization failure between concurrent transactions)."""
        for attempt in range(attempts):
            try:
                async with self.write() as tx:
                    return await work(tx)
            except Exception as exc:
                if attempt + 1 >= attempts or not self.db.backend.is_retryable(exc):
                    raise
                log.info("transaction aborted (%s); running it again", exc.__class__.__name__)
                await asyncio.sleep(random.uniform(0.005, 0.02) * 2**attempt)
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self.db.read_conn() as conn:
            yield Tx(conn, self.db.backend)


__all__ = [
    "ApiKeyGrant",
    "ApiKeyInsert",
    "ApiKeyRow",
    "AppKeys",
    "AppRow",
    "ChildRow",
    "ClaimedRow",
    "CreatedRun",
    "CronInsert",
    "CronRow",
    "EventInsert",
    "EventRow",
    "EventRunIds",
    "FlowSlot",
    "MatchedWait",
    "MisconfiguredApp",
    "QueueFlow",
    "QueueInsert",
    "RegisteredFunction",
    "Row",
    "RunCore",
    "RunInsert",
    "RunRow",
    "RunSummaryRow",
    "ScheduleInsert",
    "ScheduleRow",
    "StepInsert",
    "StepRow",
    "Store",
    "TakenWait",
    "Tx",
    "WaitInsert",
    "WebhookSourceInsert",
    "WebhookSourceRow",
]
