"""Flow control, declared with a runnable: how many of its calls run at once, how fast
its runs start, which start first, and how bursts of triggers become runs.

    @task("sync-customer",
          triggers=["customer.updated"],
          concurrency=[Concurrency(5, key="event.data.customer_id"), Concurrency(50)],
          throttle=Throttle(100, period=60),
          debounce=Debounce(period=5, key="event.data.customer_id", max_wait=60),
          priority=Priority(key="event.data.tier"))
    async def sync(ctx, event): ...

A ``key`` is a dotted path into the run as triggered, ``{"input": ..., "event": ...}``
(``input.account``, ``event.data.customer_id``): never code. Runs whose key is absent
share one group (the empty key). The orchestrator enforces every control; the SDK only
declares them (docs/flow-control.md says how each works).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

MIN_PRIORITY = 1
MAX_PRIORITY = 10
DEFAULT_PRIORITY = 1
PRIORITY_STEP_S = 60.0
"""Aging: a run of priority p is claimed as if it had been due ``(p - 1) * 60`` s sooner,
so a higher priority goes first, and a lower one waits behind at most 9 minutes' worth of
higher-priority work: never starved."""

MAX_CONCURRENCY_LIMITS = 2
MAX_BATCH_SIZE = 1000
MAX_PERIOD_S = 7 * 86400.0
"""The longest throttle, rate-limit, debounce or batch period (a week)."""

KEY_RE = re.compile(r"^(input|event)(\.[A-Za-z0-9_\-]{1,64}){0,16}$")
"""A key path: ``input`` or ``event``, then dotted field names (no eval, no indexing
expressions: list items by index, ``input.items.0``, are field names too)."""


def check_key(key: Any, what: str) -> str | None:
    """A key path (None: no key), or ``ValueError`` saying what is wrong."""
    if key is None:
        return None
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise ValueError(f"{what}: key {key!r} must be a dotted path starting with 'input' "
                         f"or 'event' (e.g. 'event.data.customer_id')")
    return key


def _period(value: Any, what: str) -> float:
    s = value.total_seconds() if isinstance(value, timedelta) else value
    if (not isinstance(s, int | float) or isinstance(s, bool) or not math.isfinite(s)
            or not 0 < s <= MAX_PERIOD_S):
        raise ValueError(f"{what} must be a number of seconds in (0, {MAX_PERIOD_S:g}]")
    return float(s)


def _count(value: Any, what: str, top: int = 1_000_000) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= top:
        raise ValueError(f"{what} must be an integer in [1, {top}]")
    return value


@dataclass(frozen=True)
class Concurrency:
    """At most ``limit`` calls of the function run at once, per value of ``key`` (None:
    across all its runs). Runs over the limit wait, in order; a run that sleeps or waits
    for an event holds no slot."""

    limit: int
    key: str | None = None

    def __post_init__(self) -> None:
        _count(self.limit, "Concurrency.limit", 100_000)
        check_key(self.key, "Concurrency")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class _Rate:
    """What a throttle and a rate limit share: GCRA over ``limit`` per ``period``."""

    limit: int
    period: float | timedelta
    key: str | None = None
    burst: int = 1

    def __post_init__(self) -> None:
        what = type(self).__name__
        _count(self.limit, f"{what}.limit")
        _period(self.period, f"{what}.period")
        _count(self.burst, f"{what}.burst")
        check_key(self.key, what)

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"limit": self.limit, "period": _period(self.period, "period"),
                               "burst": self.burst}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class Throttle(_Rate):
    """At most ``limit`` starts per ``period`` seconds, per ``key``: the excess is queued
    and starts later (GCRA: ``burst`` starts may go at once, then one every
    ``period / limit``; any window of ``period`` sees at most ``limit + burst - 1``)."""


@dataclass(frozen=True)
class RateLimit(_Rate):
    """At most ``limit`` runs per ``period`` seconds, per ``key``: the excess is dropped,
    each dropped trigger recorded as a skipped run with the reason (GCRA, as
    ``Throttle``)."""


@dataclass(frozen=True)
class Debounce:
    """One run per burst of triggers, per ``key``: it starts once no new trigger has come
    for ``period`` seconds (but at most ``max_wait`` after the burst's first), with the
    last trigger's input and event."""

    period: float | timedelta
    key: str | None = None
    max_wait: float | timedelta | None = None

    def __post_init__(self) -> None:
        p = _period(self.period, "Debounce.period")
        if self.max_wait is not None and _period(self.max_wait, "Debounce.max_wait") < p:
            raise ValueError("Debounce.max_wait must be at least its period")
        check_key(self.key, "Debounce")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"period": _period(self.period, "period")}
        if self.key is not None:
            out["key"] = self.key
        if self.max_wait is not None:
            out["max_wait"] = _period(self.max_wait, "max_wait")
        return out


@dataclass(frozen=True)
class Batch:
    """Events become runs of up to ``max_size`` events each, per ``key``: a batch starts
    when it is full, or ``timeout`` seconds after its first event (``ctx.events``)."""

    max_size: int
    timeout: float | timedelta
    key: str | None = None

    def __post_init__(self) -> None:
        _count(self.max_size, "Batch.max_size", MAX_BATCH_SIZE)
        _period(self.timeout, "Batch.timeout")
        check_key(self.key, "Batch")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_size": self.max_size,
                               "timeout": _period(self.timeout, "timeout")}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class Singleton:
    """At most one run per ``key`` at a time: a new trigger while one is active is
    skipped (``mode="skip"``, recorded with the reason) or cancels the active run and
    starts (``mode="cancel"``)."""

    key: str | None = None
    mode: Literal["skip", "cancel"] = "skip"

    def __post_init__(self) -> None:
        check_key(self.key, "Singleton")
        if self.mode not in ("skip", "cancel"):
            raise ValueError("Singleton.mode must be 'skip' or 'cancel'")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": self.mode}
        if self.key is not None:
            out["key"] = self.key
        return out


def check_priority(value: Any, what: str = "priority") -> int:
    if (not isinstance(value, int) or isinstance(value, bool)
            or not MIN_PRIORITY <= value <= MAX_PRIORITY):
        raise ValueError(f"{what} must be an integer in [{MIN_PRIORITY}, {MAX_PRIORITY}]")
    return value


@dataclass(frozen=True)
class Priority:
    """Which runs are claimed first, within a function: ``1`` (lowest, the default) to
    ``10``. A run's priority is the trigger's ``priority=`` if given, else the value at
    ``key`` (an integer in range), else ``default``."""

    default: int = DEFAULT_PRIORITY
    key: str | None = None

    def __post_init__(self) -> None:
        check_priority(self.default, "Priority.default")
        check_key(self.key, "Priority")

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"default": self.default}
        if self.key is not None:
            out["key"] = self.key
        return out


@dataclass(frozen=True)
class FlowControl:
    """A runnable's flow-control declarations, as given to ``task``/``Workflow``."""

    concurrency: tuple[Concurrency, ...] = ()
    throttle: Throttle | None = None
    rate_limit: RateLimit | None = None
    debounce: Debounce | None = None
    batch: Batch | None = None
    singleton: Singleton | None = None
    priority: Priority | None = None

    @classmethod
    def of(cls, *, concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
           throttle: Throttle | None = None, rate_limit: RateLimit | None = None,
           debounce: Debounce | None = None, batch: Batch | None = None,
           singleton: Singleton | None = None, priority: int | Priority | None = None,
           where: str = "flow control") -> FlowControl:
        conc = concurrency_list(concurrency, where)
        for value, kind in ((throttle, Throttle), (rate_limit, RateLimit),
                            (debounce, Debounce), (batch, Batch), (singleton, Singleton)):
            if value is not None and not isinstance(value, kind):
                raise TypeError(f"{where}: expected a {kind.__name__}, got {value!r}")
        if debounce is not None and batch is not None:
            raise ValueError(f"{where}: debounce and batch cannot both be declared "
                             f"(a debounced run is one trigger; a batch gathers many)")
        if isinstance(priority, int) and not isinstance(priority, bool):
            priority = Priority(check_priority(priority))
        elif priority is not None and not isinstance(priority, Priority):
            raise TypeError(f"{where}: priority is an integer or a Priority")
        return cls(conc, throttle, rate_limit, debounce, batch, singleton, priority)

    def to_wire(self) -> dict[str, Any]:
        """The declared controls, as keys of the runnable's registered config."""
        out: dict[str, Any] = {}
        if self.concurrency:
            out["concurrency"] = [c.to_wire() for c in self.concurrency]
        for name in ("throttle", "rate_limit", "debounce", "batch", "singleton", "priority"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value.to_wire()
        return out


def concurrency_list(value: int | Concurrency | Sequence[Concurrency] | None,
                     where: str) -> tuple[Concurrency, ...]:
    """``concurrency=5``, ``Concurrency(...)`` or a list of up to two of them."""
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        return (Concurrency(value),)
    if isinstance(value, Concurrency):
        return (value,)
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, Sequence):
        raise TypeError(f"{where}: concurrency is an int, a Concurrency or a list of them")
    items = tuple(value)
    if not all(isinstance(c, Concurrency) for c in items):
        raise TypeError(f"{where}: concurrency is an int, a Concurrency or a list of them")
    if len(items) > MAX_CONCURRENCY_LIMITS:
        raise ValueError(f"{where}: at most {MAX_CONCURRENCY_LIMITS} concurrency limits "
                         f"(one for the function, one per key)")
    if len({c.key for c in items}) != len(items):
        raise ValueError(f"{where}: two concurrency limits on the same key")
    return items


_WIRE: dict[str, type[Any]] = {"throttle": Throttle, "rate_limit": RateLimit,
                               "debounce": Debounce, "batch": Batch, "singleton": Singleton,
                               "priority": Priority}
FLOW_KEYS = ("concurrency", *_WIRE)
"""The config keys flow control adds to a registered function (and, for ``concurrency``
and ``priority``, to a workflow's task)."""


def from_wire(cfg: Mapping[str, Any], where: str) -> FlowControl:
    """The flow control in a registered config, checked (``ValueError`` says what is
    wrong): what the orchestrator validates at registration and reads at run time."""
    def build(kind: type[Any], value: Any, name: str) -> Any:
        if not isinstance(value, Mapping):
            raise ValueError(f"{where}: {name} must be an object")
        try:
            return kind(**value)
        except TypeError as exc:
            raise ValueError(f"{where}: {name} has unknown or missing fields ({exc})") from None
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None

    conc = cfg.get("concurrency")
    if conc is not None and not isinstance(conc, list):
        raise ValueError(f"{where}: concurrency must be a list")
    limits = [build(Concurrency, c, "a concurrency limit") for c in conc or []]
    parts = {name: build(kind, cfg[name], name) for name, kind in _WIRE.items()
             if cfg.get(name) is not None}
    try:
        return FlowControl.of(concurrency=limits or None, where=where, **parts)
    except TypeError as exc:
        raise ValueError(str(exc)) from None


def key_value(view: Mapping[str, Any], key: str | None) -> str:
    """The group a run falls in for a control keyed on ``key``, from the run as triggered,
    ``{"input": ..., "event": ...}``: the value at the path, as text (a string as is,
    any other JSON value encoded canonically); "" when there is no key or no value."""
    if key is None:
        return ""
    cur: Any = view
    for part in key.split("."):
        if isinstance(cur, Mapping) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return ""
    if cur is None:
        return ""
    if isinstance(cur, str):
        return cur
    return json.dumps(cur, sort_keys=True, separators=(",", ":"))


def priority_of(view: Mapping[str, Any], declared: Priority | None,
                given: int | None = None) -> int:
    """A new run's priority: ``given`` by the trigger, else the declared key's value (an
    integer in range; anything else is ignored), else the declared default."""
    if given is not None:
        return check_priority(given)
    if declared is None:
        return DEFAULT_PRIORITY
    if declared.key is not None:
        raw = key_value(view, declared.key)
        if raw.isdigit() and MIN_PRIORITY <= int(raw) <= MAX_PRIORITY:
            return int(raw)
    return declared.default
