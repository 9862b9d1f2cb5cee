"""Metrics and traces end to end on the SEP-2663 wire (`mcp` 2.x): a real server, a real worker
process with ``--metrics-port``, a real MCP 2.x client, the known workload, exact numbers.

The worker's series are the same as on the 2025-11-25 wire (workers do not know the wire); on
this wire a tool error is a ``completed`` task, and the metric still counts it as ``tool_error``.
The relay here is a ``subscriptions/listen`` stream (``notifications/tasks``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

pytest.register_assert_rewrite("tests.integration.stack", "tests.v2.clients")
from mcp_types import SubscriptionsListenResult  # noqa: E402

from mcp_tasks_redis.mcp_v2.client import TasksClientExtension, cancel_task, listen_request, wait_task  # noqa: E402
from mcp_tasks_redis.mcp_v2.protocol import CreateTaskResult  # noqa: E402
from tests.integration.stack import ProductProcess, Stack, free_port, product_command, wait_for  # noqa: E402
from tests.observability.workload import (  # noqa: E402
    PRIORITY_META,
    RUNS,
    TOOLS,
    WORKLOAD,
    Scrape,
    expected_finished,
    read_spans,
)
from tests.v2.clients import TaskNotes, tasks_client  # noqa: E402

pytest_plugins = ["tests.integration.stack"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

APP = "tests.observability.workload:app"


async def create(
    client: Any, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
) -> str:
    created = await client.session.call_tool(tool, arguments, allow_claimed=True, meta=meta)
    assert isinstance(created, CreateTaskResult), created
    return created.task_id


async def start_worker_with_flag(stack: Stack, port: int) -> ProductProcess:
    """A worker told its metrics port on the command line (the 1.x test uses the environment)."""
    argv = [*product_command(), "worker", "--concurrency", "4", "--metrics-port", str(port)]
    worker = ProductProcess("worker", argv, stack.env(), stack.workdir / "worker.log")
    stack.processes.append(worker)
    await worker.wait_for_log("started:", timeout_s=20)
    assert worker.find(f"worker metrics at http://127.0.0.1:{port}/metrics") is not None
    return worker


async def test_a_known_workload_gives_exact_metrics_on_the_server_and_the_worker(stack: Stack) -> None:
    stack.configure(app=APP)
    server = await stack.start_server("server")
    notes = TaskNotes()
    async with tasks_client(server.url, TasksClientExtension(on_notification=notes)) as client:
        created: list[tuple[str, str]] = []
        for tool, arguments, priority in WORKLOAD:
            meta = {PRIORITY_META: priority} if priority != "normal" else None
            created.append((tool, await create(client, tool, arguments, meta)))
        sleepy = next(task_id for tool, task_id in created if tool == "sleepy")
        await cancel_task(client.session, sleepy)

        queued = await Scrape.fetch(f"{server.base_url}/metrics")
        assert queued.series("mcp_tasks_queue_waiting", "priority") == {
            ("high",): 0,
            ("normal",): 8,
            ("low",): 1,
        }

        ids = [task_id for _, task_id in created]
        ended: list[SubscriptionsListenResult] = []
        port = free_port()
        async with anyio.create_task_group() as tg:

            async def listen() -> None:
                request = listen_request(ids)
                ended.append(
                    await client.session.send_request(
                        request, SubscriptionsListenResult, request_read_timeout_seconds=30
                    )
                )

            tg.start_soon(listen)
            # The stream first sends each task as it is; the worker's changes follow.
            await notes.wait(lambda: {n.task_id for n in notes.items} == set(ids), 10, "every task once")
            worker = await start_worker_with_flag(stack, port)
            statuses: dict[str, str] = {}
            for tool, task_id in created:
                done = await wait_task(client.session, task_id, poll_interval_s=0.05)
                statuses[tool] = done.status
                if tool == "broken":  # a tool error is completed on this wire, isError in the result
                    assert (done.status, (done.result or {}).get("isError")) == ("completed", True)
        assert ended, "the listen stream ended once every task had"
        assert statuses == {
            "ok": "completed",
            "crunch": "completed",
            "broken": "completed",
            "flaky": "completed",
            "hang": "failed",
            "sleepy": "cancelled",
        }

        async def worker_idle() -> Scrape | None:
            scrape = await Scrape.fetch(f"http://127.0.0.1:{port}/metrics")
            busy = scrape.value("mcp_tasks_running") or sum(
                scrape.series("mcp_tasks_queue_delivered", "priority").values()
            )
            return None if busy else scrape

        done_scrape: Scrape = await wait_for(worker_idle, timeout_s=10, what="the worker to be idle")
        server_scrape = await Scrape.fetch(f"{server.base_url}/metrics")
    assert worker.alive

    # -- the worker: the same numbers as on the 2025-11-25 wire ------------------------------------
    assert done_scrape.series("mcp_tasks_finished_total", "tool", "status") == expected_finished()
    assert done_scrape.series("mcp_tasks_retries_total", "tool") == {(t,): float(t == "flaky") for t in TOOLS}
    assert done_scrape.series("mcp_tasks_timeouts_total", "tool") == {(t,): float(t == "hang") for t in TOOLS}
    runs = {(tool,): float(count) for tool, count in RUNS.items()}
    assert done_scrape.series("mcp_tasks_queue_wait_seconds_count", "tool") == runs
    assert done_scrape.series("mcp_tasks_run_seconds_count", "tool") == runs
    assert sum(done_scrape.series("mcp_tasks_end_to_end_seconds_count", "tool").values()) == 9
    assert list(done_scrape.series("mcp_tasks_tool_cpu_seconds_total", "tool")) == [("crunch",)]

    # -- the server ------------------------------------------------------------------------------
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
    finished = server_scrape.series("mcp_tasks_finished_total", "tool", "status")
    assert finished == {(t, "cancelled"): float(t == "sleepy") for t in TOOLS}
    # Every notification after the first snapshot of each task relayed a change, and was timed.
    relayed = len(notes.items) - len(ids)
    assert relayed >= len(ids) - 1  # at least each task's end (the cancelled one had ended)
    assert server_scrape.value("mcp_tasks_relay_lag_seconds_count", notification="task") == relayed


async def test_one_trace_runs_from_tools_call_on_the_server_to_each_run_on_the_worker(
    stack: Stack, tmp_path: Path
) -> None:
    server_spans, worker_spans = tmp_path / "server-spans.jsonl", tmp_path / "worker-spans.jsonl"
    stack.configure(app=APP)
    server = await stack.start_server("server", traces=f"jsonl:{server_spans}")
    await stack.start_worker("worker", traces=f"jsonl:{worker_spans}")
    async with tasks_client(server.url) as client:
        flaky = await create(client, "flaky", {"key": "traced"})
        assert (await wait_task(client.session, flaky, poll_interval_s=0.05)).status == "completed"

    await wait_for(lambda: len(read_spans(worker_spans)) >= 3, timeout_s=10, what="the worker's spans")
    on_server, on_worker = read_spans(server_spans), read_spans(worker_spans)
    # The 2.x SDK makes the request's span itself (and one per tasks/get); the create is its child.
    request = next(s for s in on_server if s.name == "tools/call flaky")
    create_span = next(s for s in on_server if s.name == "task.create flaky")
    assert request.kind == "SpanKind.SERVER"
    assert (create_span.trace_id, create_span.parent_id) == (request.trace_id, request.span_id)
    assert create_span.attributes["mcp_tasks.task.id"] == flaky

    assert sorted(s.name for s in on_worker) == ["task.retry flaky", "task.run flaky", "task.run flaky"]
    runs = sorted(
        (s for s in on_worker if s.name == "task.run flaky"), key=lambda s: s.attributes["mcp_tasks.attempt"]
    )
    assert {(r.trace_id, r.parent_id) for r in runs} == {(create_span.trace_id, create_span.span_id)}
    assert [r.attributes["mcp_tasks.outcome"] for r in runs] == ["retry", "completed"]
    retry = next(s for s in on_worker if s.name == "task.retry flaky")
    assert retry.parent_id == runs[0].span_id
