"""API keys in the engine (``engine/keys.py``) on a real SQLite store: only the hash is
kept, scopes are granted as stored, revocation holds at once here and within the cache's
lifetime on another replica, ``last_used_at`` is written at most once per interval, and
the settings' keys are admin keys that never touch the database."""

from __future__ import annotations

import hashlib

import pytest

from orchestrator.engine.keys import KEY_START, PREFIX_CHARS, SETTINGS_GRANT, Keys, key_hash
from orchestrator.errors import NotFound
from orchestrator.store import Store
from orchestrator.store.models import api_keys


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_key_is_stored_as_its_sha256_only(store: Store) -> None:
    keys = Keys(store, [])
    made = await keys.create("ci", ["read"])
    key = made["key"]
    assert key.startswith(KEY_START) and len(key) == len(KEY_START) + 43
    assert made["prefix"] == key[:PREFIX_CHARS] and made["scopes"] == ["read"]
    async with store.read() as tx:
        stored = [r._asdict() for r in await tx.keys.conn.execute(api_keys.select())]
    assert len(stored) == 1
    assert stored[0]["hash"] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in repr(stored)


async def test_list_never_shows_the_key_or_its_hash(store: Store) -> None:
    keys = Keys(store, [])
    made = await keys.create("browser", ["events", "read"])
    listed = await keys.list()
    assert [k["id"] for k in listed] == [made["id"]]
    assert "key" not in listed[0] and "hash" not in listed[0]
    assert made["key"] not in repr(listed) and key_hash(made["key"]) not in repr(listed)
    assert listed[0]["scopes"] == ["events", "read"] and listed[0]["revoked_at"] is None


async def test_grant_gives_the_stored_scopes_and_none_for_unknown_keys(store: Store) -> None:
    keys = Keys(store, [])
    made = await keys.create("sender", ["events"])
    grant = await keys.grant(made["key"])
    assert grant is not None and grant.key_id == made["id"]
    assert grant.allows("events") and not grant.allows("read") and not grant.allows("admin")
    assert await keys.grant(made["key"] + "x") is None
    assert await keys.grant("") is None


async def test_settings_keys_are_admin_without_the_database() -> None:
    keys = Keys(Store("sqlite:///nowhere/never-opened.db"), ["k1", "k2"])  # never opened
    assert await keys.grant("k2") is SETTINGS_GRANT
    assert SETTINGS_GRANT.allows("read") and SETTINGS_GRANT.allows("events")


async def test_revocation_holds_at_once_here_and_after_the_cache_elsewhere(
        store: Store) -> None:
    clock = Clock()
    here, there = Keys(store, [], clock=clock), Keys(store, [], clock=clock)
    made = await here.create("k", ["admin"])
    assert await here.grant(made["key"]) is not None
    assert await there.grant(made["key"]) is not None  # cached there now
    await here.revoke(made["id"])
    assert await here.grant(made["key"]) is None
    assert await there.grant(made["key"]) is not None  # within the cache's lifetime
    clock.now += there.cache_seconds
    assert await there.grant(made["key"]) is None
    listed = await here.list()
    assert listed[0]["revoked_at"] is not None
    await here.revoke(made["id"])  # again: nothing changes
    with pytest.raises(NotFound):
        await here.revoke("no-such-key")


async def test_unknown_keys_are_cached_too(store: Store) -> None:
    clock = Clock()
    keys = Keys(store, [], clock=clock)
    assert await keys.grant("dk_guess") is None
    await store.close()  # no database: a cached answer needs none
    assert await keys.grant("dk_guess") is None


async def test_last_used_is_written_at_most_once_per_interval(store: Store) -> None:
    clock = Clock()
    keys = Keys(store, [], clock=clock, cache_seconds=1000)
    made = await keys.create("k", ["read"])
    assert (await keys.list())[0]["last_used_at"] is None
    await keys.grant(made["key"])
    await keys.settle()
    first = (await keys.list())[0]["last_used_at"]
    assert first is not None
    async with store.write() as tx:
        await tx.keys.used([made["id"]], 0.0)  # mark it, to see whether it is written
    clock.now += keys.used_every / 2
    await keys.grant(made["key"])
    await keys.settle()
    assert (await keys.list())[0]["last_used_at"] == "1970-01-01T00:00:00Z"
    clock.now += keys.used_every
    await keys.grant(made["key"])
    await keys.settle()
    assert (await keys.list())[0]["last_used_at"] != "1970-01-01T00:00:00Z"
