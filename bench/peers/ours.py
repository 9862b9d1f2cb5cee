"""Our engine under the engine-level measurements (runs in the project's own venv).

Workers are the product's own command, ``mcp-tasks-redis worker``, with default settings; the
producer is ``TaskEngine.tasks.create(..., dispatch=True)``, which writes the task record and its
job in one step. "Unfinished" is the number of entries in the shards' dispatch streams (``XLEN`` of each
priority level's stream):
a job's entry stays there from its creation until the worker has written the outcome and then
acknowledged and deleted the entry (in a batch, up to ``ack_delay_s`` = 50 ms after the outcome),
so 0 means every task is finished and acknowledged.

This is the swappable half of the ours/arq pair: when ``bench/bench_runtime.py`` provides the
same measurements, ``run_all.py`` may call that instead (see bench/README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import redis
from common import PEERS_DIR, Proc
from enginebench import parser, run

from mcp_tasks_redis.engine.engine import TaskEngine

NAMESPACE = os.environ.get("BENCH_NAMESPACE", "bench")
# Shards of the namespace (MCP_TASKS_SHARDS): 1 on one Redis; more spread tasks over a Cluster.
SHARDS = int(os.environ.get("BENCH_SHARDS", "1"))
CLI = str(Path(sys.executable).parent / "mcp-tasks-redis")


def worker_env(url: str) -> dict[str, str]:
    return {
        "REDIS_URL": url,
        "MCP_TASKS_NAMESPACE": NAMESPACE,
        "MCP_TASKS_LOG_LEVEL": "WARNING",
        "MCP_TASKS_APP": "ours_app:app",
        "MCP_TASKS_SHARDS": str(SHARDS),
        "PYTHONPATH": str(PEERS_DIR),
    }


class Ours:
    name = "ours"
    poll_command = "xlen"
    commands_per_poll = 3 * SHARDS  # three priority streams per shard
    default_concurrency = 10  # the product's default (Settings.concurrency)

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: TaskEngine | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "worker": "mcp-tasks-redis worker (defaults)",
            "slots": self.default_concurrency,
            "shards": SHARDS,
        }

    def worker(self, index: int, concurrency: int) -> Proc:
        return Proc(
            f"ours-worker-{index}",
            [CLI, "worker", "--concurrency", str(concurrency)],
            env=worker_env(self.url),
        )

    def ready(self, client: redis.Redis, procs: list[Proc]) -> bool:
        if self.url.startswith("redis+cluster://"):
            # The workers' sorted set lives on whichever master owns its slot.
            from redis.cluster import RedisCluster

            first = self.url.removeprefix("redis+cluster://").split("/")[0].split("?")[0].split(",")[0]
            host, _, port = first.rpartition(":")
            with RedisCluster(host=host, port=int(port)) as cluster:
                return int(cluster.zcard(f"{NAMESPACE}:workers")) >= len(procs)
        return client.zcard(f"{NAMESPACE}:workers") >= len(procs)

    async def open(self) -> None:
        self.engine = TaskEngine.from_url(self.url, namespace=NAMESPACE, shards=SHARDS)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None

    async def enqueue(self, tool: str, **kwargs: Any) -> None:
        assert self.engine is not None
        await self.engine.tasks.create(tool=tool, arguments=kwargs, dispatch=True)

    async def enqueue_listed(self, tool: str, **kwargs: Any) -> None:
        """As the MCP server creates a task: with its session, so it joins the session's listing."""
        assert self.engine is not None
        await self.engine.tasks.create(tool=tool, arguments=kwargs, session="bench-session", dispatch=True)

    # What a retained no-op task carries of its own: the job JSON (arguments) and the result JSON.
    payload_bytes = len('{"args":{}}') + len('{"content":[{"type":"text","text":"ok"}]}')

    async def outstanding(self) -> int:
        assert self.engine is not None
        total = 0
        # One XLEN per dispatch stream: a shard has one per priority level (high, normal, low).
        for shard in self.engine.keys.all_shards:
            for stream in shard.streams:
                total += int(await self.engine.redis.xlen(stream))
        return total


if __name__ == "__main__":
    args = parser().parse_args()
    run(Ours(args.redis), args)
