"""What the catalog pages read: the events list (newest first, a stable cursor), a cron's
pause kept across a re-sync, and the apps' last contact (noted in memory by the invoker,
written by the prober only when it moved)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import respx

from orchestrator.config import Settings
from orchestrator.engine.engine import Engine
from orchestrator.engine.invoker import Delivered, Invoker
from orchestrator.engine.probe import Prober
from orchestrator.errors import ApiError, NotFound
from sdk import protocol as p
from tests.unit.test_apps import code_cron, save
from tests.unit.test_invoker import CALL_ID, KEY, answer, request_body, signed_response

URL = "http://app.test/api/durable"


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[Engine]:
    """An engine whose store is open (its loops not started)."""
    e = Engine(Settings(database_url=f"sqlite:///{tmp_path / 'c.db'}", api_keys=["k"],
                        signing_key="s" * 32))
    await e.store.open()
    yield e
    await e.invoker.close()
    await e.store.close()


async def add_events(engine: Engine, *events: tuple[str, str, float]) -> None:
    async with engine.store.write() as tx:
        await tx.events.insert_new([{"id": i, "name": n, "data_json": f'{{"id": "{i}"}}',
                                     "ts": ts, "run_ids_json": "[]"} for i, n, ts in events])


# -- events ----------------------------------------------------------------------------------

async def test_events_page_newest_first_with_a_stable_cursor(engine: Engine) -> None:
    # three events share a time: the id breaks the tie, and no page repeats or skips one
    await add_events(engine, ("e1", "a", 10.0), ("e2", "b", 20.5), ("e3", "a", 20.5),
                     ("e4", "a", 20.5), ("e5", "b", 30.0))
    seen: list[str] = []
    cursor = None
    while True:
        page = await engine.list_events(None, 2, cursor)
        seen += [e["id"] for e in page["events"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["e5", "e4", "e3", "e2", "e1"]
    # an event arriving meanwhile does not shift a page already handed out
    first = await engine.list_events(None, 2, None)
    await add_events(engine, ("e6", "a", 40.0))
    second = await engine.list_events(None, 2, first["next_cursor"])
    assert [e["id"] for e in second["events"]] == ["e3", "e2"]
    only_a = await engine.list_events("a", 10, None)
    assert [e["id"] for e in only_a["events"]] == ["e6", "e4", "e3", "e1"]
    assert only_a["next_cursor"] is None and only_a["events"][0]["ts"] == 40.0


@pytest.mark.parametrize("cursor", ["nope", "W10", "WyJ4IiwgMV0", "%%%", "e30"])
async def test_a_cursor_the_api_did_not_give_is_400(engine: Engine, cursor: str) -> None:
    with pytest.raises(ApiError) as e:
        await engine.list_events(None, 10, cursor)
    assert e.value.status == 400 and e.value.field == "cursor"


async def test_an_event_shows_the_runs_it_started(engine: Engine) -> None:
    async with engine.store.write() as tx:
        await tx.runs.insert_many([
            {"id": "r1", "function": "f", "input_json": "1", "timeout_at": None,
             "parent_id": None, "parent_step": None},
            {"id": "r2", "function": "g", "input_json": "1", "timeout_at": None,
             "parent_id": None, "parent_step": None}])
        await tx.events.insert_new([{"id": "ev", "name": "n", "data_json": '{"x": 1}',
                                     "ts": 5.0, "run_ids_json": '["r2", "gone", "r1"]'}])
    got = await engine.get_event("ev")
    assert got == {"id": "ev", "name": "n", "data": {"x": 1}, "ts": 5.0,
                   "runs": [{"id": "r2", "function": "g", "status": "queued"},
                            {"id": "r1", "function": "f", "status": "queued"}]}
    listed = await engine.list_events(None, 10, None)
    assert listed["events"] == [{"id": "ev", "name": "n", "ts": 5.0,
                                 "runs": ["r2", "gone", "r1"]}]
    with pytest.raises(NotFound):
        await engine.get_event("nope")


# -- crons -----------------------------------------------------------------------------------

async def test_a_paused_code_cron_stays_paused_when_its_app_syncs_again(
    engine: Engine,
) -> None:
    store = engine.store
    await save(store, "shop", "http://127.0.0.1:1/api", "refund", crons=[code_cron("refund")])
    paused = await engine.pause_cron("refund:x")
    assert paused["paused"] is True and paused["source"] == "code"
    await save(store, "shop", "http://127.0.0.1:1/api", "refund", crons=[code_cron("refund")])
    assert (await engine.get_cron("refund:x"))["paused"] is True
    resumed = await engine.resume_cron("refund:x")
    assert resumed["paused"] is False
    # resuming starts from the first tick after now, never one missed while paused
    assert resumed["next_fire_at"] is not None
    nxt = resumed["next_fire_at"].replace("Z", "+00:00")
    assert datetime.fromisoformat(nxt).timestamp() > time.time()
    for act in (engine.get_cron, engine.pause_cron, engine.resume_cron):
        with pytest.raises(NotFound):
            await act("nope")


async def test_function_detail_has_its_app_and_crons(engine: Engine) -> None:
    await save(engine.store, "shop", "http://127.0.0.1:1/api", "refund",
               crons=[code_cron("refund")])
    fn = await engine.get_function("refund")
    assert fn["name"] == "refund" and fn["kind"] == "task" and fn["retry"] == {}
    assert fn["app"]["id"] == "shop" and fn["app"]["last_contact_at"] is None
    assert [c["id"] for c in fn["cron_triggers"]] == ["refund:x"]
    with pytest.raises(NotFound):
        await engine.get_function("nope")


# -- last contact ----------------------------------------------------------------------------

@pytest.mark.respx(using="httpx")
async def test_last_contact_is_noted_in_memory_and_flushed_when_it_moved(
    engine: Engine, respx_mock: respx.MockRouter,
) -> None:
    await save(engine.store, "shop", URL, "refund")
    invoker = Invoker(p.Signer(KEY), timeout=5.0)
    prober = Prober(engine.store, invoker, engine.settings)
    try:
        respx_mock.post(URL).mock(side_effect=[
            httpx.Response(503, text="busy"),  # not an answer that verified
            signed_response(p.dumps(answer())),
        ])
        await invoker.invoke(URL, request_body(), CALL_ID)
        assert invoker.contacts == {}
        before = time.time()
        assert isinstance(await invoker.invoke(URL, request_body(), CALL_ID), Delivered)
        noted = invoker.contacts[URL]
        assert noted >= before
        # the first contact is written at the next pass, even while the idle prober reads
        # the store only every idle_interval (it had just read it)
        prober.interval, prober.idle_interval = 0.0, 3600.0
        prober._looked_at = time.time()
        await prober.run_once()
        assert (await engine.list_apps())[0]["last_contact_at"] == noted
        # a later answer waits for the interval; then only what moved is written
        invoker.contacts[URL] = noted + 5
        await prober.run_once()
        assert (await engine.list_apps())[0]["last_contact_at"] == noted
        prober.contact_flush = 0.0
        await prober.run_once()
        assert (await engine.list_apps())[0]["last_contact_at"] == noted + 5
        async with engine.store.write() as tx:  # a flush of nothing new writes nothing
            await tx.apps.set_last_contact({URL: noted + 1})  # never moves back, either
        await prober.run_once()
        assert (await engine.list_apps())[0]["last_contact_at"] == noted + 5
    finally:
        await invoker.close()
