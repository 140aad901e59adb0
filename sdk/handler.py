"""The framework-free core of an app's endpoint: a signed request in, a signed answer out.

Framework adapters (``sdk.asgi``, and over it ``sdk.wsgi``/``flask``/``django`` and
``sdk.aws_lambda``) only convert at the edge:
they hand ``Handler.handle`` the raw body and headers and send back what it returns.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sdk import protocol as p
from sdk._execution import Execution, Interrupt, exception_body
from sdk._kept import KeptMemos
from sdk._replay import ReplayCache
from sdk.context import Context, SyncContext
from sdk.errors import (
    ChildRunError,
    InputValidationError,
    NonDeterminismError,
    NonRetriableError,
    RetryAfterError,
    StepError,
)
from sdk.function import Body, Function, Retry, Runnable
from sdk.workflow import Workflow

log = logging.getLogger("sdk")

SDK_NAME = "durable-python/0.1.0"


@dataclass
class Response:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)


# Errors that fail the run at once: retrying the call would replay the same outcome.
_FINAL = (NonRetriableError, NonDeterminismError, StepError, ChildRunError, InputValidationError)


def _target(fn: Runnable, request: p.InvokeRequest) -> tuple[Body, Retry, Any]:
    """What to run for this request: the function's body, or one task of a workflow."""
    if isinstance(fn, Workflow):
        t = fn.find(request.get("task"))
        if t is None:
            raise LookupError(f"workflow {fn.name!r} has no task {request.get('task')!r}")
        return t.body, t.retry or fn.retry, t.skip_if
    assert isinstance(fn, Function)
    return fn.body, fn.retry, None


async def execute(fn: Runnable, request: p.InvokeRequest, request_bytes: int,
                  memo: list[p.MemoEntry] | None = None) -> p.Answer:
    """Run (replay) ``fn`` (or the requested task of a workflow) for one call; its answer.
    ``memo``: the whole memo, if the request carries only its tail (``sdk._kept``)."""
    body, retry, skip_if = _target(fn, request)
    ex = Execution(request, retry, request_bytes, memo)
    try:
        value = fn.parse_input(request.get("input"))
        if body.is_async:
            ctx: Context | SyncContext = Context(ex, request)
        else:
            ctx = SyncContext(ex, request, asyncio.get_running_loop())
        if skip_if is not None and not ex.memo and skip_if(ctx):
            return ex.complete(None, skipped=True)
        if body.is_async:
            out = await (body.fn(ctx, value) if body.takes_input else body.fn(ctx))
        else:
            args = (ctx, value) if body.takes_input else (ctx,)
            out = await asyncio.to_thread(body.fn, *args)
    except Interrupt:
        if ex.failure is not None:
            return ex.errored(exception_body(ex.failure, retriable=False, retry_after_ms=p.MISSING))
        assert ex.op is not None  # an Interrupt without a failure is a yield
        return ex.yielded(ex.op)
    except Exception as exc:
        return ex.errored(exception_body(
            exc, retriable=not isinstance(exc, _FINAL),
            retry_after_ms=int(exc.delay * 1000) if isinstance(exc, RetryAfterError) else None))
    try:
        data = p.dumps_value(out)
    except (TypeError, ValueError) as exc:
        return ex.errored(p.error_body("SerializationError", f"output is not JSON: {exc}",
                                       retriable=False))
    if len(data) > p.MAX_STEP_OUTPUT_BYTES:
        return ex.errored(p.error_body(
            p.ErrorCode.OUTPUT_TOO_LARGE,
            f"the run's output is {len(data)} bytes; the limit is {p.MAX_STEP_OUTPUT_BYTES}",
            retriable=False,
        ))
    return ex.complete(p.loads(data))


class Handler:
    """Answers the orchestrator's requests for a set of declared functions."""

    def __init__(
        self, functions: Iterable[Runnable], signer: p.Signer | None, app_id: str,
        kept: KeptMemos | None = None,
    ) -> None:
        """``kept``: the memos kept between a run's calls (default: a ``KeptMemos`` of
        the default bounds; ``KeptMemos(max_runs=0)`` keeps none)."""
        self.functions: dict[str, Runnable] = {}
        for f in functions:
            if f.name in self.functions:
                raise ValueError(f"two functions are named {f.name!r}")
            self.functions[f.name] = f
        self._signer = signer
        self.app_id = app_id
        self.replays = ReplayCache(signer.max_skew if signer is not None else p.MAX_CLOCK_SKEW_S)
        self.kept = KeptMemos() if kept is None else kept

    @property
    def signer(self) -> p.Signer:
        if self._signer is None:
            raise ValueError("this handler has no signing key")
        return self._signer

    def introspection(self) -> dict[str, Any]:
        return {
            "v": p.VERSION,
            "app_id": self.app_id,
            "sdk": SDK_NAME,
            "functions": [f.config() for f in self.functions.values()],
        }

    def _signed(self, status: int, msg: Any) -> Response:
        body = p.dumps(msg)
        headers = {"content-type": "application/json", **self.signer.sign(body)}
        return Response(status, body, headers)

    _CODES = {401: "unauthorized", 409: "replayed", 413: "too_large"}

    @classmethod
    def _refuse(cls, status: int, message: str) -> Response:
        body = p.dumps({"error": {"code": cls._CODES.get(status, "bad_request"),
                                  "message": message}})
        return Response(status, body, {"content-type": "application/json"})

    def precheck(self, headers: Mapping[str, str]) -> Response | None:
        """Refuse, before its body is read, a request whose signature headers are missing,
        malformed or stale (a 401); None if it may be read (and then ``handle``d)."""
        try:
            self.signer.precheck(headers)
        except p.SignatureError as exc:
            log.warning("refused a request: %s", exc)
            return self._refuse(401, str(exc))
        return None

    async def handle(self, body: bytes, headers: Mapping[str, str]) -> Response:
        """Verify, dispatch and answer one request (``headers`` keys lower-case)."""
        try:
            signed_at = self.signer.verify(body, headers)
        except p.SignatureError as exc:
            log.warning("refused a request: %s", exc)
            return self._refuse(401, str(exc))
        try:
            request = p.parse_request(p.loads(body))
        except (ValueError, p.ProtocolError) as exc:
            return self._refuse(400, f"malformed request: {exc}")
        if request["kind"] == p.Kind.INTROSPECT:  # runs no user code: replays are harmless
            return self._signed(200, self.introspection())
        resolved = self.kept.memo_of(request)
        if resolved is None:  # runs nothing, so the call id stays unused for the resend
            return self._signed(200, p.memo_needed(request["call_id"]))
        memo, head_bytes = resolved
        if not self.replays.first_use(request["call_id"], signed_at):
            log.warning("refused a replayed request for call %s", request["call_id"])
            return self._refuse(409, f"call {request['call_id']!r} was received already "
                                "(a replayed or duplicated request)")
        fn = self.functions.get(request["function"])
        if isinstance(fn, Workflow) and fn.find(request.get("task")) is None:
            fn = None
        if fn is None:
            return self._signed(200, p.answer_error(request["call_id"], [], [], p.error_body(
                p.ErrorCode.FUNCTION_NOT_FOUND,
                f"this app has no function {request['function']!r}"
                + (f" with a task {request['task']!r}" if request.get("task") else ""),
                retriable=False,
            )))
        parent = headers.get("traceparent")
        joined = _join_trace(parent) if parent else None
        kept = self.kept.keep(request, memo)  # before user code can touch the entries
        try:
            answer = await execute(fn, request, len(body) + head_bytes, memo)
        finally:
            if joined is not None:
                joined[0].detach(joined[1])
        if answer["status"] == p.Status.COMPLETE or (
                answer["status"] == p.Status.ERROR and not answer["error"]["retriable"]):
            self.kept.drop(request["run"]["id"])  # the run is over
        elif kept:
            answer["memo_kept"] = kept
        return self._signed(200, answer)


@functools.cache
def _otel() -> tuple[Any, Any] | None:
    """opentelemetry's ``context`` module and a W3C propagator, imported on the first
    request that carries a ``traceparent`` (None: opentelemetry-api is not installed)."""
    try:
        from opentelemetry import context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    except ImportError:
        return None
    return context, TraceContextTextMapPropagator()


def _join_trace(traceparent: str) -> tuple[Any, object] | None:
    """Make the request's ``traceparent`` the current OpenTelemetry context, so the spans
    the function starts join the run's trace; what to detach it with (None: nothing was
    attached, opentelemetry-api is not installed)."""
    otel = _otel()
    if otel is None:
        return None
    context, propagator = otel
    return context, context.attach(propagator.extract({"traceparent": traceparent}))
