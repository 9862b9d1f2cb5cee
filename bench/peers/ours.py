"""Our engine under the engine-level measurements (runs in the project's own venv).

Workers are the product's own command, ``mcp-tasks-redis worker``, with default settings; the
producer is ``TaskEngine.tasks.create(..., dispatch=True)``, which writes the task record and its
job in one step. "Unfinished" is the size of the engine's active set (a task leaves it when its
status becomes terminal, in the same script that stores the result).

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
CLI = str(Path(sys.executable).parent / "mcp-tasks-redis")


def worker_env(url: str) -> dict[str, str]:
    return {
        "REDIS_URL": url,
        "MCP_TASKS_NAMESPACE": NAMESPACE,
        "MCP_TASKS_LOG_LEVEL": "WARNING",
        "MCP_TASKS_APP": "ours_app:app",
        "PYTHONPATH": str(PEERS_DIR),
    }


class Ours:
    name = "ours"
    poll_command = "zcard"
    default_concurrency = 10  # the product's default (Settings.concurrency)

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine: TaskEngine | None = None

    def describe(self) -> dict[str, Any]:
        return {"worker": "mcp-tasks-redis worker (defaults)", "slots": self.default_concurrency}

    def worker(self, index: int, concurrency: int) -> Proc:
        return Proc(
            f"ours-worker-{index}",
            [CLI, "worker", "--concurrency", str(concurrency)],
            env=worker_env(self.url),
        )

    def ready(self, client: redis.Redis, procs: list[Proc]) -> bool:
        return client.zcard(f"{NAMESPACE}:workers") >= len(procs)

    async def open(self) -> None:
        self.engine = TaskEngine.from_url(self.url, namespace=NAMESPACE)

    async def close(self) -> None:
        if self.engine is not None:
            await self.engine.close()
            self.engine = None

    async def enqueue(self, tool: str, **kwargs: Any) -> None:
        assert self.engine is not None
        await self.engine.tasks.create(tool=tool, arguments=kwargs, dispatch=True)

    async def outstanding(self) -> int:
        assert self.engine is not None
        return int(await self.engine.redis.zcard(self.engine.keys.active))


if __name__ == "__main__":
    args = parser().parse_args()
    run(Ours(args.redis), args)
