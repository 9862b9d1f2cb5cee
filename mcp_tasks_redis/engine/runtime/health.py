"""A worker's health report: what `mcp-tasks-redis health worker` and `tasks` commands read.

Every few seconds a worker writes a small JSON report under its id (expiring if it stops) and its
id into the deployment's set of live workers; both go away when it stops.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from typing import TYPE_CHECKING, Any

import anyio

from mcp_tasks_redis.engine.errors import RedisUnavailable

if TYPE_CHECKING:
    from mcp_tasks_redis.engine.runtime.worker import Worker


class HealthReport:
    def __init__(self, worker: Worker, interval_s: float) -> None:
        self.worker = worker
        self.interval_s = interval_s

    async def report_forever(self) -> None:
        while True:
            await self.report()
            await anyio.sleep(self.interval_s)

    async def report(self) -> None:
        worker = self.worker
        keys = worker.engine.keys
        ttl_ms = int(self.interval_s * 3000)
        now = int(time.time() * 1000)
        report: dict[str, Any] = {
            "worker": worker.worker_id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started_at": worker.started_at,
            "running": len(worker.running),
            "slots": worker.slots.size,
            "completed": worker.completed,
            "requeued": worker.requeued,
            "at": time.time(),
        }
        with contextlib.suppress(RedisUnavailable):
            await worker.engine.conn.pipeline(
                ("set", keys.worker(worker.worker_id), json.dumps(report), None, ttl_ms),
                ("zadd", keys.workers, {worker.worker_id: now}),
                ("zremrangebyscore", keys.workers, "-inf", now - ttl_ms),
                ("pexpire", keys.workers, ttl_ms),
            )

    async def withdraw(self) -> None:
        worker = self.worker
        with contextlib.suppress(RedisUnavailable):
            await worker.engine.conn.pipeline(
                ("delete", worker.engine.keys.worker(worker.worker_id)),
                ("zrem", worker.engine.keys.workers, worker.worker_id),
            )
