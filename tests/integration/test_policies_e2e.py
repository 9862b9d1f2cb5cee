"""Task policies through MCP, with a real server and worker processes: a timeout that stops the
tool on its worker, priorities asked for in a call's _meta, and a per-owner quota.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import McpError

from tests.integration.procs import ProductProcess, Stack, http_session, task_result, task_status

pytest_plugins = ["tests.integration.procs"]
pytestmark = pytest.mark.slow

ROOT = str(Path(__file__).resolve().parents[2])
PRIORITY = "dev.mcp-tasks-redis/priority"


@pytest.fixture
def policies(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Stack:
    monkeypatch.setenv("PYTHONPATH", ROOT)
    stack.configure(app="tests.integration.policy_app:app")
    return stack


def start_order(worker: ProductProcess, task_ids: dict[str, str]) -> list[str]:
    names = {task_id: name for name, task_id in task_ids.items()}
    started = [r.msg.split()[1] for r in worker.find_all("started:") if r.msg.startswith("task ")]
    return [names[t] for t in started if t in names]


async def test_a_timeout_stops_the_tool_on_its_worker_and_fails_the_task(policies: Stack) -> None:
    server, worker = await asyncio.gather(policies.start_server(), policies.start_worker())
    async with http_session(server.url) as session:
        created = await session.experimental.call_tool_as_task("stuck", {})
        task_id = created.task.taskId
        with pytest.raises(McpError) as failed:
            await task_result(session, task_id, timeout_s=15)
        assert (failed.value.error.code, failed.value.error.message) == (-32001, "Tool timed out after 0.5 s")
        assert (await session.experimental.get_task(task_id)).status == "failed"
    await worker.wait_for_log(f"task {task_id} finished", timeout_s=5)


async def test_a_calls_priority_puts_it_ahead_of_queued_work(policies: Stack) -> None:
    policies.configure(call_priority_max="high")
    server, worker = await asyncio.gather(policies.start_server(), policies.start_worker(concurrency=1))
    ids: dict[str, str] = {}
    async with http_session(server.url) as session:

        async def call(label: str, priority: str | None, seconds: float = 0.05) -> None:
            meta: dict[str, Any] = {PRIORITY: priority} if priority else {}
            created = await session.experimental.call_tool_as_task(
                "nap", {"seconds": seconds, "label": label}, meta=meta or None
            )
            ids[label] = created.task.taskId

        await call("blocker", None, seconds=1.0)
        await worker.wait_for_log(f"task {ids['blocker']} started", timeout_s=10)
        for label, priority in [("low", "low"), ("normal", None), ("high", "high")]:
            await call(label, priority)
        for task_id in ids.values():
            await task_result(session, task_id)
        with pytest.raises(McpError) as refused:
            await call("bad", "urgent")
        assert refused.value.error.code == -32602
    assert start_order(worker, ids) == ["blocker", "high", "normal", "low"]


async def test_an_owner_at_its_quota_waits_while_another_owner_runs(policies: Stack) -> None:
    policies.configure(owner_max_running=1)
    server, worker = await asyncio.gather(policies.start_server(), policies.start_worker(concurrency=4))
    ids: dict[str, str] = {}
    async with http_session(server.url) as alice, http_session(server.url) as bob:
        for n in range(3):
            created = await alice.experimental.call_tool_as_task(
                "nap", {"seconds": 0.6, "label": f"alice-{n}"}
            )
            ids[f"alice-{n}"] = created.task.taskId
        waiting = await alice.experimental.get_task(ids["alice-2"])
        assert waiting.status == "working"
        assert "1 earlier task(s) of this caller wait" in (waiting.statusMessage or "")
        created = await bob.experimental.call_tool_as_task("nap", {"seconds": 0.05, "label": "bob"})
        ids["bob"] = created.task.taskId
        await task_status(bob, ids["bob"], {"completed"}, timeout_s=10)
        # Bob's task ran while Alice's second and third still waited for her first.
        assert (await alice.experimental.get_task(ids["alice-2"])).status == "working"
        for n in range(3):
            await task_result(alice, ids[f"alice-{n}"])
    assert start_order(worker, ids) == ["alice-0", "bob", "alice-1", "alice-2"]
