"""The product on a real Redis Cluster (3 masters, 3 replicas) and a real Sentinel setup (1 master,
1 replica, 3 sentinels): the end-to-end flow through MCP with real server and worker processes,
and a master SIGKILLed under load with no acknowledged task lost.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mcp.shared.exceptions import McpError
from redis.crc import key_slot

from mcp_tasks_redis.engine.keys import KeySpace
from tests.integration.procs import Stack, http_session, task_result
from tests.topology.servers import ClusterTopology, SentinelTopology

pytest_plugins = ["tests.topology.servers", "tests.integration.procs"]
pytestmark = pytest.mark.slow

SHARDS = 6


async def create_under_load(url: str, count: int, seconds: float, on_half: Any) -> list[str]:
    """Create ``count`` tasks at a steady pace, calling ``on_half`` (the chaos) halfway; a create
    that fails while Redis fails over is retried. Returns the ids of every acknowledged task."""
    created: list[str] = []
    async with http_session(url) as session:
        for n in range(count):
            if n == count // 2:
                await on_half()
            while True:
                try:
                    task = await session.experimental.call_tool_as_task("slow_compute", {"seconds": 0.3})
                    created.append(task.task.taskId)
                    break
                except McpError:  # Redis unreachable during the failover: the client retries
                    await asyncio.sleep(0.1)
            await asyncio.sleep(seconds / count)
    return created


async def all_complete(url: str, task_ids: list[str]) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    async with http_session(url) as session:
        for task_id in task_ids:
            try:
                result = await task_result(session, task_id, timeout_s=60)
                outcomes[task_id] = "ok" if not result.isError else f"error: {result.content}"
            except McpError as e:
                outcomes[task_id] = e.error.message
    return outcomes


async def test_tasks_run_end_to_end_on_a_redis_cluster_spread_over_its_masters(
    redis_cluster: ClusterTopology, namespace: str, tmp_path: Path
) -> None:
    stack = Stack(redis_cluster.url, namespace, tmp_path, shards=SHARDS)
    try:
        server, *_ = await asyncio.gather(stack.start_server(), stack.start_worker(), stack.start_worker())
        async with http_session(server.url) as session:
            ids = [
                (await session.experimental.call_tool_as_task("slow_compute", {"seconds": 0.1})).task.taskId
                for _ in range(24)
            ]
            results = [await task_result(session, task_id) for task_id in ids]
        assert [r.structuredContent for r in results] == [{"seconds": 0.1}] * 24
        keys = KeySpace(namespace, SHARDS)
        masters = {redis_cluster.master_for_slot(key_slot(keys.task(t).encode())).port for t in ids}
        assert len(masters) == 3, "tasks should spread over every master"
    finally:
        stack.close()


async def test_a_cluster_master_killed_under_load_loses_no_task(
    redis_cluster: ClusterTopology, namespace: str, tmp_path: Path
) -> None:
    stack = Stack(redis_cluster.url, namespace, tmp_path, shards=SHARDS, lease_ms=3_000)
    keys = KeySpace(namespace, SHARDS)
    victim_key = keys.all_shards[0].stream
    try:
        server, *_ = await asyncio.gather(stack.start_server(), stack.start_worker(), stack.start_worker())

        async def kill() -> None:
            old = redis_cluster.kill_master(victim_key)
            await redis_cluster.wait_for_failover_async(victim_key, old)

        created = await create_under_load(server.url, 40, 4.0, kill)
        outcomes = await all_complete(server.url, created)
    finally:
        stack.close()
    lost = {t: o for t, o in outcomes.items() if o != "ok"}
    assert len(created) == 40
    assert lost == {}, f"{len(lost)} of {len(created)} acknowledged tasks did not complete: {lost}"


async def test_tasks_run_end_to_end_through_sentinel_and_survive_a_master_kill(
    redis_sentinel: SentinelTopology, namespace: str, tmp_path: Path
) -> None:
    stack = Stack(redis_sentinel.url, namespace, tmp_path, lease_ms=3_000, replica_acks=1)
    try:
        server, *_ = await asyncio.gather(stack.start_server(), stack.start_worker(), stack.start_worker())

        async def kill() -> None:
            old = redis_sentinel.kill_master()
            await redis_sentinel.wait_for_failover_async(old)

        created = await create_under_load(server.url, 40, 4.0, kill)
        outcomes = await all_complete(server.url, created)
    finally:
        stack.close()
    lost = {t: o for t, o in outcomes.items() if o != "ok"}
    assert len(created) == 40
    assert lost == {}, f"{len(lost)} of {len(created)} acknowledged tasks did not complete: {lost}"
