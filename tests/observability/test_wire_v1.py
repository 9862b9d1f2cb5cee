"""Metrics and traces end to end on the 2025-11-25 wire (`mcp` 1.x): a real server, a real worker
process with ``--metrics-port``, a real MCP client, a known workload, and exact numbers.

The server's and the worker's ``/metrics`` are parsed with prometheus-client's own parser; the
spans both processes export (``MCP_TASKS_TRACES=jsonl:PATH``) are read back from their files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.integration.stack", "tests.integration.procs")
from mcp.shared.exceptions import McpError  # noqa: E402
from mcp.types import CallToolResult  # noqa: E402

from tests.integration.procs import Notifications, http_session, task_result  # noqa: E402
from tests.integration.stack import Stack, free_port, wait_for  # noqa: E402
from tests.observability.workload import (  # noqa: E402
    PRIORITY_META,
    RUNS,
    TOOLS,
    WORKLOAD,
    Scrape,
    expected_finished,
    read_spans,
)

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(90),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

APP = "tests.observability.workload:app"


async def test_a_known_workload_gives_exact_metrics_on_the_server_and_the_worker(stack: Stack) -> None:
    # The creation rate quota lets exactly the workload through: one more call is refused.
    stack.configure(app=APP, owner_rate_per_min=len(WORKLOAD))
    server = await stack.start_server("server")
    notes = Notifications()
    async with http_session(server.url, message_handler=notes) as session:
        created: list[tuple[str, str]] = []
        for tool, arguments, priority in WORKLOAD:
            meta = {PRIORITY_META: priority} if priority != "normal" else None
            task = await session.experimental.call_tool_as_task(tool, arguments, meta=meta)
            created.append((tool, task.task.taskId))
        with pytest.raises(McpError) as refused:
            await session.experimental.call_tool_as_task("ok", {"n": 5})
        assert refused.value.error.code == -32029
        sleepy = next(task_id for tool, task_id in created if tool == "sleepy")
        assert (await session.experimental.cancel_task(sleepy)).status == "cancelled"

        # No worker yet: every job waits, and the server samples the queues at the scrape.
        queued = await Scrape.fetch(f"{server.base_url}/metrics")
        assert queued.series("mcp_tasks_queue_waiting", "priority") == {
            ("high",): 0,
            ("normal",): 8,
            ("low",): 1,
        }
        assert set(queued.series("mcp_tasks_queue_delivered", "priority").values()) == {0}
        assert queued.value("mcp_tasks_queue_retry_backoff") == 0

        port = free_port()
        worker = await stack.start_worker("worker", concurrency=4, metrics_port=port)
        outcomes: dict[str, str] = {}
        for tool, task_id in created:
            if tool == "sleepy":
                continue
            try:
                result: CallToolResult = await task_result(session, task_id)
                outcomes[task_id] = "tool_error" if result.isError else "completed"
            except McpError:
                outcomes[task_id] = "failed"
            # On this wire a tool error is a failed task; the metric counts it as tool_error.
            status = (await session.experimental.get_task(task_id)).status
            assert status == ("completed" if outcomes[task_id] == "completed" else "failed")

        async def worker_idle() -> Scrape | None:
            scrape = await Scrape.fetch(f"http://127.0.0.1:{port}/metrics")
            busy = scrape.value("mcp_tasks_running") or sum(
                scrape.series("mcp_tasks_queue_delivered", "priority").values()
            )
            return None if busy else scrape

        # Finished jobs are acknowledged in batches: wait until the queue says so too.
        done: Scrape = await wait_for(worker_idle, timeout_s=10, what="the worker to be idle")

        # The relay timed every status notification the session received.
        received = len(notes.statuses())
        server_scrape: Scrape = await wait_for(
            lambda: _relayed(server.base_url, received), timeout_s=10, what="relay lag observations"
        )
    assert worker.alive

    # -- the worker ----------------------------------------------------------------------------
    assert done.series("mcp_tasks_finished_total", "tool", "status") == expected_finished()
    assert done.series("mcp_tasks_retries_total", "tool") == {(t,): float(t == "flaky") for t in TOOLS}
    assert done.series("mcp_tasks_timeouts_total", "tool") == {(t,): float(t == "hang") for t in TOOLS}
    assert set(done.series("mcp_tasks_lease_expiries_total", "tool").values()) == {0}
    assert set(done.series("mcp_tasks_reruns_total", "tool").values()) == {0}
    runs = {(tool,): float(count) for tool, count in RUNS.items()}
    assert done.series("mcp_tasks_queue_wait_seconds_count", "tool") == runs
    assert done.series("mcp_tasks_run_seconds_count", "tool") == runs
    assert done.series("mcp_tasks_end_to_end_seconds_count", "tool") == {
        ("ok",): 4,
        ("crunch",): 1,
        ("broken",): 2,
        ("flaky",): 1,
        ("hang",): 1,
    }
    assert (done.value("mcp_tasks_run_seconds_sum", tool="hang") or 0) >= 0.3
    assert done.value("mcp_tasks_run_seconds_bucket", tool="hang", le="0.25") == 0
    cpu = done.series("mcp_tasks_tool_cpu_seconds_total", "tool")
    assert list(cpu) == [("crunch",)], "only the sync tool's CPU is measured"
    assert cpu[("crunch",)] > 0
    assert (done.value("mcp_tasks_running"), done.value("mcp_tasks_worker_slots")) == (0, 4)
    assert done.series("mcp_tasks_redis_errors_total", "operation") == {}
    assert done.value("process_resident_memory_bytes") is not None  # the process collector

    # -- the server ----------------------------------------------------------------------------
    created_series = server_scrape.series("mcp_tasks_created_total", "tool", "priority")
    assert {k: v for k, v in created_series.items() if v} == {
        ("ok", "normal"): 3,
        ("ok", "low"): 1,
        ("crunch", "normal"): 1,
        ("broken", "normal"): 2,
        ("flaky", "normal"): 1,
        ("hang", "normal"): 1,
        ("sleepy", "normal"): 1,
    }
    assert len(created_series) == len(TOOLS) * 3  # every tool and level, from zero
    refusals = server_scrape.series("mcp_tasks_quota_refusals_total", "tool", "reason")
    assert {k: v for k, v in refusals.items() if v} == {("ok", "rate"): 1}
    finished = server_scrape.series("mcp_tasks_finished_total", "tool", "status")
    assert finished == {(t, "cancelled"): float(t == "sleepy") for t in TOOLS}
    assert server_scrape.value("mcp_tasks_relay_lag_seconds_count", notification="status") == received
    assert received >= len(created)  # at least each task's terminal status
    assert server_scrape.value("mcp_tasks_running") is None  # a worker's gauge, not a server's
    assert server_scrape.series("mcp_tasks_queue_waiting", "priority") == {
        ("high",): 0,
        ("normal",): 0,
        ("low",): 0,
    }


async def _relayed(base_url: str, count: int) -> Scrape | None:
    scrape = await Scrape.fetch(f"{base_url}/metrics")
    return (
        scrape if scrape.value("mcp_tasks_relay_lag_seconds_count", notification="status") == count else None
    )


async def test_one_trace_runs_from_tools_call_on_the_server_to_each_run_on_the_worker(
    stack: Stack, tmp_path: Path
) -> None:
    server_spans, worker_spans = tmp_path / "server-spans.jsonl", tmp_path / "worker-spans.jsonl"
    stack.configure(app=APP)
    server = await stack.start_server("server", traces=f"jsonl:{server_spans}")
    await stack.start_worker("worker", traces=f"jsonl:{worker_spans}")
    async with http_session(server.url) as session:
        flaky = (await session.experimental.call_tool_as_task("flaky", {"key": "traced"})).task.taskId
        ok = (await session.experimental.call_tool_as_task("ok", {"n": 7})).task.taskId
        assert not (await task_result(session, flaky)).isError
        assert not (await task_result(session, ok)).isError

    # Spans are exported as they end; the last one of a run ends after its outcome is written.
    await wait_for(lambda: len(read_spans(worker_spans)) >= 4, timeout_s=10, what="the worker's spans")
    on_server, on_worker = read_spans(server_spans), read_spans(worker_spans)
    requests = {s.attributes["gen_ai.tool.name"]: s for s in on_server if s.name.startswith("tools/call")}
    creates = {s.attributes["gen_ai.tool.name"]: s for s in on_server if s.name.startswith("task.create")}
    assert set(requests) == set(creates) == {"flaky", "ok"}
    for tool in ("flaky", "ok"):
        request, create = requests[tool], creates[tool]
        assert (request.kind, create.kind) == ("SpanKind.SERVER", "SpanKind.PRODUCER")
        assert create.trace_id == request.trace_id
        assert create.parent_id == request.span_id
    assert creates["flaky"].attributes["mcp_tasks.task.id"] == flaky
    assert creates["ok"].trace_id != creates["flaky"].trace_id  # one trace per task

    # The worker: runs (children of the create span), a retry inside the first run; nothing else
    # (no spans for blocking reads, lease renewals, reaping or acknowledgements).
    assert sorted(s.name for s in on_worker) == [
        "task.retry flaky",
        "task.run flaky",
        "task.run flaky",
        "task.run ok",
    ]
    runs = sorted(
        (s for s in on_worker if s.name == "task.run flaky"), key=lambda s: s.attributes["mcp_tasks.attempt"]
    )
    for run in runs:
        assert run.kind == "SpanKind.CONSUMER"
        assert (run.trace_id, run.parent_id) == (creates["flaky"].trace_id, creates["flaky"].span_id)
        assert run.attributes["mcp_tasks.task.id"] == flaky
    assert [r.attributes["mcp_tasks.attempt"] for r in runs] == [1, 2]
    assert [r.attributes["mcp_tasks.outcome"] for r in runs] == ["retry", "completed"]
    retry = next(s for s in on_worker if s.name == "task.retry flaky")
    assert (retry.trace_id, retry.parent_id) == (runs[0].trace_id, runs[0].span_id)
    assert retry.attributes["mcp_tasks.retry.next_attempt"] == 2
    run_ok = next(s for s in on_worker if s.name == "task.run ok")
    assert (run_ok.trace_id, run_ok.parent_id) == (creates["ok"].trace_id, creates["ok"].span_id)
    assert run_ok.attributes["mcp_tasks.outcome"] == "completed"
