"""The function registry's cache: served from memory, reloaded once at a time."""

from __future__ import annotations

import asyncio
import time

from orchestrator.engine.registry import Registry
from orchestrator.store import Store


async def register(store: Store, *names: str) -> None:
    async with store.write() as tx:
        await tx.apps.save("app", "http://127.0.0.1:1/api", "sdk",
                           [{"name": n, "kind": "task", "retry": {}} for n in names],
                           time.time())


class Counting(Registry):
    reloads = 0

    async def reload(self) -> None:
        self.reloads += 1
        await asyncio.sleep(0.05)  # a slow database: callers overlap
        await super().reload()


async def test_concurrent_misses_share_one_reload(store: Store) -> None:
    await register(store, "a", "b")
    reg = Counting(store)
    got = await asyncio.gather(*(reg.get_many({"a", "b"}) for _ in range(20)))
    assert reg.reloads == 1
    assert all(sorted(g) == ["a", "b"] for g in got)
    assert await reg.get("zz") is None  # an unknown name: one more reload, then None
    assert reg.reloads == 2


async def test_stale_entries_are_served_while_one_reload_runs(store: Store) -> None:
    await register(store, "a")
    reg = Counting(store, ttl=0.1)
    assert (await reg.get("a")) is not None
    await register(store, "a", "b")  # another replica registered more functions
    await asyncio.sleep(0.15)
    t0 = time.monotonic()
    got = await asyncio.gather(*(reg.get("a") for _ in range(10)))
    assert time.monotonic() - t0 < 0.04  # nobody waited for the reload
    assert all(g is not None for g in got) and reg.reloads == 2  # one background reload
    await asyncio.sleep(0.1)
    assert (await reg.get("b")) is not None and reg.reloads == 2  # it brought "b"


async def test_a_reload_that_read_earlier_does_not_undo_a_later_one(store: Store) -> None:
    """A background reload that read the store before an app registered, and finished
    after the registration's own reload, used to put its older snapshot back: the new
    function vanished from the cache (a POST /runs right after registering got 404)."""
    await register(store, "a")
    reg = Registry(store)
    await reg.reload()
    gate = asyncio.Event()
    real_read = store.read

    def slow_read() -> object:  # the first reload reads now, then stalls before applying
        ctx = real_read()

        class Stalled:
            async def __aenter__(self) -> object:
                return await ctx.__aenter__()

            async def __aexit__(self, *exc: object) -> None:
                await ctx.__aexit__(*exc)
                await gate.wait()

        return Stalled()

    store.read = slow_read  # type: ignore[method-assign]
    early = asyncio.ensure_future(reg.reload())
    await asyncio.sleep(0.05)  # it has read: only "a"
    store.read = real_read  # type: ignore[method-assign]
    await register(store, "a", "b")
    await reg.reload()  # the registration's own reload: "b" is known
    assert await reg.get("b") is not None
    gate.set()
    await early  # the earlier snapshot arrives last
    assert "b" in await reg.all(), "an older snapshot replaced a newer one"  # (fresh: no reload)
