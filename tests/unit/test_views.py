"""``views.iso``: a stored time no date-time can show does not break a listing."""

from __future__ import annotations

import pytest

from orchestrator.engine import views


@pytest.mark.parametrize("ts", [1e20, -1e20, 1e300, float("inf"), float("-inf"), float("nan")])
def test_iso_of_a_time_out_of_range_is_none(ts: float) -> None:
    assert views.iso(ts) is None


def test_iso_of_a_time_in_range() -> None:
    assert views.iso(0.0) == "1970-01-01T00:00:00Z"
    assert views.iso(253402300799.0) == "9999-12-31T23:59:59Z"
    assert views.iso(None) is None
