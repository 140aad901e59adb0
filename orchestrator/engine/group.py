"""Group commit of triggers: concurrent requests that start runs or send events share one
transaction, so one commit (one fsync at full durability) acknowledges them all.

At ``synchronous=FULL`` a commit waits for the disk (1-2 ms here), and SQLite has one
writer: 50 clients starting runs at once were 50 commits in a row, and the rate was the
disk's. Requests now queue their work; a drain takes what is queued (up to ``MAX_BATCH``)
and runs it in one ``Hub.transact``; each request gets its own result once that commits.
A request alone is not delayed: the drain starts at once and its batch is that request.
If a batch fails, its works are run again one by one, so one request's error (a conflict,
bad input) reaches that request only, and the others still commit.

On PostgreSQL, which commits concurrent transactions in parallel, several drains run at
once (``parallel``); on SQLite one. A group's works lock rows one work after another, so
two groups committing at once may lock the same rows in opposite orders: on PostgreSQL
that is a deadlock, detected after ``deadlock_timeout`` (1 s) and retried. Works that
lock shared rows (flow-control keys, idempotency keys, the guards of event names) are
therefore run ``alone`` there (``Engine.start_runs``, ``send_events``): a batch's
partial runs started up to a second late before that (tests/e2e/test_flow_lim.py). On
SQLite, with one writer, nothing can wait on another transaction's lock.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from orchestrator.engine.hub import Hub
from orchestrator.engine.lifecycle import Effects
from orchestrator.store import Tx

log = logging.getLogger("orchestrator.group")

T = TypeVar("T")
Work = Callable[[Tx, Effects], Awaitable[Any]]

MAX_BATCH = 128


class GroupCommit:
    def __init__(self, hub: Hub, parallel: int = 1) -> None:
        self.hub = hub
        self.parallel = parallel
        self._queue: list[tuple[Work, asyncio.Future[Any]]] = []
        self._drains = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def transact(self, work: Callable[[Tx, Effects], Awaitable[T]], *,
                       alone: bool = False) -> T:
        """Run ``work`` in a transaction shared with the others queued meanwhile; its
        result (or its exception) once that committed. ``alone``: in a transaction of
        its own, at once (a work whose row locks must not be taken in another order than
        its own: see the module's doc)."""
        if alone:
            return await self.hub.transact(work)
        fut: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((work, fut))
        if self._drains < self.parallel:
            self._drains += 1
            t = asyncio.create_task(self._drain(), name="group commit")
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)
        return await fut

    async def _drain(self) -> None:
        batch: list[tuple[Work, asyncio.Future[Any]]] = []
        try:
            while self._queue:
                batch = self._queue[:MAX_BATCH]
                del self._queue[:MAX_BATCH]
                await self._commit(batch)
        except BaseException:  # cancelled (the engine stops): no caller waits forever
            for _, fut in batch:
                if not fut.done():
                    fut.cancel()
            raise
        finally:
            self._drains -= 1

    async def _commit(self, batch: list[tuple[Work, asyncio.Future[Any]]]) -> None:
        if len(batch) > 1:
            results: list[Any] = []

            async def all_of(tx: Tx, fx: Effects) -> None:
                results.clear()  # a retried attempt starts again
                for work, _ in batch:
                    results.append(await work(tx, fx))

            try:
                await self.hub.transact(all_of)
            except Exception as exc:
                if len(results) == len(batch):
                    # every work ran: what failed is the commit or after it, which may
                    # have committed; running them again could do them twice
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    return
                # a work failed, so nothing committed: each again on its own, its error
                # to its own caller
                log.debug("a group of %d failed; committing them one by one", len(batch),
                          exc_info=True)
            else:
                for (_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():  # (its caller may have gone)
                        fut.set_result(result)
                return
        for work, fut in batch:
            try:
                result = await self.hub.transact(work)
            except Exception as exc:
                if not fut.done():
                    fut.set_exception(exc)
            else:
                if not fut.done():
                    fut.set_result(result)
