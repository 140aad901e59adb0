"""OpenTelemetry traces: derived ids, the call, step and run spans (on a TracerProvider
with an in-memory exporter), the ``traceparent`` the invoker sends and the SDK joins,
and nothing of opentelemetry imported while tracing is off."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from orchestrator.config import BadSettings, Settings
from orchestrator.engine.engine import Engine
from orchestrator.engine.invoker import Invoker
from orchestrator.engine.tracing import (
    OFF,
    EndedRun,
    OtelTracing,
    root_span_id_of,
    trace_id_of,
    traceparent,
)
from orchestrator.store import StepInsert
from sdk import Context, task
from sdk import protocol as p
from sdk.handler import Handler

RUN = "0190a1b2c3d4e5f60718293a4b5c6d7e"  # a run id as orchestrator.ids.new_id makes them
KEY = "shared-secret"


@pytest.fixture
def spans() -> Iterator[tuple[OtelTracing, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield OtelTracing(provider), exporter
    provider.shutdown()


def _one(exporter: InMemorySpanExporter) -> ReadableSpan:
    [span] = exporter.get_finished_spans()
    return span


# -- ids -------------------------------------------------------------------------------------


def test_a_run_ids_own_bits_are_its_trace_id() -> None:
    assert trace_id_of(RUN) == int(RUN, 16)
    other = "not-hex-run"
    assert trace_id_of(other) == int.from_bytes(
        hashlib.sha256(other.encode()).digest()[:16], "big")
    assert trace_id_of("0x" + RUN[2:]) != int(RUN[2:], 16)  # no int() leniency
    root = root_span_id_of(RUN)
    assert root == int.from_bytes(hashlib.sha256(b"run:" + RUN.encode()).digest()[:8], "big")
    assert root != 0 and root_span_id_of(RUN) == root != root_span_id_of(RUN[::-1])
    assert traceparent(trace_id_of(RUN), 0xab) == f"00-{RUN}-00000000000000ab-01"


def test_off_does_nothing() -> None:
    assert OFF.enabled is False
    assert OFF.call(RUN, f"{RUN}:1", "chain", "app") is None
    OFF.committed([], [EndedRun(RUN, "chain", "completed", None, None, 1.0, 2.0, None)])


# -- spans -----------------------------------------------------------------------------------


def test_a_call_span_is_a_client_child_of_the_run_span(
        spans: tuple[OtelTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    call = tracing.call(RUN, f"{RUN}:3", "chain", "shop")
    assert call is not None
    call.status_code = 200
    call.end("complete")
    span = _one(exporter)
    assert span.name == "call chain" and span.kind is trace.SpanKind.CLIENT
    assert span.context is not None and span.parent is not None
    assert span.context.trace_id == int(RUN, 16)
    assert span.parent.span_id == root_span_id_of(RUN) and span.parent.is_remote
    assert call.traceparent == traceparent(int(RUN, 16), span.context.span_id)
    assert call.traceparent.endswith("-01")
    assert dict(span.attributes or {}) == {
        "durable.run_id": RUN, "durable.call_id": f"{RUN}:3", "durable.function": "chain",
        "durable.app": "shop", "http.status_code": 200, "durable.outcome": "complete"}
    assert span.status.status_code is trace.StatusCode.UNSET


def test_a_failed_call_has_an_error_status(
        spans: tuple[OtelTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    call = tracing.call(RUN, f"{RUN}:1", "chain", "shop")
    assert call is not None
    call.end("connect", "could not connect")
    span = _one(exporter)
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "could not connect"
    assert span.attributes is not None and "http.status_code" not in span.attributes
    assert span.attributes["durable.outcome"] == "connect"


def _step(**over: object) -> StepInsert:
    row: StepInsert = {
        "run_id": RUN, "step_id": "charge", "seq": 0, "name": "charge", "kind": "step",
        "status": "completed", "attempts": 1, "output_json": "1", "error_json": None,
        "started_at": 1000.25, "ended_at": 1001.5}
    row.update(over)  # type: ignore[typeddict-item]
    return row


def test_step_spans_carry_their_recorded_times(
        spans: tuple[OtelTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    err = json.dumps({"type": "ValueError", "message": "card declined"})
    tracing.committed([(RUN, _step()), (RUN, _step(step_id="refund", name="refund",
                                                   status="failed", attempts=3,
                                                   error_json=err))], [])
    ok, bad = exporter.get_finished_spans()
    assert ok.name == "step charge" and bad.name == "step refund"
    assert (ok.start_time, ok.end_time) == (1_000_250_000_000, 1_001_500_000_000)
    for s in (ok, bad):
        assert s.context is not None and s.parent is not None
        assert s.context.trace_id == int(RUN, 16)
        assert s.parent.span_id == root_span_id_of(RUN)
    assert dict(ok.attributes or {}) == {
        "durable.run_id": RUN, "durable.step_id": "charge", "durable.step_kind": "step",
        "durable.attempt": 1, "durable.status": "completed"}
    assert bad.attributes is not None and bad.attributes["durable.attempt"] == 3
    assert bad.attributes["durable.error"] == "ValueError: card declined"
    assert bad.status.status_code is trace.StatusCode.ERROR


def test_the_run_span_has_the_derived_ids_and_the_runs_times(
        spans: tuple[OtelTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    tracing.committed([], [EndedRun(RUN, "chain", "completed", None, None, 100.0, 160.5,
                                    None)])
    run = _one(exporter)
    assert run.name == "run chain" and run.parent is None
    assert run.context is not None
    assert (run.context.trace_id, run.context.span_id) == (int(RUN, 16), root_span_id_of(RUN))
    assert (run.start_time, run.end_time) == (100_000_000_000, 160_500_000_000)
    assert run.status.status_code is trace.StatusCode.UNSET
    assert dict(run.attributes or {}) == {"durable.run_id": RUN, "durable.function": "chain",
                                          "durable.status": "completed"}
    # the chosen ids were for that span only: the next spans get the provider's own
    call = tracing.call(RUN, f"{RUN}:9", "chain", "shop")
    assert call is not None
    call.end("complete")
    later = exporter.get_finished_spans()[-1]
    assert later.context is not None and later.context.span_id != root_span_id_of(RUN)


def test_a_child_run_has_its_own_trace_linked_to_its_parents(
        spans: tuple[OtelTracing, InMemorySpanExporter]) -> None:
    tracing, exporter = spans
    child = "0190a1b2c3d4ffffffffffffffffffff"
    err = json.dumps({"type": "StepError", "message": "boom"})
    tracing.committed([], [EndedRun(child, "notify", "failed", RUN, None, 5.0, 6.0, err)])
    span = _one(exporter)
    assert span.context is not None and span.context.trace_id == int(child, 16)
    [link] = span.links
    assert (link.context.trace_id, link.context.span_id) == (int(RUN, 16),
                                                             root_span_id_of(RUN))
    assert span.status.status_code is trace.StatusCode.ERROR
    assert span.status.description == "StepError: boom"
    assert span.attributes is not None and span.attributes["durable.parent_id"] == RUN


class _Broken:
    def get_tracer(self, *args: object) -> object:
        raise RuntimeError("exporter misconfigured")


def test_a_broken_provider_costs_spans_not_calls(caplog: pytest.LogCaptureFixture) -> None:
    tracing = OtelTracing(_Broken())  # type: ignore[arg-type]
    assert tracing.call(RUN, f"{RUN}:1", "chain", "shop") is None  # sent without a header
    tracing.committed([(RUN, _step())], [EndedRun(RUN, "chain", "completed", None, None,
                                                  1.0, 2.0, None)])
    assert [r.getMessage() for r in caplog.records] == ["starting a call span failed",
                                                        "emitting spans failed"]


# -- the invoker sends traceparent ------------------------------------------------------------


@pytest.fixture
async def invoker() -> AsyncIterator[Invoker]:
    inv = Invoker(p.Signer(KEY), timeout=5.0)
    yield inv
    await inv.close()


@pytest.mark.respx(using="httpx")
async def test_the_invoker_sends_the_call_spans_traceparent(
        respx_mock: respx.MockRouter, invoker: Invoker,
        spans: tuple[OtelTracing, InMemorySpanExporter]) -> None:
    url = "http://app.test/api/durable"
    current: list[trace.SpanContext] = []

    def busy(request: httpx.Request) -> httpx.Response:
        current.append(trace.get_current_span().get_span_context())
        return httpx.Response(503, text="busy")

    route = respx_mock.post(url).mock(side_effect=busy)
    tracing, exporter = spans
    call = tracing.call(RUN, f"{RUN}:1", "chain", "shop")
    assert call is not None
    await invoker.invoke(url, b"{}", f"{RUN}:1", span=call)
    assert route.calls.last.request.headers["traceparent"] == call.traceparent
    # the call span is current while it is sent (an instrumented client's span is its child)
    assert current == [call.span.get_span_context()]
    assert not trace.get_current_span().get_span_context().is_valid
    assert call.status_code == 503
    call.end("http_status", "app answered HTTP 503: busy")
    assert dict(_one(exporter).attributes or {})["http.status_code"] == 503
    await invoker.invoke(url, b"{}", f"{RUN}:2")  # no span: no header
    assert "traceparent" not in route.calls.last.request.headers
    assert not current[1].is_valid


# -- the SDK joins the traceparent --------------------------------------------------------------


async def test_the_sdk_makes_the_traceparent_the_functions_context() -> None:
    seen: list[trace.SpanContext] = []

    @task("peek")
    async def peek(ctx: Context) -> None:
        seen.append(trace.get_current_span().get_span_context())

    handler = Handler([peek], p.Signer(KEY), "app")
    body = p.dumps(p.invoke_request(call_id="c1", function="peek", run_id=RUN, attempt=0,
                                    input=None, event=None, memo=[], budget_ms=30_000))
    header = traceparent(int(RUN, 16), 0x1234)
    resp = await handler.handle(body, {**p.Signer(KEY).sign(body), "traceparent": header})
    assert resp.status == 200, resp.body
    assert (seen[0].trace_id, seen[0].span_id, seen[0].is_remote) == (int(RUN, 16), 0x1234,
                                                                      True)
    assert not trace.get_current_span().get_span_context().is_valid  # detached after
    body2 = body.replace(b'"c1"', b'"c2"')
    resp = await handler.handle(body2, p.Signer(KEY).sign(body2))  # no header: no context
    assert resp.status == 200, resp.body
    assert not seen[1].is_valid


# -- off: opentelemetry is never imported ---------------------------------------------------------


def test_tracing_off_imports_no_opentelemetry(tmp_path: Path) -> None:
    code = f"""
import asyncio, sys
from orchestrator.config import Settings
from orchestrator.app import create_app
from orchestrator.engine.engine import Engine
import sdk.handler

async def main():
    create_app(Settings(database_url="sqlite:///{tmp_path / 'a.db'}", api_keys=["k"],
                        signing_key="s"))
    engine = Engine(Settings(database_url="sqlite:///{tmp_path / 'e.db'}", api_keys=["k"],
                             signing_key="s"))
    assert engine.tracing.enabled is False and engine.hub.tracing is engine.tracing
    assert engine.hub.effects().tracing is False
    await engine.store.open()
    await engine.store.close()

asyncio.run(main())
loaded = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
assert not loaded, loaded
print("clean")
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "clean", out.stderr


def test_otel_true_needs_opentelemetry(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(otel=True).otel is True  # installed here (the dev extra)
    for name in ("opentelemetry", "opentelemetry.trace"):  # as if it were not
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setenv("DURABLE_OTEL", "true")
    with pytest.raises(BadSettings, match=r"^DURABLE_OTEL: .*pip install "
                                          r"'durable-orchestrator\[otel\]'"):
        Settings.load()


def test_an_engine_with_otel_on_traces(tmp_path: Path) -> None:
    engine = Engine(Settings(database_url=f"sqlite:///{tmp_path / 'e.db'}", api_keys=["k"],
                             signing_key="s", otel=True))
    assert isinstance(engine.tracing, OtelTracing) and engine.dispatcher.tracing is engine.tracing
    assert engine.hub.effects().tracing is True
