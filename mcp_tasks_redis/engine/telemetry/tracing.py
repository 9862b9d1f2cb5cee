"""OpenTelemetry traces of tasks (the ``[otel]`` extra): one trace per task, across processes.

- On the server, ``tools/call {tool}`` (kind SERVER) is the request: the 2.x SDK makes that span
  itself, the 1.x adapter makes it with `request_span`; both take their parent from the call's
  ``_meta`` (``traceparent``, SEP-414) when the client sent one.
- ``task.create {tool}`` (PRODUCER), a child of it, covers writing the task; its span context is
  stored in the task's job (``Job.meta["trace"]``, W3C ``traceparent``/``tracestate``), which both
  wires write through `Tasks.create`.
- On the worker, each run is ``task.run {tool}`` (CONSUMER), a child of the create span, with the
  attempt, the tool and the run's outcome; a retry it schedules is ``task.retry {tool}`` and an
  input request it waits on is ``task.input_wait {method}``, both children of the run.

Spans go to the global tracer provider (`use_tracer_provider` picks another). Nothing else is
traced: no span for idle polling, blocking reads, lease renewals, reaping or
acknowledgements. Without OpenTelemetry installed, `ENABLED` is false, every function here
returns a no-op handle and no OpenTelemetry code runs; with the API but no SDK configured, the
spans are OpenTelemetry's non-recording ones and no context is stored in the job.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Mapping
from typing import Any


def _installed() -> bool:
    try:
        import opentelemetry.trace  # noqa: F401  # pyright: ignore[reportUnusedImport]
    except ImportError:  # the [otel] extra is not installed
        return False
    return True


ENABLED = _installed()
"""Whether the OpenTelemetry API can be imported; when not, nothing below imports it."""

TRACER_NAME = "mcp_tasks_redis"
META_KEY = "trace"
"""The key of `Job.meta` that carries the create span's context to the workers."""

Attribute = str | int | float | bool


class SpanHandle:
    """A span, or nothing when tracing is off: what the engine may say about it."""

    __slots__ = ("_span",)

    def __init__(self, span: Any = None) -> None:
        self._span = span

    @property
    def _live(self) -> bool:
        """A span still open and recording (an ended one is left alone)."""
        return self._span is not None and bool(self._span.is_recording())

    def set(self, attributes: Mapping[str, Attribute | None]) -> None:
        if self._live:
            self._span.set_attributes({k: v for k, v in attributes.items() if v is not None})

    def outcome(self, outcome: str, error: str | None = None) -> None:
        """How the run (or the step) ended; ``error`` marks the span as failed, saying why."""
        if not self._live:
            return
        self._span.set_attribute("mcp_tasks.outcome", outcome)
        if error is not None:
            from opentelemetry.trace import StatusCode

            self._span.set_status(StatusCode.ERROR, error)


NO_SPAN = SpanHandle()


_provider: Any = None


def use_tracer_provider(provider: Any) -> None:
    """Trace with ``provider`` (an OpenTelemetry ``TracerProvider``) instead of the global one,
    or with the global one again (None): for applications that keep providers apart, and tests."""
    global _provider
    _provider = provider


def _tracer() -> Any:
    from opentelemetry import trace

    return trace.get_tracer(TRACER_NAME, tracer_provider=_provider)


def _parent(carrier: Mapping[str, Any] | None) -> Any:
    """The context a carrier (``_meta``, a job's trace field) names; None if it names no span."""
    from opentelemetry import propagate, trace

    if not carrier:
        return None
    try:
        context = propagate.extract(dict(carrier))
    except (TypeError, ValueError):
        return None
    return context if trace.get_current_span(context).get_span_context().is_valid else None


@contextlib.contextmanager
def request_span(method: str, tool: str, meta: Mapping[str, Any] | None) -> Generator[SpanHandle]:
    """The server span of a request the SDK does not trace itself (``tools/call`` on 1.x)."""
    if not ENABLED:
        yield NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    attributes = {
        "mcp.method.name": method,
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": tool,
    }
    with _tracer().start_as_current_span(
        f"{method} {tool}", context=_parent(meta), kind=SpanKind.SERVER, attributes=attributes
    ) as span:
        yield SpanHandle(span)


@contextlib.contextmanager
def create_span(tool: str | None, task_id: str, priority: str) -> Generator[dict[str, str]]:
    """Writing a task: yields the carrier to store in its job (empty when nothing is traced)."""
    if not ENABLED:
        yield {}
        return
    from opentelemetry import propagate
    from opentelemetry.trace import SpanKind

    attributes = {
        "gen_ai.tool.name": tool or "",
        "mcp_tasks.task.id": task_id,
        "mcp_tasks.priority": priority,
    }
    with _tracer().start_as_current_span(
        f"task.create {tool or ''}".rstrip(), kind=SpanKind.PRODUCER, attributes=attributes
    ) as span:
        carrier: dict[str, str] = {}
        if span.get_span_context().is_valid:  # also unsampled: the workers follow the decision
            propagate.inject(carrier)
        yield carrier


@contextlib.contextmanager
def run_span(
    tool: str | None, task_id: str, attempt: int, run: int, carrier: Mapping[str, Any] | None
) -> Generator[SpanHandle]:
    """One run of a task on a worker, a child of the span that created the task."""
    if not ENABLED:
        yield NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    attributes = {
        "gen_ai.tool.name": tool or "",
        "mcp_tasks.task.id": task_id,
        "mcp_tasks.attempt": attempt,
        "mcp_tasks.run": run,
    }
    with _tracer().start_as_current_span(
        f"task.run {tool or ''}".rstrip(),
        context=_parent(carrier),
        kind=SpanKind.CONSUMER,
        attributes=attributes,
    ) as span:
        yield SpanHandle(span)


@contextlib.contextmanager
def step_span(name: str, attributes: Mapping[str, Attribute]) -> Generator[SpanHandle]:
    """A step inside a run (a retry scheduled, an input wait), a child of the current span."""
    if not ENABLED:
        yield NO_SPAN
        return
    with _tracer().start_as_current_span(name, attributes=dict(attributes)) as span:
        yield SpanHandle(span)


def trace_id_of(meta: Mapping[str, Any]) -> str | None:
    """The trace id (32 hex digits) of the task whose job meta this is, if it was traced: for an
    operator to find its trace. Reads the W3C ``traceparent`` without OpenTelemetry."""
    carrier = job_carrier(meta)
    parent = carrier.get("traceparent") if carrier is not None else None
    parts = parent.split("-") if isinstance(parent, str) else []
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def job_carrier(meta: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The trace context a job carries, if any."""
    carrier = meta.get(META_KEY)
    return carrier if isinstance(carrier, Mapping) else None  # pyright: ignore[reportUnknownVariableType]
