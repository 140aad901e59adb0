"""Saving a registered app (``apps.save_app``): an app's URL and its functions belong to
it alone; and the composition root wires the engine's parts."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from orchestrator.config import Settings
from orchestrator.engine.apps import KeySet, save_app
from orchestrator.engine.engine import Engine
from orchestrator.errors import Conflict
from orchestrator.store import AppKeys, Store


def fn(name: str) -> dict[str, Any]:
    return {"name": name, "kind": "task", "retry": {}}


def code_cron(name: str) -> dict[str, Any]:
    return {"id": f"{name}:x", "function": name, "expression": "* * * * *",
            "timezone": "UTC", "input_json": "null", "source": "code",
            "next_fire_at": time.time() + 60, "created_at": time.time()}


DEFAULT_KEYS: KeySet = frozenset({"orchestrator-key"})


def keys_of(row: AppKeys) -> KeySet:
    return frozenset({row.signing_key}) if row.signing_key else DEFAULT_KEYS


async def save(store: Store, app_id: str, url: str, *functions: str,
               crons: list[dict[str, Any]] | None = None, key: str | None = None) -> None:
    async with store.write() as tx:
        await save_app(tx, app_id, url, "sdk", [fn(f) for f in functions], crons or [],
                       time.time(), signing_key=key,
                       verified_with=frozenset({key}) if key else DEFAULT_KEYS,
                       keys_of=keys_of)


async def test_an_app_registered_again_replaces_its_functions_and_code_crons(
    store: Store,
) -> None:
    await save(store, "shop", "http://127.0.0.1:1/api", "charge", "refund",
               crons=[code_cron("refund")])
    await save(store, "shop", "http://127.0.0.1:1/api", "charge")
    async with store.read() as tx:
        fns = await tx.apps.list_functions()
        crons = await tx.crons.all(None)
    assert [(f.app_id, f.name) for f in fns] == [("shop", "charge")]
    assert crons == []  # the cron of the function it no longer declares went with it


async def test_a_url_registered_as_another_app_is_refused(store: Store) -> None:
    await save(store, "shop", "http://127.0.0.1:1/api", "charge")
    with pytest.raises(Conflict, match="registered as app 'shop'") as e:
        await save(store, "billing", "http://127.0.0.1:1/api", "invoice")
    assert e.value.field == "url"


async def test_functions_of_another_app_are_refused(store: Store) -> None:
    await save(store, "shop", "http://127.0.0.1:1/api", "charge")
    with pytest.raises(Conflict, match=r"another app: \['charge'\]") as e:
        await save(store, "billing", "http://127.0.0.1:2/api", "invoice", "charge")
    assert e.value.field == "functions"
    async with store.read() as tx:
        fns = await tx.apps.list_functions()
    assert [(f.app_id, f.name) for f in fns] == [("shop", "charge")]  # nothing saved


def test_the_engine_wires_the_hub_to_its_dispatcher_and_scheduler(tmp_path: Path) -> None:
    engine = Engine(Settings(database_url=f"sqlite:///{tmp_path / 'e.db'}", api_keys=["k"],
                             signing_key="s" * 32))
    assert engine.hub.handoff is engine.dispatcher
    assert engine.hub.timers == engine.scheduler.poke_at


async def test_an_app_cannot_be_registered_over_with_another_apps_key(store: Store) -> None:
    await save(store, "a", "http://127.0.0.1:1/api", "fa", key="key-of-a")
    with pytest.raises(Conflict) as e:  # B's key, claiming A's id at B's URL
        await save(store, "a", "http://127.0.0.1:2/api", "fb", key="key-of-b")
    assert e.value.field == "signing_key"
    with pytest.raises(Conflict):  # nor with the orchestrator's own key
        await save(store, "a", "http://127.0.0.1:2/api", "fb")
    await save(store, "a", "http://127.0.0.1:1/api", "fa2", key="key-of-a")  # its own: ok
    async with store.read() as tx:
        row = await tx.apps.get("a")
        fns = await tx.apps.list_functions()
    assert row is not None and row.signing_key == "key-of-a"
    assert [f.name for f in fns] == ["fa2"]
