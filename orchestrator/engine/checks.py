"""Checks of what a request names or sends before the engine acts on it: the functions
it names are registered, an input is JSON within the size a step output may have."""

from __future__ import annotations

from typing import Any

from orchestrator.engine.registry import Registry
from orchestrator.errors import Invalid, NotFound
from sdk import flow
from sdk import protocol as p


async def require_known(registry: Registry, names: set[str], field: str = "function") -> None:
    """Refuse (404) the first of ``names`` no registered app serves."""
    fns = await registry.get_many(names)
    missing = sorted(names - set(fns))
    if missing:
        raise NotFound(f"no function named {missing[0]!r} is registered", field)


def input_json(value: Any, field: str = "input") -> str:
    """``value`` encoded as a run's input; refused (422 on ``field``) if it is not JSON or
    is larger than a step output may be."""
    try:
        data = p.dumps(value).decode()
    except (TypeError, ValueError) as exc:
        raise Invalid(f"input is not JSON: {exc}", field) from None
    if len(data) > p.MAX_STEP_OUTPUT_BYTES:
        raise Invalid(f"input exceeds {p.MAX_STEP_OUTPUT_BYTES} bytes", field)
    return data


def check_priority(value: Any, field: str = "priority") -> int | None:
    """A trigger's priority (None: not given), refused (422 on ``field``) outside 1-10."""
    if value is None:
        return None
    try:
        return flow.check_priority(value, f"'{field}'")
    except ValueError as exc:
        raise Invalid(str(exc), field) from None
