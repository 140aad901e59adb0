"""The step API a durable function receives: ``ctx.step.run``, sleeps, waits, children.

``Context`` serves ``async def`` functions; ``SyncContext`` serves plain ``def``
functions (run in a worker thread). Both are facades over ``Execution``; only the
running of a step's callable differs.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sdk import protocol as p
from sdk._execution import Execution
from sdk.function import Function, Retry


@dataclass(frozen=True)
class Child:
    """A child run to start: a declared function (or its name) and its input."""

    function: str | Function
    input: Any = None

    def to_wire(self) -> p.ChildSpec:
        fn = self.function if isinstance(self.function, str) else self.function.name
        return p.child_spec(fn, self.input)


def _seconds(d: float | timedelta) -> float:
    return d.total_seconds() if isinstance(d, timedelta) else float(d)


def _epoch(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError("sleep_until needs a timezone-aware datetime")
    return at.timestamp()


def _children(children: Sequence[Child | Mapping[str, Any]]) -> list[p.ChildSpec]:
    out: list[p.ChildSpec] = []
    for c in children:
        if isinstance(c, Child):
            out.append(c.to_wire())
        elif isinstance(c, Mapping) and "function" in c:
            out.append(Child(c["function"], c.get("input")).to_wire())
        else:
            raise TypeError("children are Child(function, input) values")
    return out


class _Base:
    def __init__(self, execution: Execution, request: p.InvokeRequest) -> None:
        self._ex = execution
        run = request["run"]
        self.run_id: str = run["id"]
        self.attempt: int = run["attempt"]
        self.parent_id: str | None = run.get("parent_id")
        self.function: str = request["function"]
        self.event: Mapping[str, Any] | None = request.get("event")
        events = request.get("events")
        #: The events of a batch run (``sdk.flow.Batch``), oldest first; for any other
        #: run, its one triggering event (``[ctx.event]``), or none.
        self.events: list[Mapping[str, Any]] = (
            list(events) if events is not None else [self.event] if self.event else [])
        self.input: Any = request.get("input")
        self.task: str | None = request.get("task")
        self._parents: Mapping[str, Any] = request.get("parents") or {}
        self._failure: Mapping[str, Any] | None = request.get("failure")

    # -- workflow tasks -------------------------------------------------------------------

    def parent(self, task: Any) -> Any:
        """The output of a parent task (given as the task, or its name); None if skipped."""
        return self._parent_view(task).get("output")

    def was_skipped(self, task: Any) -> bool:
        """Whether a parent task was skipped (its condition said so)."""
        return bool(self._parent_view(task).get("status") == "skipped")

    @property
    def failure(self) -> dict[str, Any] | None:
        """In a workflow's on_failure task: the task that failed, its status and error."""
        f = self._failure
        return dict(f) if isinstance(f, Mapping) else None

    def _parent_view(self, task: Any) -> Mapping[str, Any]:
        name = task if isinstance(task, str) else getattr(task, "name", None)
        view = self._parents.get(name) if name else None
        if not isinstance(view, Mapping):
            raise KeyError(f"{name!r} is not a parent of task {self.task!r}")
        return view

    # -- the step API's rules, shared by the async and sync facades ------------------------

    def _sleep(self, until: float, name: str) -> None:
        self._ex.sleep_until(name, until)

    def _wait(self, event: str, match: Mapping[str, Any] | None,
              timeout: float | timedelta | None, name: str | None,
              lookback: float | timedelta | None = None) -> dict[str, Any] | None:
        if not isinstance(event, str) or not event:
            raise TypeError("wait_for_event needs an event name")
        timeout_at = None if timeout is None else time.time() + _seconds(timeout)
        back = lookback.total_seconds() if isinstance(lookback, timedelta) else lookback
        return self._ex.wait_for_event(name or f"wait:{event}", event, match, timeout_at,  # type: ignore[no-any-return]
                                       back)

    def _spawn(self, name: str, children: Sequence[Child | Mapping[str, Any]],
               wait: bool) -> Any:
        return self._ex.spawn(name, _children(children), wait=wait)

    def _send(self, name: str,
              events: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[str]:
        return self._ex.send_events(name, [events] if isinstance(events, Mapping)
                                    else list(events))


class Steps:
    """``ctx.step``: memoized steps of an async function."""

    def __init__(self, ex: Execution) -> None:
        self._ex = ex

    async def run(
        self, name: str, fn: Callable[..., Any], *args: Any, retry: Retry | None = None,
        **kwargs: Any,
    ) -> Any:
        """Run ``fn(*args, **kwargs)`` once; its JSON output is memoized under ``name``."""
        plan = self._ex.step_begin(name, retry)
        if plan.done:
            return self._ex.replayed_output(plan)
        try:
            if inspect.iscoroutinefunction(fn):
                out = await fn(*args, **kwargs)
            else:
                out = await asyncio.to_thread(fn, *args, **kwargs)
                if inspect.isawaitable(out):
                    out = await out
        except Exception as exc:
            return self._ex.step_failed(plan, exc)
        return self._ex.step_succeeded(plan, out)


class SyncSteps:
    """``ctx.step`` for a plain ``def`` function."""

    def __init__(self, ex: Execution, loop: asyncio.AbstractEventLoop) -> None:
        self._ex = ex
        self._loop = loop

    def run(
        self, name: str, fn: Callable[..., Any], *args: Any, retry: Retry | None = None,
        **kwargs: Any,
    ) -> Any:
        plan = self._ex.step_begin(name, retry)
        if plan.done:
            return self._ex.replayed_output(plan)
        try:
            out = fn(*args, **kwargs)
            if inspect.isawaitable(out):
                out = asyncio.run_coroutine_threadsafe(_awaited(out), self._loop).result()
        except Exception as exc:
            return self._ex.step_failed(plan, exc)
        return self._ex.step_succeeded(plan, out)


async def _awaited(aw: Any) -> Any:
    return await aw


class Context(_Base):
    """What an ``async def`` durable function receives as ``ctx``."""

    def __init__(self, execution: Execution, request: p.InvokeRequest) -> None:
        super().__init__(execution, request)
        self.step = Steps(execution)

    async def sleep_for(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        """Sleep durably: nothing runs (or is held in memory) until it is over."""
        self._sleep(time.time() + _seconds(duration), name)

    async def sleep_until(self, at: datetime, *, name: str = "sleep") -> None:
        self._sleep(_epoch(at), name)

    async def wait_for_event(
        self,
        event: str,
        *,
        match: Mapping[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        name: str | None = None,
        lookback: float | timedelta | None = None,
    ) -> dict[str, Any] | None:
        """The first ``event`` whose fields equal ``match`` ({"data.id": 42}); None on timeout.

        ``lookback`` (seconds, at most ``protocol.MAX_LOOKBACK_S``): an event received up
        to that long before the wait is recorded satisfies it too (the earliest such
        one), so an event sent while the step before the wait ran is not missed."""
        return self._wait(event, match, timeout, name, lookback)

    async def spawn(self, name: str, children: Sequence[Child | Mapping[str, Any]]) -> list[Any]:
        """Start children and wait for all: their outputs, or ``ChildRunError``."""
        return self._spawn(name, children, wait=True)  # type: ignore[no-any-return]

    async def spawn_no_wait(
        self, name: str, children: Sequence[Child | Mapping[str, Any]]
    ) -> list[str]:
        """Start children and go on at once: their run ids."""
        return self._spawn(name, children, wait=False)  # type: ignore[no-any-return]

    async def invoke(self, name: str, function: str | Function, input: Any = None) -> Any:
        """Run one child and wait for its output (``ChildRunError`` if it fails)."""
        return (await self.spawn(name, [Child(function, input)]))[0]

    async def send_event(
        self, name: str, events: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> list[str]:
        """Send events as a durable step (exactly once per run): their ids."""
        return self._send(name, events)


class SyncContext(_Base):
    """What a plain ``def`` durable function receives as ``ctx``."""

    def __init__(
        self, execution: Execution, request: p.InvokeRequest, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__(execution, request)
        self.step = SyncSteps(execution, loop)

    def sleep_for(self, duration: float | timedelta, *, name: str = "sleep") -> None:
        self._sleep(time.time() + _seconds(duration), name)

    def sleep_until(self, at: datetime, *, name: str = "sleep") -> None:
        self._sleep(_epoch(at), name)

    def wait_for_event(
        self,
        event: str,
        *,
        match: Mapping[str, Any] | None = None,
        timeout: float | timedelta | None = None,
        name: str | None = None,
        lookback: float | timedelta | None = None,
    ) -> dict[str, Any] | None:
        return self._wait(event, match, timeout, name, lookback)

    def spawn(self, name: str, children: Sequence[Child | Mapping[str, Any]]) -> list[Any]:
        return self._spawn(name, children, wait=True)  # type: ignore[no-any-return]

    def spawn_no_wait(
        self, name: str, children: Sequence[Child | Mapping[str, Any]]
    ) -> list[str]:
        return self._spawn(name, children, wait=False)  # type: ignore[no-any-return]

    def invoke(self, name: str, function: str | Function, input: Any = None) -> Any:
        return self.spawn(name, [Child(function, input)])[0]

    def send_event(
        self, name: str, events: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> list[str]:
        return self._send(name, events)
