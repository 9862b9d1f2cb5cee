"""Queue depths sampled on a Redis Cluster: the scrape's pipeline spans every master, and the
gauges add up every shard (tests/observability has the rest of the telemetry on one Redis)."""

from __future__ import annotations

import pytest

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from tests.observability.inproc import Running, finished, scrape
from tests.topology.servers import ClusterTopology

pytest_plugins = ["tests.topology.servers"]
pytestmark = [pytest.mark.slow, pytest.mark.topology]

SHARDS = 6


async def test_queue_depths_are_sampled_over_every_master_of_a_cluster(
    redis_cluster: ClusterTopology, namespace: str
) -> None:
    engine = TaskEngine.from_url(redis_cluster.url, namespace=namespace, shards=SHARDS)
    app = ToolRegistry("cluster")

    @app.tool
    async def ok() -> str:
        return "ok"

    try:
        created = [
            await engine.tasks.create(tool="ok", dispatch=True, priority=level)
            for level in [0] * 3 + [1] * 9 + [2] * 2
        ]
        assert len({engine.keys.shard_of(t.task_id) for t in created}) > 1
        waiting = await scrape(engine)
        assert waiting.series("mcp_tasks_queue_waiting", "priority") == {
            ("high",): 3,
            ("normal",): 9,
            ("low",): 2,
        }
        async with Running(engine, app, concurrency=10):  # a slot per shard reader, and some
            for task in created:
                await finished(engine, task.task_id, timeout=30)
        drained = await scrape(engine)
    finally:
        await engine.close()
    assert drained.series("mcp_tasks_queue_waiting", "priority") == {
        ("high",): 0,
        ("normal",): 0,
        ("low",): 0,
    }
    assert drained.value("mcp_tasks_finished_total", tool="ok", status="completed") == len(created)
    assert drained.series("mcp_tasks_redis_errors_total", "operation") == {}
