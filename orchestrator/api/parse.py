"""Turning request JSON into typed values, with errors that name the field."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from starlette.requests import Request

from orchestrator.api.responses import clean_str
from orchestrator.engine.engine import RunFilter
from orchestrator.errors import Invalid
from sdk import protocol as p

STATUSES = tuple(p.RunStatus)
#: The times the API takes (epoch seconds): 0001-01-01 to 9999-12-31, the years a
#: date-time can show.
MIN_EPOCH = -62135596800.0
MAX_EPOCH = 253402300799.0


def epoch(value: Any, field: str) -> float:
    """Epoch seconds (within [MIN_EPOCH, MAX_EPOCH]) from a number or an ISO-8601 string
    with a time zone."""
    out = _epoch(value, field)
    if not MIN_EPOCH <= out <= MAX_EPOCH:  # also false for NaN
        raise Invalid(f"'{field}' must be within 0001-01-01 and 9999-12-31", field)
    return out


def _epoch(value: Any, field: str) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an int too large for a float
            return math.inf
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(f"'{field}' is not an ISO-8601 time: {value!r}", field) from None
        if dt.tzinfo is None:
            raise Invalid(f"'{field}' needs a time zone (e.g. 'Z' or '+02:00')", field)
        return dt.timestamp()
    raise Invalid(f"'{field}' must be an ISO-8601 time or epoch seconds", field)


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


def only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise Invalid(f"unknown field(s): {unknown}", unknown[0])


def run_filter(body: dict[str, Any], *, max_limit: int = 10_000) -> RunFilter:
    """``{function?, status?: str | [str], since?, until?, limit?}``."""
    function = body.get("function")
    if function is not None and (not isinstance(function, str) or not function):
        raise Invalid("'function' must be a non-empty string", "function")
    if function is not None:
        clean_str(function, "function")
    status = body.get("status", [])
    statuses = [status] if isinstance(status, str) else status
    if not isinstance(statuses, list) or any(s not in STATUSES for s in statuses):
        raise Invalid(f"'status' must be one or a list of {[s.value for s in p.RunStatus]}",
                      "status")
    since = epoch(body["since"], "since") if body.get("since") is not None else None
    until = epoch(body["until"], "until") if body.get("until") is not None else None
    limit = body.get("limit", 1000)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= max_limit:
        raise Invalid(f"'limit' must be an integer within [1, {max_limit}]", "limit")
    if function is None and not statuses and since is None and until is None:
        raise Invalid("give at least one of function, status, since, until", "body")
    return RunFilter(function, tuple(statuses), since, until, limit)
