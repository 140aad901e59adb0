"""``Client``: configuration shared by an app's endpoint, and triggers over REST.

Configured from arguments or the environment:

=============================  ==========================================
``DURABLE_ORCHESTRATOR_URL``   orchestrator base URL (http://127.0.0.1:8288)
``DURABLE_SIGNING_KEY``        key signing requests/answers (required to serve)
``DURABLE_SIGNING_KEY_FALLBACK`` a second accepted key, for rotation
``DURABLE_API_KEY``            bearer key for the orchestrator's REST API
``DURABLE_APP_ID``             this app's id (default "app")
=============================  ==========================================

REST calls go through one ``httpx.AsyncClient`` with httpx's own transport, at most
``max_connections`` in flight. ``transport=`` replaces httpx's: the SDK's lean keep-alive
transport is an opt-in, ``Client(transport=sdk.transport.AppTransport())`` (it needs
httptools): with 200 runs triggered and awaited at once it spent a sixth of the client
CPU of httpx's own (whose pool bookkeeping grows with concurrency, encode/httpx#3215).

This module imports the runnables' modules to declare them (``Client.task``,
``Client.workflow``); they never import it: a runnable triggers through the
``sdk.function.TriggerClient`` protocol, and an unbound one through the default factory
this module installs (``Client``).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

import httpx

from sdk import protocol as p
from sdk.errors import OrchestratorError, RunFailedError, RunSkippedError
from sdk.flow import check_priority
from sdk.function import Function, Runnable, set_default_client, task
from sdk.workflow import Workflow

T = TypeVar("T")

DEFAULT_URL = "http://127.0.0.1:8288"
TERMINAL = p.TERMINAL


@dataclass(frozen=True)
class RunHandle:
    """A started run: its id, and (through the client) its status and result later."""

    id: str
    client: Client

    async def result(self, timeout: float | None = None) -> Any:
        return await self.client.result(self.id, timeout=timeout)

    async def get(self) -> dict[str, Any]:
        return await self.client.get_run(self.id)


@dataclass(frozen=True)
class _Http:
    """A client's connections, made for the event loop they are used on."""

    loop: asyncio.AbstractEventLoop
    in_flight: asyncio.Semaphore
    client: httpx.AsyncClient


class Client:
    def __init__(
        self,
        *,
        orchestrator_url: str | None = None,
        signing_key: str | None = None,
        signing_key_fallback: str | None = None,
        api_key: str | None = None,
        app_id: str | None = None,
        timeout: float = 30.0,
        max_connections: int = 64,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        env = os.environ
        self.orchestrator_url = (
            orchestrator_url or env.get("DURABLE_ORCHESTRATOR_URL") or DEFAULT_URL
        ).rstrip("/")
        self.signing_key = signing_key or env.get("DURABLE_SIGNING_KEY")
        self.signing_key_fallback = signing_key_fallback or env.get(
            "DURABLE_SIGNING_KEY_FALLBACK"
        )
        self.api_key = api_key or env.get("DURABLE_API_KEY")
        self.app_id = app_id or env.get("DURABLE_APP_ID") or "app"
        self.timeout = timeout
        self._transport = transport
        self.max_connections = max_connections
        self._http: _Http | None = None
        self._sync: SyncClient | None = None

    # -- declarations ---------------------------------------------------------------------

    def task(
        self,
        name: str | None = None,
        **options: Any,
    ) -> Callable[[Callable[..., Any]], Function]:
        """Same as ``sdk.task``, with the task's triggers going through this client."""
        def wrap(fn: Callable[..., Any]) -> Function:
            f = task(name, **options)(fn)
            f.bind(self)
            return f

        return wrap

    def workflow(self, name: str, **options: Any) -> Workflow:
        """A DAG workflow whose triggers go through this client."""
        wf = Workflow(name, **options)
        wf.bind(self)
        return wf

    def signer(self) -> p.Signer:
        if not self.signing_key:
            raise ValueError("a signing key is required: pass signing_key= or set "
                             "DURABLE_SIGNING_KEY")
        return p.Signer(self.signing_key, self.signing_key_fallback)

    # -- REST -----------------------------------------------------------------------------

    def _connection(self) -> _Http:
        loop = asyncio.get_running_loop()
        if self._http is None or self._http.loop is not loop:
            headers = {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx.Limits(max_connections=self.max_connections,
                                  max_keepalive_connections=self.max_connections)
            self._http = _Http(loop, asyncio.Semaphore(self.max_connections),
                               httpx.AsyncClient(timeout=httpx.Timeout(self.timeout),
                                                 headers=headers, limits=limits,
                                                 transport=self._transport))
        return self._http

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.client.aclose()
            self._http = None

    async def _call(
        self, method: str, path: str, *, json: Any = None, params: Mapping[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = f"{self.orchestrator_url}/api/v1{path}"
        http = self._connection()
        async with http.in_flight:  # bounds a transport given in, as httpx bounds its own
            resp = await http.client.request(
                method, url, json=json, params=params,
                timeout=timeout if timeout is not None else self.timeout,
            )
        try:
            body = resp.json()
        except ValueError:
            body = resp.text
        if resp.status_code >= 400:
            raise OrchestratorError(resp.status_code, body)
        return body

    async def register(self, app_url: str, *, wait_for_app: float = 0.0,
                       signing_key: str | None = None, budget_ms: int | None = None,
                       generate_key: bool = False) -> dict[str, Any]:
        """Ask the orchestrator to (re)sync the app served at ``app_url``.

        The orchestrator calls the app back to list its functions. From an app's own
        startup (before it listens), pass ``wait_for_app=`` seconds, in a background task:
        the request is repeated until the app answers or the time is up::

            asyncio.create_task(client.register(url, wait_for_app=30))

        ``signing_key``: the app's own key (the one it serves with), when it has one
        rather than the orchestrator's; ``budget_ms``: its time budget per call (a FaaS
        deadline), instead of the orchestrator's default. Both are kept by the
        orchestrator across later syncs. ``generate_key=True``: the orchestrator also
        makes the app a key of its own and answers it this once, as ``signing_key`` (the
        rotation it starts: the README, "A key generated on registration").
        """
        body: dict[str, Any] = {"url": app_url}
        if generate_key:
            body["generate_key"] = True
        if signing_key is not None:
            body["signing_key"] = signing_key
        if budget_ms is not None:
            body["budget_ms"] = budget_ms
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_for_app
        while True:
            try:
                return await self._call("POST", "/apps", json=body)  # type: ignore[no-any-return]
            except OrchestratorError as exc:
                unreachable = exc.status == 422 and "could not reach" in str(exc)
                if not unreachable or loop.time() >= deadline:
                    raise
            await asyncio.sleep(0.25)

    async def send_event(
        self, name: str, data: Any = None, *, id: str | None = None
    ) -> dict[str, Any]:
        """Send one event: ``{"ids": [...], "runs": [...]}``."""
        ev: dict[str, Any] = {"name": name, "data": data if data is not None else {}}
        if id is not None:
            ev["id"] = id
        return await self._call("POST", "/events", json=ev)  # type: ignore[no-any-return]

    async def send_events(self, events: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        return await self._call("POST", "/events", json=list(events))  # type: ignore[no-any-return]

    async def run_no_wait(
        self, function: str | Runnable, input: Any = None, *, idempotency_key: str | None = None,
        priority: int | None = None,
    ) -> RunHandle:
        """Start a run; returns at once with its handle. ``priority``: 1-10 (absent: the
        function's declared priority)."""
        name = self._function_name(function, input)
        body: dict[str, Any] = {"function": name, "input": input}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        _set_priority(body, priority)
        out = await self._call("POST", "/runs", json=body)
        return RunHandle(out["id"], self)

    @staticmethod
    def _function_name(function: str | Runnable, input: Any) -> str:
        if isinstance(function, Runnable):
            function.parse_input(input)  # a bad input fails here, before anything is stored
            return function.name
        return function

    async def get_run(self, run_id: str) -> dict[str, Any]:
        return await self._call("GET", f"/runs/{run_id}")  # type: ignore[no-any-return]

    async def wait(self, run_id: str, timeout: float | None = None) -> dict[str, Any]:
        """Long-poll until the run ends (or ``timeout`` seconds pass): the run."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            left = 25.0 if deadline is None else max(0.0, min(25.0, deadline - loop.time()))
            run = await self._call("GET", f"/runs/{run_id}/wait", params={"timeout": left},
                                   timeout=left + 10)
            if run["status"] in TERMINAL or (deadline is not None and loop.time() >= deadline):
                return run  # type: ignore[no-any-return]

    async def result(self, run_id: str, timeout: float | None = None) -> Any:
        """The run's output once it ends (``RunFailedError`` if it fails)."""
        return self._outcome(await self.wait(run_id, timeout), timeout)

    @staticmethod
    def _outcome(run: dict[str, Any], timeout: float | None) -> Any:
        run_id = run["id"]
        if run["status"] == "completed":
            return run.get("output")
        if run["status"] == "skipped":
            raise RunSkippedError(run)
        if run["status"] in TERMINAL:
            raise RunFailedError(run)
        raise TimeoutError(f"run {run_id} still {run['status']} after {timeout}s")

    async def run(
        self, function: str | Runnable, input: Any = None, *, timeout: float | None = None,
        idempotency_key: str | None = None, priority: int | None = None,
    ) -> Any:
        """Start a run and wait for its output (``RunFailedError`` if it fails)."""
        name = self._function_name(function, input)
        body: dict[str, Any] = {"function": name, "input": input}
        if idempotency_key is not None:
            body["idempotency_key"] = idempotency_key
        _set_priority(body, priority)
        first = 25.0 if timeout is None else max(0.0, min(25.0, timeout))
        run = await self._call("POST", "/runs", json=body, params={"wait": first},
                               timeout=first + 10)
        if run["status"] not in TERMINAL:
            left = None if timeout is None else max(0.0, timeout - first)
            run = await self.wait(run["id"], left)
        return self._outcome(run, timeout)

    async def run_many(
        self, function: str | Runnable, inputs: Sequence[Any], *, priority: int | None = None
    ) -> list[RunHandle]:
        """Start one run per input, in one transaction (all or none)."""
        name = function.name if isinstance(function, Runnable) else function
        if isinstance(function, Runnable):
            for x in inputs:
                function.parse_input(x)
        body: dict[str, Any] = {"function": name, "inputs": list(inputs)}
        _set_priority(body, priority)
        out = await self._call("POST", "/runs/bulk", json=body)
        return [RunHandle(rid, self) for rid in out["ids"]]

    async def schedule(
        self, function: str | Runnable, at: datetime, input: Any = None, *,
        priority: int | None = None,
    ) -> dict[str, Any]:
        """A one-off run at ``at`` (timezone-aware): the schedule, with its id."""
        if at.tzinfo is None:
            raise ValueError("schedule() needs a timezone-aware datetime")
        name = self._function_name(function, input)
        body: dict[str, Any] = {"function": name, "input": input, "at": at.isoformat()}
        _set_priority(body, priority)
        return await self._call("POST", "/schedules", json=body)  # type: ignore[no-any-return]

    async def list_schedules(self, function: str | None = None) -> list[dict[str, Any]]:
        params = {"function": function} if function else None
        return (await self._call("GET", "/schedules", params=params))["schedules"]  # type: ignore[no-any-return]

    async def get_schedule(self, schedule_id: str) -> dict[str, Any]:
        """A schedule; once it fired, its ``run_id``."""
        return await self._call("GET", f"/schedules/{schedule_id}")  # type: ignore[no-any-return]

    async def delete_schedule(self, schedule_id: str) -> None:
        await self._call("DELETE", f"/schedules/{schedule_id}")

    async def create_cron(
        self, function: str | Runnable, expression: str, *, timezone: str = "UTC",
        input: Any = None,
    ) -> dict[str, Any]:
        name = self._function_name(function, input)
        return await self._call("POST", "/crons", json={  # type: ignore[no-any-return]
            "function": name, "expression": expression, "timezone": timezone, "input": input})

    async def list_crons(self, function: str | None = None) -> list[dict[str, Any]]:
        params = {"function": function} if function else None
        return (await self._call("GET", "/crons", params=params))["crons"]  # type: ignore[no-any-return]

    async def delete_cron(self, cron_id: str) -> None:
        await self._call("DELETE", f"/crons/{cron_id}")

    async def cancel(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        """Cancel a run and its children: ``{"id", "cancelled": [run ids]}``."""
        body = {"reason": reason} if reason else {}
        return await self._call("POST", f"/runs/{run_id}/cancel", json=body)  # type: ignore[no-any-return]

    async def cancel_many(self, **filters: Any) -> list[str]:
        """Cancel the runs matching ``function=, status=, since=, until=, limit=``."""
        out = await self._call("POST", "/runs/cancel", json=_filters(filters))
        return out["cancelled"]  # type: ignore[no-any-return]

    async def replay(self, run_id: str, *, from_start: bool = False,
                     input: Any = ...) -> dict[str, Any]:
        """Run a failed/cancelled/timed-out run again, from its failed step (default) or
        from the start (optionally with a new input)."""
        body: dict[str, Any] = {"from": "start" if from_start else "failed_step"}
        if input is not ...:
            body["input"] = input
        return await self._call("POST", f"/runs/{run_id}/replay", json=body)  # type: ignore[no-any-return]

    async def replay_many(self, *, from_start: bool = False, **filters: Any) -> list[str]:
        body = {**_filters(filters), "from": "start" if from_start else "failed_step"}
        out = await self._call("POST", "/runs/replay", json=body)
        return out["replayed"]  # type: ignore[no-any-return]

    @property
    def sync(self) -> SyncClient:
        """The same triggers for synchronous code."""
        if self._sync is None:
            self._sync = SyncClient(self)
        return self._sync


def _filters(filters: Mapping[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in filters.items():
        if k not in ("function", "status", "since", "until", "limit"):
            raise TypeError(f"unknown filter {k!r}")
        out[k] = v.isoformat() if isinstance(v, datetime) else v
    return out


class SyncClient:
    """A thin synchronous wrapper: runs the async client on a private background loop."""

    def __init__(self, client: Client) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def _do(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def close(self) -> None:
        """Close the connections and stop the background loop."""
        if self._loop.is_closed():
            return
        self._do(self._client.aclose())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        self._client._sync = None

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def register(self, app_url: str, *, signing_key: str | None = None,
                 budget_ms: int | None = None, generate_key: bool = False) -> dict[str, Any]:
        return self._do(self._client.register(app_url, signing_key=signing_key,
                                              budget_ms=budget_ms,
                                              generate_key=generate_key))

    def send_event(self, name: str, data: Any = None, *, id: str | None = None) -> dict[str, Any]:
        return self._do(self._client.send_event(name, data, id=id))

    def run_no_wait(self, function: str | Runnable, input: Any = None, **kw: Any) -> str:
        return self._do(self._client.run_no_wait(function, input, **kw)).id

    def run(self, function: str | Runnable, input: Any = None, **kw: Any) -> Any:
        return self._do(self._client.run(function, input, **kw))

    def get_run(self, run_id: str) -> dict[str, Any]:
        return self._do(self._client.get_run(run_id))

    def run_many(self, function: str | Runnable, inputs: Sequence[Any],
                 **kw: Any) -> list[str]:
        return [h.id for h in self._do(self._client.run_many(function, inputs, **kw))]

    def schedule(self, function: str | Runnable, at: datetime, input: Any = None, **kw: Any
                 ) -> dict[str, Any]:
        return self._do(self._client.schedule(function, at, input, **kw))

    def create_cron(self, function: str | Runnable, expression: str, **kw: Any
                    ) -> dict[str, Any]:
        return self._do(self._client.create_cron(function, expression, **kw))

    def cancel(self, run_id: str, reason: str | None = None) -> dict[str, Any]:
        return self._do(self._client.cancel(run_id, reason))

    def replay(self, run_id: str, **kw: Any) -> dict[str, Any]:
        return self._do(self._client.replay(run_id, **kw))

    def result(self, run_id: str, timeout: float | None = None) -> Any:
        return self._do(self._client.result(run_id, timeout))


set_default_client(Client)  # what unbound runnables trigger through


def _set_priority(body: dict[str, Any], priority: int | None) -> None:
    """A trigger's ``priority`` into its request body (checked: ``ValueError`` outside
    1-10, before anything is sent)."""
    if priority is not None:
        body["priority"] = check_priority(priority)
