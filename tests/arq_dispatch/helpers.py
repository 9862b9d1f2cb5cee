"""Helpers of the arq dispatcher's tests: arq's own keys of a task, and a burst arq worker in this
process (arq's public ``Worker`` with ``burst=True``: it returns once the queue is empty)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from arq.worker import Worker

from mcp_tasks_redis.arq_dispatch import ArqTasks
from mcp_tasks_redis.engine.engine import TaskEngine
from tests.arq_dispatch.arq_app import app
from tests.arq_dispatch.limits import LIMITS

ARQ_PREFIXES = ("arq:job:", "arq:in-progress:", "arq:retry:", "arq:result:")


def arq_tasks(engine: TaskEngine, redis_url: str, job_timeout_s: float = 10) -> ArqTasks:
    return ArqTasks(
        app, redis_url=redis_url, namespace=engine.keys.namespace, limits=LIMITS, job_timeout_s=job_timeout_s
    )


def burst_worker(tasks: ArqTasks, **options: Any) -> Worker:
    settings = tasks.worker_settings(burst=True, poll_delay=0.01, handle_signals=False, **options)
    return Worker(**settings)


async def run_burst(tasks: ArqTasks, **options: Any) -> Worker:
    """An arq worker in this process until its queue is empty."""
    worker = burst_worker(tasks, **options)
    try:
        await worker.async_run()
    finally:
        await worker.close()
    return worker


async def arq_keys_left(redis: aioredis.Redis, task_ids: list[str]) -> dict[str, int]:
    """arq's keys of these tasks that still exist, with their TTL (ms; -1: none)."""
    left: dict[str, int] = {}
    for task_id in task_ids:
        for prefix in ARQ_PREFIXES:
            ttl = int(await redis.pttl(prefix + task_id))
            if ttl != -2:
                left[prefix + task_id] = ttl
    return left


async def drop_arq_keys(redis: aioredis.Redis, task_ids: list[str]) -> None:
    keys = [prefix + task_id for task_id in task_ids for prefix in ARQ_PREFIXES]
    if keys:
        await redis.delete(*keys)
