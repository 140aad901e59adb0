"""Query parameters and run filters as typed values, with errors that name the field."""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.api.bodies import RunFilterBody
from orchestrator.api.fields import epoch
from orchestrator.engine.engine import RunFilter
from orchestrator.errors import Invalid


def float_param(request: Request, name: str, default: float, lo: float, hi: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        v = float(raw)
    except ValueError:
        raise Invalid(f"'{name}' must be a number", name) from None
    if not lo <= v <= hi:
        raise Invalid(f"'{name}' must be within [{lo}, {hi}]", name)
    return v


def time_param(request: Request, name: str) -> float | None:
    """A time in the query (None if absent): epoch seconds, or ISO-8601 with a time zone
    (within ``fields.epoch``'s range)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        value: float | str = float(raw)
    except ValueError:
        value = raw
    return epoch(value, name)


def run_filter(body: RunFilterBody) -> RunFilter:
    """The engine's filter of a validated bulk cancel or replay body."""
    return RunFilter(body.function, body.status, body.since, body.until, body.limit)
