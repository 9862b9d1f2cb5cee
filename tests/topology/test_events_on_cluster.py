"""The engine's event subscriber on a real Redis Cluster.

Found by the benchmark's cluster row (issue 11): with redis-py 8 a cluster node's connection
options carry connection-only arguments (``himport_registry``) that ``redis.asyncio.Redis()``
refuses, and before its first command a cluster client knows no nodes, only its startup nodes;
either way the subscriber's client could not be built, the reader task died, and every wait fell
back to its bounded re-read.

    .venv/bin/pytest tests/topology/test_events_on_cluster.py
"""

from __future__ import annotations

import pytest

from mcp_tasks_redis.engine.engine import TaskEngine
from tests.topology.servers import ClusterTopology

pytest_plugins = ["tests.topology.servers"]


@pytest.mark.topology
async def test_events_reach_a_listener_on_every_shard_of_a_cluster(redis_cluster: ClusterTopology) -> None:
    engine = TaskEngine.from_url(redis_cluster.url, namespace="events-on-cluster", shards=3)
    try:
        # The subscriber starts before the client has sent anything (no nodes known yet).
        assert await engine.events.ready(10)
        seen: set[int] = set()
        for _ in range(12):
            record = await engine.tasks.create(tool="noop", arguments={})
            with engine.events.listen(record.task_id) as listener:
                await engine.tasks.cancel(record.task_id)
                event = await listener.next(5)
            assert event is not None
            assert event.get("st") == "cancelled", event
            seen.add(engine.keys.shard_of(record.task_id).index)
        assert seen == {0, 1, 2}
    finally:
        await engine.close()
