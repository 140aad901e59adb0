"""Tracing to a file for end-to-end tests: ``span_line`` writes a finished span as one
JSON line, ``to_file`` sets the global ``TracerProvider`` to export there, and

    python -m tests.support.otel_boot SPANS_FILE orchestrator-args...

runs the orchestrator's CLI with it (as opentelemetry-distro would configure it)."""

from __future__ import annotations

import json
import sys

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor


def span_line(span: ReadableSpan) -> str:
    """A span as one JSON line: hex ids, times in ns, the resource's service name."""
    assert span.context is not None
    return json.dumps({
        "name": span.name, "service": span.resource.attributes.get("service.name"),
        "trace_id": f"{span.context.trace_id:032x}", "span_id": f"{span.context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "kind": span.kind.name, "start": span.start_time, "end": span.end_time,
        "status": span.status.status_code.name, "attributes": dict(span.attributes or {}),
        "links": [{"trace_id": f"{ln.context.trace_id:032x}",
                   "span_id": f"{ln.context.span_id:016x}"} for ln in span.links],
    }) + "\n"


def to_file(path: str, service: str) -> None:
    """Export every span (synchronously, as it ends) to ``path``, one JSON line each."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    out = open(path, "a", buffering=1)  # open for the process's life
    provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter(
        out=out, formatter=span_line)))
    trace.set_tracer_provider(provider)


def main() -> None:
    to_file(sys.argv[1], "orchestrator")
    from orchestrator.cli import main as cli

    cli(sys.argv[2:])


if __name__ == "__main__":
    main()
