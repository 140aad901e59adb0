"""Declaring runnables: durable tasks (``task``) and DAG workflows (``Workflow``), with
their triggers, retry policies, timeouts, crons, cancel rules, retention and input models.

Every runnable has the same trigger API: ``run``, ``run_no_wait``, ``run_many``,
``schedule``, ``create_cron`` (async; ``.sync`` offers the same, blocking). It delegates
to a client seen through the ``TriggerClient`` protocol: the one the runnable is bound to,
else one made by the default factory, which ``sdk.client`` installs as ``Client``
(configured from the environment). This module never imports the client: the client
declares runnables, runnables only call it back."""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from sdk.errors import InputValidationError
from sdk.flow import (
    Batch,
    Concurrency,
    Debounce,
    FlowControl,
    Priority,
    RateLimit,
    Singleton,
    Throttle,
    check_priority,
)
from sdk.protocol import EVENT_NAME_RE, MAX_RETENTION_S, MIN_RETENTION_S

NAME_RE = EVENT_NAME_RE


@dataclass(frozen=True)
class Retry:
    """Retry policy: at most ``max_attempts`` attempts, exponential backoff with jitter."""

    max_attempts: int = 3
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("Retry.max_attempts must be at least 1")
        if self.initial_delay < 0 or self.max_delay < 0 or self.factor < 1:
            raise ValueError("Retry delays must be >= 0 and factor >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("Retry.jitter must be within [0, 1]")

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt (1-based)."""
        base = min(self.max_delay, self.initial_delay * self.factor ** max(0, failures - 1))
        return base * (1 - self.jitter * random.random())

    def to_wire(self) -> dict[str, Any]:
        return {
            "max_attempts": self.max_attempts,
            "initial_delay": self.initial_delay,
            "factor": self.factor,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
        }

    @classmethod
    def from_wire(cls, data: dict[str, Any] | None) -> Retry:
        return cls(**data) if data else cls()


def _check_name(name: str, what: str) -> str:
    if not NAME_RE.match(name):
        raise ValueError(
            f"invalid {what} {name!r}: use 1-128 letters, digits, '_', '-', '.', ':'"
        )
    return name


@dataclass(frozen=True)
class Cron:
    """A cron trigger declared with the runnable: 5 fields, or 6 with seconds first."""

    expression: str
    timezone: str = "UTC"
    input: Any = None

    def to_wire(self) -> dict[str, Any]:
        return {"expression": self.expression, "timezone": self.timezone, "input": self.input}


@dataclass(frozen=True)
class CancelOn:
    """Cancel a run when ``event`` arrives with fields equal to the run's own values.

    ``match`` maps a dotted path in the event to a dotted path in the run, which is
    ``{"input": ..., "event": ...}``: ``CancelOn("order.cancelled",
    {"data.order_id": "input.order_id"})``.
    """

    event: str
    match: Mapping[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {"event": _check_name(self.event, "event name"), "match": dict(self.match)}


def _seconds(d: float | timedelta | None, what: str) -> float | None:
    if d is None:
        return None
    s = d.total_seconds() if isinstance(d, timedelta) else float(d)
    if s <= 0:
        raise ValueError(f"{what} must be positive")
    return s


def _retention(d: float | timedelta | None) -> float | None:
    """Seconds an ended run is kept (None: the orchestrator's global retention)."""
    s = _seconds(d, "retention")
    if s is not None and not MIN_RETENTION_S <= s <= MAX_RETENTION_S:
        raise ValueError(f"retention must be within [{MIN_RETENTION_S:g} s, "
                         f"{MAX_RETENTION_S / 86400:g} days]")
    return s


class Body:
    """A user callable the SDK runs: ``fn(ctx)`` or ``fn(ctx, input)``, sync or async."""

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.is_async = inspect.iscoroutinefunction(fn)
        params = [
            q
            for q in inspect.signature(fn).parameters.values()
            if q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)
        ]
        if not params:
            raise TypeError(f"{name}: a durable function takes the context first: fn(ctx)")
        self.takes_input = len(params) >= 2


class Handle(Protocol):
    """A started run (``sdk.RunHandle``): its id, its status and, later, its result."""

    @property
    def id(self) -> str: ...

    async def result(self, timeout: float | None = None) -> Any: ...

    async def get(self) -> dict[str, Any]: ...


class SyncTriggerClient(Protocol):
    """The blocking triggers a runnable's ``.sync`` needs (``sdk.Client().sync``)."""

    def run(self, function: Runnable, input: Any = None, **kw: Any) -> Any: ...

    def run_no_wait(self, function: Runnable, input: Any = None, **kw: Any) -> str: ...

    def run_many(self, function: Runnable, inputs: Sequence[Any], **kw: Any) -> list[str]: ...

    def schedule(self, function: Runnable, at: datetime, input: Any = None, **kw: Any
                 ) -> dict[str, Any]: ...

    def create_cron(self, function: Runnable, expression: str, **kw: Any
                    ) -> dict[str, Any]: ...


class TriggerClient(Protocol):
    """What a runnable's trigger API needs of a client (``sdk.Client`` is one)."""

    async def run(self, function: Runnable, input: Any = None, *,
                  timeout: float | None = None, idempotency_key: str | None = None,
                  priority: int | None = None) -> Any: ...

    async def run_no_wait(self, function: Runnable, input: Any = None, *,
                          idempotency_key: str | None = None,
                          priority: int | None = None) -> Handle: ...

    async def run_many(self, function: Runnable, inputs: Sequence[Any], *,
                       priority: int | None = None) -> Sequence[Handle]: ...

    async def schedule(self, function: Runnable, at: datetime, input: Any = None, *,
                       priority: int | None = None) -> dict[str, Any]: ...

    async def create_cron(self, function: Runnable, expression: str, *,
                          timezone: str = "UTC", input: Any = None) -> dict[str, Any]: ...

    @property
    def sync(self) -> SyncTriggerClient: ...


_default_client: Callable[[], TriggerClient] | None = None


def _priority(value: int | None) -> int | None:
    """A trigger's ``priority=``: None, or an int 1-10 (``ValueError`` otherwise)."""
    return None if value is None else check_priority(value)


def set_default_client(factory: Callable[[], TriggerClient]) -> None:
    """What an unbound runnable triggers through, made on its first trigger.
    ``sdk.client`` sets ``Client`` (configured from the environment) when it is imported,
    which ``import sdk`` always does."""
    global _default_client
    _default_client = factory


class Runnable:
    """What can be triggered: a durable task or a workflow."""

    kind = "runnable"

    def __init__(
        self,
        name: str,
        *,
        triggers: Sequence[str] = (),
        retry: Retry | None = None,
        input_model: type[Any] | None = None,
        timeout: float | timedelta | None = None,
        queue_timeout: float | timedelta | None = None,
        crons: Sequence[Cron | str] = (),
        cancel_on: Sequence[CancelOn] = (),
        retention: float | timedelta | None = None,
        concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
        throttle: Throttle | None = None,
        rate_limit: RateLimit | None = None,
        debounce: Debounce | None = None,
        batch: Batch | None = None,
        singleton: Singleton | None = None,
        priority: int | Priority | None = None,
    ) -> None:
        self.name = _check_name(name, "function name")
        self.triggers = [_check_name(t, "event name") for t in triggers]
        self.retry = retry or Retry()
        self.input_model = input_model
        self.timeout = _seconds(timeout, "timeout")
        self.queue_timeout = _seconds(queue_timeout, "queue_timeout")
        self.crons = [c if isinstance(c, Cron) else Cron(c) for c in crons]
        self.cancel_on = list(cancel_on)
        self.retention = _retention(retention)
        self.flow = FlowControl.of(
            concurrency=concurrency, throttle=throttle, rate_limit=rate_limit,
            debounce=debounce, batch=batch, singleton=singleton, priority=priority,
            where=f"{type(self).kind} {self.name!r}")
        if batch is not None and not self.triggers:
            raise ValueError(f"{self.name!r}: batch gathers events: declare triggers too")
        self._client: TriggerClient | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def config(self) -> dict[str, Any]:
        """What the orchestrator learns about this runnable at registration."""
        cfg: dict[str, Any] = {
            "name": self.name,
            "kind": self.kind,
            "triggers": [{"event": t} for t in self.triggers],
            "retry": self.retry.to_wire(),
        }
        if self.timeout:
            cfg["timeout"] = self.timeout
        if self.queue_timeout:
            cfg["queue_timeout"] = self.queue_timeout
        if self.crons:
            cfg["crons"] = [c.to_wire() for c in self.crons]
        if self.cancel_on:
            cfg["cancel_on"] = [c.to_wire() for c in self.cancel_on]
        if self.retention is not None:
            cfg["retention"] = self.retention
        cfg.update(self.flow.to_wire())
        return cfg

    def parse_input(self, raw: Any) -> Any:
        """The input as the function receives it (validated by ``input_model`` if set)."""
        if self.input_model is None:
            return raw
        validate = getattr(self.input_model, "model_validate", None)
        try:
            if validate is not None:
                return validate(raw)
            return self.input_model(**raw) if isinstance(raw, dict) else self.input_model(raw)
        except Exception as exc:  # pydantic.ValidationError or TypeError
            raise InputValidationError(f"input of {self.name!r} is invalid: {exc}") from exc

    # -- the trigger API ----------------------------------------------------------------

    def bind(self, client: TriggerClient) -> Runnable:
        """Trigger through ``client`` (``client.task``/``client.workflow`` do this)."""
        self._client = client
        return self

    @property
    def client(self) -> TriggerClient:
        """The bound client, else one from the default factory (made once, then kept)."""
        if self._client is None:
            if _default_client is None:
                raise RuntimeError(f"{self.name!r} is bound to no client: bind one "
                                 f"(runnable.bind(client)) or import sdk.client")
            self._client = _default_client()
        return self._client

    async def run(self, input: Any = None, *, timeout: float | None = None,
                  idempotency_key: str | None = None, priority: int | None = None) -> Any:
        """Start a run and wait for its output (``RunFailedError`` if it fails).
        ``priority`` (1-10) overrides the declared one for this run (docs/flow-control.md)."""
        return await self.client.run(self, input, timeout=timeout,
                                     idempotency_key=idempotency_key,
                                     priority=_priority(priority))

    async def run_no_wait(self, input: Any = None, *, idempotency_key: str | None = None,
                          priority: int | None = None) -> Handle:
        """Start a run; its handle gives the status and, later, the result."""
        return await self.client.run_no_wait(self, input, idempotency_key=idempotency_key,
                                             priority=_priority(priority))

    async def run_many(self, inputs: Sequence[Any], *,
                       priority: int | None = None) -> Sequence[Handle]:
        """Start one run per input, all in one transaction."""
        return await self.client.run_many(self, inputs, priority=_priority(priority))

    async def schedule(self, at: datetime, input: Any = None, *,
                       priority: int | None = None) -> dict[str, Any]:
        """Start one run at ``at`` (a timezone-aware datetime)."""
        return await self.client.schedule(self, at, input, priority=_priority(priority))

    async def create_cron(self, expression: str, *, timezone: str = "UTC",
                          input: Any = None) -> dict[str, Any]:
        """A cron trigger for this runnable, created through the API."""
        return await self.client.create_cron(self, expression, timezone=timezone, input=input)

    @property
    def sync(self) -> SyncRunnable:
        """The same trigger API for synchronous code."""
        return SyncRunnable(self)


class SyncRunnable:
    """Blocking versions of a runnable's triggers (a thin wrapper over the client's)."""

    def __init__(self, runnable: Runnable) -> None:
        self._r = runnable

    def run(self, input: Any = None, **kw: Any) -> Any:
        return self._r.client.sync.run(self._r, input, **kw)

    def run_no_wait(self, input: Any = None, **kw: Any) -> str:
        return self._r.client.sync.run_no_wait(self._r, input, **kw)

    def run_many(self, inputs: Sequence[Any], **kw: Any) -> list[str]:
        return self._r.client.sync.run_many(self._r, inputs, **kw)

    def schedule(self, at: datetime, input: Any = None, **kw: Any) -> dict[str, Any]:
        return self._r.client.sync.schedule(self._r, at, input, **kw)

    def create_cron(self, expression: str, **kw: Any) -> dict[str, Any]:
        return self._r.client.sync.create_cron(self._r, expression, **kw)


class Function(Runnable):
    """A declared durable task: the user's callable plus how it is triggered and retried."""

    kind = "task"

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None,
                 **options: Any) -> None:
        super().__init__(name or fn.__name__.replace("_", "-"), **options)
        self.body = Body(fn, self.name)
        self.fn = fn
        self.is_async = self.body.is_async
        self.takes_input = self.body.takes_input

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


def task(
    name: str | None = None,
    *,
    triggers: Sequence[str] = (),
    retry: Retry | None = None,
    input_model: type[Any] | None = None,
    timeout: float | timedelta | None = None,
    queue_timeout: float | timedelta | None = None,
    crons: Sequence[Cron | str] = (),
    cancel_on: Sequence[CancelOn] = (),
    retention: float | timedelta | None = None,
    concurrency: int | Concurrency | Sequence[Concurrency] | None = None,
    throttle: Throttle | None = None,
    rate_limit: RateLimit | None = None,
    debounce: Debounce | None = None,
    batch: Batch | None = None,
    singleton: Singleton | None = None,
    priority: int | Priority | None = None,
) -> Callable[[Callable[..., Any]], Function]:
    """Declare a durable task::

        @task("fulfil-order", triggers=["order.created"], retry=Retry(max_attempts=5))
        async def fulfil(ctx, order): ...

    ``retention`` (seconds or a ``timedelta``): how long its ended runs are kept before
    the orchestrator deletes them (None: the orchestrator's ``retention_days``).

    Flow control (``sdk.flow``, docs/flow-control.md): ``concurrency`` (an int, a
    ``Concurrency`` or a list of up to two), ``throttle``, ``rate_limit``, ``debounce``,
    ``batch``, ``singleton``, ``priority`` (an int 1-10 or a ``Priority``).
    """

    def wrap(fn: Callable[..., Any]) -> Function:
        return Function(fn, name=name, triggers=triggers, retry=retry, input_model=input_model,
                        timeout=timeout, queue_timeout=queue_timeout, crons=crons,
                        cancel_on=cancel_on, retention=retention, concurrency=concurrency,
                        throttle=throttle, rate_limit=rate_limit, debounce=debounce,
                        batch=batch, singleton=singleton, priority=priority)

    return wrap
