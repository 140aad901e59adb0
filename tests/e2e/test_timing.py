"""Short delays are honoured: a run is claimed when it falls due, not at the next poll."""

from __future__ import annotations

import itertools
import time

from sdk import Client


async def test_short_sleep_ends_on_time(client: Client) -> None:
    # warm up (the app's first call, the registry) before measuring
    assert (await client.run("sleeper", 0.0, timeout=20))["slept"] >= 0
    for _ in range(3):
        t0 = time.monotonic()
        out = await client.run("sleeper", 0.5, timeout=20)
        elapsed = time.monotonic() - t0
        assert out["slept"] >= 0.5
        # it was rounded up to the dispatcher's 1 s poll (0.99 s measured)
        assert elapsed < 0.8, elapsed


async def test_short_retry_delays_are_honoured(client: Client) -> None:
    times = await client.run("timed-retry", timeout=20)
    assert len(times) == 3
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, want in zip(gaps, (0.2, 0.4), strict=True):
        assert want - 0.01 <= gap < want + 0.15, gaps
