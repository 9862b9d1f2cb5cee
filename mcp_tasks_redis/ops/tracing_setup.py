"""Where a server or worker process sends its spans: the ``traces`` setting (``MCP_TASKS_TRACES``).

The engine creates its spans through the OpenTelemetry API only (engine/telemetry/tracing.py);
this module is the one place that touches the SDK, and only when the setting asks for it:

- ``otlp``: an OTLP/HTTP exporter (``pip install opentelemetry-exporter-otlp-proto-http``), sent in
  batches to ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter reads the standard ``OTEL_*`` variables);
- ``console``: each span printed to stdout as JSON, in batches;
- ``jsonl:PATH``: each span appended to PATH as one line of JSON when it ends (for a quick look,
  a log shipper, or tests that read what another process traced).

The service name is ``OTEL_SERVICE_NAME`` when set, else ``mcp-tasks-redis-server`` or
``mcp-tasks-redis-worker``.
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any


class TracingSetupError(Exception):
    """The traces setting cannot be honoured (a package is missing); the message says which."""


def configure_tracing(spec: str, role: str) -> Callable[[], None]:
    """Install a global tracer provider exporting as ``spec`` says; returns its shutdown (which
    flushes what is buffered), to call when the process stops."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
        )
    except ImportError as e:
        raise TracingSetupError(
            f"MCP_TASKS_TRACES={spec} needs OpenTelemetry: pip install 'mcp-tasks-redis[otel]' ({e})"
        ) from None
    processor: SpanProcessor
    if spec == "otlp":
        try:
            otlp: Any = importlib.import_module("opentelemetry.exporter.otlp.proto.http.trace_exporter")
        except ImportError:
            raise TracingSetupError(
                "MCP_TASKS_TRACES=otlp needs the OTLP exporter:"
                " pip install opentelemetry-exporter-otlp-proto-http"
            ) from None
        processor = BatchSpanProcessor(otlp.OTLPSpanExporter())
    elif spec == "console":
        processor = BatchSpanProcessor(ConsoleSpanExporter())
    else:
        processor = SimpleSpanProcessor(_jsonl_exporter(spec.removeprefix("jsonl:")))
    name = os.environ.get("OTEL_SERVICE_NAME") or f"mcp-tasks-redis-{role}"
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return provider.shutdown


def _jsonl_exporter(path: str) -> Any:
    from opentelemetry.sdk.trace import ReadableSpan
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    class JsonLinesExporter(SpanExporter):
        """Appends each span as one line of JSON (the SDK's own span JSON, on one line)."""

        def __init__(self) -> None:
            self._lock = threading.Lock()
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open while the process runs

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = "".join(span.to_json(indent=None) + "\n" for span in spans)
            with self._lock:
                self._file.write(lines)
                self._file.flush()
            return SpanExportResult.SUCCESS

        def shutdown(self) -> None:
            with self._lock:
                self._file.close()

    return JsonLinesExporter()
