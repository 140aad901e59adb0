"""Query parameters and run filters as typed values, with errors that name the field."""

from __future__ import annotations

from starlette.requests import Request

from orchestrator.api.bodies import RunFilterBody
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


def run_filter(body: RunFilterBody) -> RunFilter:
    """The engine's filter of a validated bulk cancel or replay body."""
    return RunFilter(body.function, body.status, body.since, body.until, body.limit)
