"""The SDK's cache of call ids: a call id is answered once within its window."""

from __future__ import annotations

import pytest

from sdk._replay import ReplayCache

NOW = 1_700_000_000.0


def test_a_call_id_is_refused_the_second_time_within_the_window() -> None:
    c = ReplayCache(window=60)
    assert c.first_use("r:1", NOW, now=NOW)
    assert not c.first_use("r:1", NOW, now=NOW + 1)
    assert not c.first_use("r:1", NOW + 30, now=NOW + 59)  # re-signed: still refused
    assert c.first_use("r:2", NOW, now=NOW + 1)  # the next claim's call id


def test_an_entry_is_kept_until_its_request_could_no_longer_verify() -> None:
    c = ReplayCache(window=60)
    assert c.first_use("r:1", NOW + 50, now=NOW)  # signed ahead (clock skew)
    assert not c.first_use("r:1", NOW + 50, now=NOW + 105)  # still verifiable until +110
    assert c.first_use("other", NOW + 111, now=NOW + 111)
    assert "r:1" not in c._seen and len(c) == 1  # expired entries are dropped


def test_the_cache_is_bounded() -> None:
    c = ReplayCache(window=60, max_entries=3)
    for i in range(5):
        assert c.first_use(f"r:{i}", NOW, now=NOW)
    assert len(c) == 3
    assert not c.first_use("r:4", NOW, now=NOW)
    assert c.first_use("r:0", NOW, now=NOW)  # evicted first: the documented limit
    with pytest.raises(ValueError):
        ReplayCache(window=60, max_entries=0)
