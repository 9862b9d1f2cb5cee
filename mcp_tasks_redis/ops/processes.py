"""The engine and the worker of one process, built from `Settings`.

Every process of a deployment builds its engine here, so that all of them agree on the
namespace, the shards, the TTL bounds, the lease and the poll interval. The worker does not care
which MCP wire the servers speak; only on `mcp` 1.x does it wrap each run in the SDK's
`task_execution` (see `mcp_tasks_redis.wire`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from mcp_tasks_redis import wire
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.keyed import KeyedDispatch
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.execution import ToolRunner
from mcp_tasks_redis.engine.runtime.worker import Worker
from mcp_tasks_redis.ops.metrics_endpoint import serve_metrics
from mcp_tasks_redis.settings import Settings

log = logging.getLogger("mcp_tasks_redis.worker")


def limits_from(settings: Settings) -> TaskLimits:
    return TaskLimits(
        default_ttl_ms=settings.default_ttl_ms,
        min_ttl_ms=settings.min_ttl_ms,
        max_ttl_ms=settings.max_ttl_ms,
        poll_interval_ms=settings.poll_interval_ms,
        lease_ms=settings.lease_ms,
        max_attempts=settings.max_attempts,
        input_timeout_ms=None if settings.input_timeout_s is None else int(settings.input_timeout_s * 1000),
        default_timeout_s=settings.timeout_s,
        call_priority_max=settings.call_priority_max,
        owner_max_running=settings.owner_max_running,
        owner_max_queued=settings.owner_max_queued,
        owner_rate=settings.owner_rate_per_min,
        replica_acks=settings.replica_acks,
    )


def engine_from(settings: Settings) -> TaskEngine:
    return TaskEngine.from_url(
        settings.resolved_redis_url,
        namespace=settings.namespace,
        shards=settings.shards,
        limits=limits_from(settings),
        dispatcher=dispatcher_from(settings),
    )


def dispatcher_from(settings: Settings) -> KeyedDispatch | None:
    """Where new tasks' jobs go: None for the shards' streams, else the dispatcher's queue."""
    if settings.dispatcher == "streams":
        return None
    try:
        from mcp_tasks_redis.arq_dispatch.jobs import ArqDispatch
    except ImportError as e:
        raise RuntimeError('MCP_TASKS_DISPATCHER=arq needs arq: pip install "mcp-tasks-redis[arq]"') from e
    return ArqDispatch.for_namespace(settings.namespace, settings.arq_queue)


def runner_for(
    engine: TaskEngine,
    registry: ToolRegistry,
    *,
    max_result_bytes: int | None = None,
    progress_min_interval: float = 0.1,
) -> ToolRunner:
    """How any worker of ``engine`` runs the registry's tools, whichever dispatcher feeds it."""
    return ToolRunner(
        registry,
        max_result_bytes=max_result_bytes,
        progress_min_interval=progress_min_interval,
        around=wire.around_run(engine),
        defaults=engine.limits.default_policy(),
    )


def build_worker(
    engine: TaskEngine,
    registry: ToolRegistry,
    *,
    concurrency: int = 10,
    max_result_bytes: int | None = None,
    progress_min_interval: float = 0.1,
    burst: bool = False,
    worker_id: str | None = None,
) -> Worker:
    """A worker that runs the registry's tools for the tasks of ``engine``'s namespace."""
    runner = runner_for(
        engine, registry, max_result_bytes=max_result_bytes, progress_min_interval=progress_min_interval
    )
    return Worker(engine, runner, concurrency=concurrency, burst=burst, worker_id=worker_id)


def worker_from(
    registry: ToolRegistry, engine: TaskEngine, settings: Settings, *, burst: bool = False
) -> Worker:
    return build_worker(
        engine,
        registry,
        concurrency=settings.concurrency,
        max_result_bytes=settings.max_result_bytes,
        progress_min_interval=settings.progress_min_interval_s,
        burst=burst,
    )


async def run_worker(registry: ToolRegistry, settings: Settings, *, burst: bool = False) -> None:
    """One worker process: runs until SIGTERM/SIGINT, then hands back its unfinished tasks.

    With ``settings.metrics_port``, its metrics are served at ``http://{host}:{port}/metrics``."""
    engine = engine_from(settings)
    worker = worker_from(registry, engine, settings, burst=burst)
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, worker.stop)
    endpoint = None
    try:
        if settings.metrics_port is not None:
            endpoint = await serve_metrics(engine.metrics, settings.host, settings.metrics_port)
            log.info("worker metrics at http://%s:%d/metrics", settings.host, settings.metrics_port)
        await worker.run()
    finally:
        if endpoint is not None:
            endpoint.close()
        await engine.close()
