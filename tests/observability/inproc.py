"""A worker in the test process, and the metrics of an engine as a scraper would see them."""

from __future__ import annotations

import asyncio

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.worker import Worker
from mcp_tasks_redis.ops.processes import build_worker
from tests.observability.workload import Scrape


class Running:
    """A worker in this process for the duration of a block."""

    def __init__(self, engine: TaskEngine, registry: ToolRegistry, concurrency: int = 4) -> None:
        self.worker: Worker = build_worker(engine, registry, concurrency=concurrency)
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Worker:
        self.task = asyncio.create_task(self.worker.run())
        return self.worker

    async def __aexit__(self, *_: object) -> None:
        self.worker.stop()
        assert self.task is not None
        await self.task


async def finished(engine: TaskEngine, task_id: str, timeout: float = 10.0) -> TaskRecord:
    record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=timeout)
    assert record is not None
    return record


async def scrape(engine: TaskEngine) -> Scrape:
    """The engine's /metrics page, parsed (queue depths sampled from Redis, as on a scrape)."""
    body, content_type = await engine.metrics.render()
    assert content_type.startswith("text/plain")
    return Scrape.parse(body.decode())
