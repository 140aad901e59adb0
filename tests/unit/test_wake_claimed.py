"""A run woken by the transaction that resolves its wait (an event, its children
gathered) is claimed by that transaction for this replica's dispatcher, while it has
room (``lifecycle.wake_runs``): no claim transaction, no wake-up in between."""

from __future__ import annotations

import time
from typing import Any

from orchestrator.engine.claim import Claim, Lease
from orchestrator.engine.hub import Hub
from orchestrator.engine.ingest import NewRun, create_runs, ingest_events
from orchestrator.engine.lifecycle import Effects
from orchestrator.engine.notifier import Notifier
from orchestrator.engine.registry import Registry
from orchestrator.store import Store, Tx
from orchestrator.store.queue import NEVER
from sdk import protocol as p

WAITER = {"name": "waiter", "kind": "task", "retry": {}}
LIMITED = {"name": "limited", "kind": "task", "retry": {}, "concurrency": [{"limit": 2}]}


class Dispatcher:
    """A handoff with ``room`` calls free: what it adopted."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.adopted: list[Claim] = []

    def lease(self) -> Lease | None:
        return Lease("me", time.time() + 30, self.room) if self.room else None

    def adopt(self, claims: list[Claim]) -> None:
        self.adopted += claims

    def applied(self, claims: list[Claim]) -> None:
        pass


async def parked_waiter(store: Store, hub: Hub, function: str = "waiter") -> str:
    """A run of ``function`` waiting for ``ping`` with ``data.k == 1``, its call over."""
    [rid] = await hub.transact(lambda tx, fx: create_runs(
        tx, [NewRun(function, "null")], time.time(), fx))
    async with store.write() as tx:
        await tx.waits.add([{
            "run_id": rid, "step_id": "w", "purpose": "wait", "seq": 0, "name": "w",
            "event": "ping", "match_fields": p.match_fields({"data.k": 1}),
            "match_key": p.match_key("ping", {"data.k": 1}),
            "match_json": '{"data.k": 1}', "expires_at": None, "created_at": time.time()}])
        await tx.runs.set_waiting(rid, '{"kind": "event", "event": "ping"}')
        await tx.queue.park(rid)
    return rid


async def hub_for(store: Store, room: int, *configs: dict[str, Any]) -> tuple[Hub, Dispatcher]:
    async with store.write() as tx:
        await tx.apps.save("app", "http://127.0.0.1:1/api", "sdk", list(configs), time.time())
    hub = Hub(store, Registry(store), Notifier())
    d = Dispatcher(room)
    hub.wire(d, lambda t: None)
    return hub, d


def send_ping(hub: Hub) -> Any:
    async def work(tx: Tx, fx: Effects) -> Any:
        return await ingest_events(tx, [{"name": "ping", "data": {"k": 1}}], time.time(), fx)
    return hub.transact(work)


async def test_an_event_hands_its_waiting_run_to_the_dispatcher_claimed(store: Store) -> None:
    hub, d = await hub_for(store, 0, WAITER)  # no room while the run is created
    rid = await parked_waiter(store, hub)
    d.room = 5
    await send_ping(hub)
    [c] = d.adopted
    assert c.run_id == rid and c.claims == 1
    assert [m.kind for m in c.memo] == [p.MemoKind.WAIT]  # the wait's outcome, recorded
    async with store.read() as tx:
        fences = await tx.queue.fences([rid])
    assert fences[rid] == ("me", 1)  # leased to this replica under claim number 1


async def test_without_room_or_in_a_concurrency_group_it_is_made_due(store: Store) -> None:
    hub, d = await hub_for(store, 0, WAITER, LIMITED)
    plain = await parked_waiter(store, hub)
    await send_ping(hub)
    assert d.adopted == []
    limited = await parked_waiter(store, hub, "limited")
    d.room = 5
    await send_ping(hub)
    assert d.adopted == []  # the limited claim counts its group's slots: not here
    now = time.time()
    async with store.read() as tx:
        fences = await tx.queue.fences([plain, limited])
        due = await tx.queue.next_due(now + 1)
    assert fences == {plain: (None, 0), limited: (None, 0)}
    assert due is not None and due < NEVER  # both due now, for the dispatcher's claim
