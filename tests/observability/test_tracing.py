"""Traces of tasks with a worker in this process, spans kept in memory: which spans a task makes,
how they nest from the client's request down to each run, and what is never traced. Then the
same engine without OpenTelemetry installed, and with the API but nothing configured, in a
process of its own.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from opentelemetry import propagate
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mcp_tasks_redis.engine.context import ToolContext
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.policy import Retry
from mcp_tasks_redis.engine.record import TaskStatus
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.telemetry import tracing
from tests.observability.inproc import Running, finished


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    provider, memory = TracerProvider(), InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.use_tracer_provider(provider)
    try:
        yield provider, memory
    finally:
        tracing.use_tracer_provider(None)
        provider.shutdown()


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace, limits=TaskLimits(lease_ms=300, recheck_ms=200))
    yield engine
    await engine.close()


def traced_app() -> ToolRegistry:
    app, failed = ToolRegistry("traced"), set[str]()

    @app.tool(retry=Retry(attempts=2, on=(ConnectionError,), backoff_s=0, jitter=0))
    async def flaky(key: str) -> str:
        if key not in failed:
            failed.add(key)
            raise ConnectionError("first run refused")
        return "second run"

    @app.tool
    async def ask(ctx: ToolContext) -> str:
        return await ctx.ask_text("Which one?") or "no answer"

    return app


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def ids(span: ReadableSpan) -> tuple[int, int, int | None]:
    """(trace id, span id, parent span id)."""
    context = span.get_span_context()
    assert context is not None
    return context.trace_id, context.span_id, span.parent.span_id if span.parent is not None else None


async def test_a_retried_task_and_an_input_wait_make_one_trace_each_from_the_clients_request(
    engine: TaskEngine, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, memory = exporter
    client = provider.get_tracer("a client")
    app = traced_app()
    async with Running(engine, app):
        # The client's span travels in the call's _meta (SEP-414), as a 2.x client sends it.
        with client.start_as_current_span("MCP send tools/call flaky") as sent:
            meta: dict[str, Any] = {}
            propagate.inject(meta)
        with tracing.request_span("tools/call", "flaky", meta):
            flaky = await engine.tasks.create(tool="flaky", arguments={"key": "k"}, dispatch=True)
        with tracing.request_span("tools/call", "ask", None):
            asking = await engine.tasks.create(tool="ask", dispatch=True)
        waiting = await engine.wait_until(asking.task_id, lambda r: bool(r and r.input_requests), timeout=10)
        assert waiting is not None
        [key] = waiting.input_requests
        await engine.tasks.answer(
            asking.task_id, {key: {"result": {"action": "accept", "content": {"answer": "b"}}}}
        )
        assert (await finished(engine, flaky.task_id)).status is TaskStatus.COMPLETED
        assert (await finished(engine, asking.task_id)).result == {"content": [{"type": "text", "text": "b"}]}
    spans = memory.get_finished_spans()

    trace_id, client_id, _ = ids(sent)  # type: ignore[arg-type]
    [request, _] = by_name(spans, "tools/call flaky") + by_name(spans, "tools/call ask")
    [create] = by_name(spans, "task.create flaky")
    runs = by_name(spans, "task.run flaky")
    [retry] = by_name(spans, "task.retry flaky")
    assert ids(request) == (trace_id, ids(request)[1], client_id)
    assert ids(create) == (trace_id, ids(create)[1], ids(request)[1])
    assert (create.attributes or {}).get("mcp_tasks.task.id") == flaky.task_id
    assert [ids(r)[0::2] for r in runs] == [(trace_id, ids(create)[1])] * 2
    assert [(r.attributes or {}).get("mcp_tasks.attempt") for r in runs] == [1, 2]
    assert [(r.attributes or {}).get("mcp_tasks.outcome") for r in runs] == ["retry", "completed"]
    assert (runs[0].status.status_code.name, runs[0].status.description) == ("ERROR", "first run refused")
    assert ids(retry)[0::2] == (trace_id, ids(runs[0])[1])

    [ask_create] = by_name(spans, "task.create ask")
    [ask_run] = by_name(spans, "task.run ask")
    [wait] = by_name(spans, "task.input_wait elicitation/create")
    assert ids(ask_create)[0] != trace_id  # a task of its own, a trace of its own
    assert ids(ask_run)[0::2] == (ids(ask_create)[0], ids(ask_create)[1])
    assert ids(wait)[0::2] == (ids(ask_create)[0], ids(ask_run)[1])
    assert (wait.end_time or 0) - (wait.start_time or 0) > 0
    assert len(spans) == 10  # client, 2 requests, 2 creates, 3 runs, a retry, an input wait


async def test_lease_renewals_polling_and_reaping_make_no_spans(
    engine: TaskEngine, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    _, memory = exporter
    app, renewed = ToolRegistry("long"), asyncio.Event()

    @app.tool
    async def long() -> str:
        await renewed.wait()
        return "done"

    async with Running(engine, app) as worker:
        renewals = [0]
        renew = worker.dispatch.renew

        async def counting(stream: str, entry_ids: list[str]) -> set[str]:
            renewals[0] += 1
            if renewals[0] >= 3:
                renewed.set()
            return await renew(stream, entry_ids)

        worker.dispatch.renew = counting  # type: ignore[method-assign]
        task = await engine.tasks.create(tool="long", dispatch=True)
        assert (await finished(engine, task.task_id)).status is TaskStatus.COMPLETED
    assert renewals[0] >= 3
    assert sorted(s.name for s in memory.get_finished_spans()) == ["task.create long", "task.run long"]


SCRIPT = """
import asyncio, sys
if {hide!r}:
    sys.modules["opentelemetry"] = None  # as if the [otel] extra were not installed
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.execution import ToolRunner
from mcp_tasks_redis.engine.runtime.worker import Worker
from mcp_tasks_redis.engine.telemetry import tracing

app = ToolRegistry("plain")

@app.tool
async def ok() -> str:
    return "ok"

async def main() -> None:
    engine = TaskEngine.from_url({url!r}, namespace={namespace!r})
    worker = Worker(engine, ToolRunner(app))
    running = asyncio.create_task(worker.run())
    task = await engine.tasks.create(tool="ok", dispatch=True)
    done = await engine.wait_until(task.task_id, lambda r: r is not None and r.is_terminal, timeout=10)
    worker.stop()
    await running
    await engine.close()
    loaded = sorted(n for n, m in sys.modules.items() if n.startswith("opentelemetry") and m is not None)
    print(tracing.ENABLED, done.status.value, sorted(done.meta), "otel" if loaded else "no-otel")

asyncio.run(main())
"""


@pytest.mark.parametrize(
    ("hide", "expected"),
    [
        (True, "False completed [] no-otel"),  # nothing of OpenTelemetry is even imported
        (False, "True completed [] otel"),  # the API, no SDK configured: no context stored
    ],
    ids=["without-opentelemetry", "api-without-sdk"],
)
def test_without_opentelemetry_or_without_a_tracer_provider_tasks_run_and_carry_no_context(
    redis_url: str, namespace: str, hide: bool, expected: str
) -> None:
    script = textwrap.dedent(SCRIPT).format(hide=hide, url=redis_url, namespace=namespace)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == expected


async def test_a_re_run_is_a_trace_of_its_own(
    engine: TaskEngine, exporter: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    app = traced_app()
    async with Running(engine, app):
        first = await engine.tasks.create(tool="flaky", arguments={"key": "once"}, dispatch=True)
        await finished(engine, first.task_id)
        again = await engine.tasks.rerun(first.task_id)
        await finished(engine, again.task_id)
        tracing.use_tracer_provider(None)  # nothing configured: no context at all
        untraced = await engine.tasks.rerun(first.task_id)
        await finished(engine, untraced.task_id)
    assert again.meta["rerun_of"] == first.task_id
    assert (
        again.meta["trace"]["traceparent"].split("-")[1] != first.meta["trace"]["traceparent"].split("-")[1]
    )
    assert "trace" not in untraced.meta
    [first_create, again_create] = by_name(exporter[1].get_finished_spans(), "task.create flaky")
    assert tracing.trace_id_of(first.meta) == f"{ids(first_create)[0]:032x}"
    assert tracing.trace_id_of(again.meta) == f"{ids(again_create)[0]:032x}"
    assert tracing.trace_id_of(untraced.meta) is None
