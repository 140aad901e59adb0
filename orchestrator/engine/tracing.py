"""OpenTelemetry traces (the ``otel`` extra, ``DURABLE_OTEL=true``): a span per call, per
step an answer recorded and per run, all in the run's trace (docs/observability.md).

A run outlives any process, so its span is never held open. Its ids are derived from
the run id instead: the trace id is the run id's own 128 bits (a run id is 32 hex
digits; any other id: the first 16 bytes of its SHA-256), the root span id the first 8
bytes of SHA-256 of ``run:<id>``. Every replica parents calls and steps on that root
without storing anything, and the run span itself is emitted once, when the run ends,
with those ids and the run's recorded times. A child run (or workflow task) has its own
trace, with a link to its parent run's root span.

Off, ``OFF`` (a ``Tracing``) is used: each hook is a no-op and nothing imports
opentelemetry; callers check ``enabled`` before building what a hook takes. On,
``OtelTracing`` emits through the globally configured ``TracerProvider`` (or the one it
is given), so exporters are configured the standard way (``OTEL_*`` variables with
opentelemetry-distro, or code)."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, cast

from orchestrator.store import StepInsert
from sdk import protocol as p

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span, Tracer, TracerProvider

log = logging.getLogger("orchestrator.tracing")

SCOPE: Final = "orchestrator"
"""The instrumentation scope of every span the orchestrator emits."""
_HEX128 = re.compile(r"[0-9a-f]{32}")
_OK: Final = frozenset({p.RunStatus.COMPLETED, p.RunStatus.SKIPPED})


def trace_id_of(run_id: str) -> int:
    """The trace id of a run: its id's own bits if it is 128-bit hex, else a hash."""
    if _HEX128.fullmatch(run_id) and (tid := int(run_id, 16)):
        return tid
    return int.from_bytes(hashlib.sha256(run_id.encode()).digest()[:16], "big") or 1


def root_span_id_of(run_id: str) -> int:
    """The span id of a run's own span, the parent of its calls and steps."""
    return int.from_bytes(hashlib.sha256(b"run:" + run_id.encode()).digest()[:8],
                          "big") or 1


def traceparent(trace_id: int, span_id: int, flags: int = 1) -> str:
    """A W3C ``traceparent`` header value (version 00)."""
    return f"00-{trace_id:032x}-{span_id:016x}-{flags & 0xff:02x}"


@dataclass(frozen=True, slots=True)
class EndedRun:
    """A run ended by a transaction, as its span needs it (``Effects.traced_runs``)."""

    run_id: str
    function: str
    status: str
    parent_id: str | None
    task: str | None
    created_at: float | None
    ended_at: float
    error_json: str | None


class CallSpan:
    """The span of one call in flight: its ``traceparent`` goes in the request, the
    invoker notes the HTTP status, the dispatcher ends it with the outcome."""

    __slots__ = ("_trace", "span", "status_code", "traceparent")

    def __init__(self, span: Span, header: str, trace: Any) -> None:
        self.span = span
        self.traceparent = header
        self.status_code: int | None = None
        self._trace = trace

    def current(self) -> AbstractContextManager[object]:
        """The span as the current context while the request is sent (an instrumented
        HTTP client's own span becomes its child); it is not ended on exit."""
        return cast("AbstractContextManager[object]",
                    self._trace.use_span(self.span, end_on_exit=False))

    def end(self, outcome: str, error: str | None = None) -> None:
        """End the span: ``outcome`` is the answer's status or the failure's kind."""
        try:
            if self.status_code is not None:
                self.span.set_attribute("http.status_code", self.status_code)
            self.span.set_attribute("durable.outcome", outcome)
            if error is not None:
                self.span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
            self.span.end()
        except Exception:  # tracing never fails a call
            log.exception("ending a call span failed")


class Tracing:
    """Tracing off: every hook does nothing (and opentelemetry is never imported)."""

    enabled: bool = False

    def call(self, run_id: str, call_id: str, function: str, app: str) -> CallSpan | None:
        """Start the span of a call to an app (None: no span, no ``traceparent``)."""
        return None

    def committed(self, steps: Sequence[tuple[str, StepInsert]],
                  runs: Sequence[EndedRun]) -> None:
        """Emit the spans of what a committed transaction recorded: steps (run id, the
        step's row) and runs ended."""


OFF: Final = Tracing()


class _ChosenIds:
    """A tracer's id generator that hands out the ids set for the next span (a run's
    derived ids) and otherwise defers to the provider's own generator."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.trace_id: int | None = None
        self.span_id: int | None = None

    def generate_trace_id(self) -> int:
        return int(self.inner.generate_trace_id()) if self.trace_id is None else self.trace_id

    def generate_span_id(self) -> int:
        return int(self.inner.generate_span_id()) if self.span_id is None else self.span_id

    def is_trace_id_random(self) -> bool:
        """A run id is not random throughout (a time, then 80 random bits)."""
        return self.trace_id is None and bool(self.inner.is_trace_id_random())


class OtelTracing(Tracing):
    """Spans through ``provider`` (None: the global ``TracerProvider``, looked up at each
    use, so one configured after the engine starts is used too)."""

    enabled = True

    def __init__(self, provider: TracerProvider | None = None) -> None:
        from opentelemetry import trace

        self._trace = trace
        self._provider = provider
        self._cached: tuple[object, Tracer] | None = None
        self._warned = False

    def _tracer(self) -> Tracer:
        """The orchestrator's tracer on the current provider; on the SDK's, its id
        generator is wrapped (``_ChosenIds``) so that a run span gets the derived ids."""
        provider = self._provider or self._trace.get_tracer_provider()
        if self._cached is not None and self._cached[0] is provider:
            return self._cached[1]
        tracer = provider.get_tracer(SCOPE)
        inner = getattr(tracer, "id_generator", None)
        if inner is not None and not isinstance(inner, _ChosenIds):
            # a tracer of our own scope: only the orchestrator's spans are affected
            tracer.id_generator = _ChosenIds(inner)  # type: ignore[attr-defined]
        self._cached = (provider, tracer)
        return tracer

    def _root(self, run_id: str) -> Context:
        """The context whose (remote) parent is the run's span."""
        t = self._trace
        ctx = t.SpanContext(trace_id_of(run_id), root_span_id_of(run_id), is_remote=True,
                            trace_flags=t.TraceFlags(t.TraceFlags.SAMPLED))
        return cast("Context", t.set_span_in_context(t.NonRecordingSpan(ctx)))

    def call(self, run_id: str, call_id: str, function: str, app: str) -> CallSpan | None:
        try:
            span = self._tracer().start_span(
                f"call {function}", context=self._root(run_id),
                kind=self._trace.SpanKind.CLIENT,
                attributes={"durable.run_id": run_id, "durable.call_id": call_id,
                            "durable.function": function, "durable.app": app})
        except Exception:  # tracing never fails a call: this one goes without a span
            log.exception("starting a call span failed")
            return None
        sc = span.get_span_context()
        return CallSpan(span, traceparent(sc.trace_id, sc.span_id, sc.trace_flags), self._trace)

    def committed(self, steps: Sequence[tuple[str, StepInsert]],
                  runs: Sequence[EndedRun]) -> None:
        try:
            tracer = self._tracer()
            for run_id, row in steps:
                self._step(tracer, run_id, row)
            for run in runs:
                self._run(tracer, run)
        except Exception:  # tracing never breaks the commit's other effects
            log.exception("emitting spans failed")

    def _step(self, tracer: Tracer, run_id: str, row: StepInsert) -> None:
        ended = row.get("ended_at")
        started = row.get("started_at")
        end = _ns(ended) if ended is not None else None
        start = _ns(started) if started is not None else end
        attrs: dict[str, str | int] = {
            "durable.run_id": run_id, "durable.step_id": row["step_id"],
            "durable.step_kind": row["kind"], "durable.attempt": row["attempts"],
            "durable.status": row["status"]}
        error = _error_text(row.get("error_json"))
        if error is not None:
            attrs["durable.error"] = error
        span = tracer.start_span(f"step {row['name']}", context=self._root(run_id),
                                 attributes=attrs, start_time=start)
        if row["status"] == p.StepStatus.FAILED:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, error))
        span.end(end_time=end)

    def _run(self, tracer: Tracer, run: EndedRun) -> None:
        t = self._trace
        links = []
        if run.parent_id is not None:
            parent = t.SpanContext(trace_id_of(run.parent_id), root_span_id_of(run.parent_id),
                                   is_remote=True, trace_flags=t.TraceFlags(t.TraceFlags.SAMPLED))
            links.append(t.Link(parent, {"durable.link": "parent run"}))
        attrs: dict[str, str] = {"durable.run_id": run.run_id,
                                 "durable.function": run.function,
                                 "durable.status": run.status}
        if run.parent_id is not None:
            attrs["durable.parent_id"] = run.parent_id
        if run.task is not None:
            attrs["durable.task"] = run.task
        error = _error_text(run.error_json)
        if error is not None:
            attrs["durable.error"] = error
        ids = getattr(tracer, "id_generator", None)
        if isinstance(ids, _ChosenIds):
            ids.trace_id, ids.span_id = trace_id_of(run.run_id), root_span_id_of(run.run_id)
        elif not self._warned and not isinstance(tracer, self._trace.ProxyTracer):
            self._warned = True
            log.warning("the TracerProvider is not the OpenTelemetry SDK's: run spans get "
                        "its own ids, and the calls and steps of a run have no parent span")
        try:
            # no parent: the trace id comes from the id generator too
            span = tracer.start_span(
                f"run {run.function}", context=t.set_span_in_context(t.INVALID_SPAN),
                links=links, attributes=attrs,
                start_time=_ns(run.created_at if run.created_at is not None else run.ended_at))
        finally:
            if isinstance(ids, _ChosenIds):
                ids.trace_id = ids.span_id = None
        if run.status not in _OK:
            span.set_status(t.Status(t.StatusCode.ERROR, error or run.status))
        span.end(end_time=_ns(run.ended_at))


def _ns(seconds: float) -> int:
    """A recorded time (float seconds) in nanoseconds, to the microsecond (a float of
    today's epoch seconds holds no finer)."""
    return round(seconds * 1e6) * 1000


def _error_text(error_json: str | None) -> str | None:
    """``Type: message`` of a recorded error (None: no error)."""
    if error_json is None:
        return None
    try:
        err = json.loads(error_json)
    except ValueError:
        return error_json[:500]
    if not isinstance(err, dict):
        return str(err)[:500]
    return f"{err.get('type', 'Error')}: {err.get('message', '')}"[:500]


def for_settings(enabled: bool) -> Tracing:
    """``OtelTracing`` on the global provider if ``enabled``, else ``OFF``."""
    return OtelTracing() if enabled else OFF


__all__ = ["OFF", "CallSpan", "EndedRun", "OtelTracing", "Tracing", "for_settings",
           "root_span_id_of", "trace_id_of", "traceparent"]
