"""The worker side of the arq dispatcher: our task function, hosted in an arq worker.

Only arq's public surface is used: a function (``arq.worker.func``), the ``on_startup`` and
``on_shutdown`` hooks, the JSON job serializer settings and ``RedisSettings``. A team that runs
arq already adds `ArqTasks` to its own ``WorkerSettings`` (docs/arq.md):

- ``on_startup`` builds, once per worker process, the engine (its own Redis connection and event
  subscriber) and the tool runner, and puts them in arq's ``ctx``; ``on_shutdown`` closes them.
- The function receives a task id (the arq job id is the task id), claims the run on the record,
  runs the tool exactly as a streams worker would (engine/runtime/claimed.py) and writes the
  outcome; arq's own result is not kept (``keep_result=0``): the outcome lives on the task.

What arq decides and what the engine decides:

- **Lease**: arq's in-progress key (its job timeout plus 10 s, never renewed). When a worker dies,
  arq runs the job again once that key expires; the claim counts the attempt, fences the old run,
  and fails the task once ``max_attempts`` runs were lost. arq's own ``max_tries`` is set far
  above ours, so that arq never ends a job without the task being told.
- **Timeouts**: a run is failed by us a little before arq's job timeout, so that arq never
  cancels a run whose task would then stay ``working``.
- **Cancel**: the engine's cancel event stops the tool at once (arq's abort is not used); a job
  cancelled before pickup is taken from the queue by arq, and its tool never runs.
- **Retries**: a tool's retry policy asks arq for a later run (``arq.worker.Retry(defer=...)``).
- **SIGTERM**: arq cancels running jobs and runs them again; the run is handed back first, so
  that the next one is not counted as an attempt.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Function, Retry, func
from redis.exceptions import ConnectionError as RedisConnectionError

from mcp_tasks_redis.arq_dispatch.jobs import (
    FUNCTION_NAME,
    ArqDispatch,
    json_deserializer,
    json_serializer,
)
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.loading import load_registry
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.engine.runtime.claimed import run_claimed
from mcp_tasks_redis.engine.runtime.execution import RetryLater, ToolRunner
from mcp_tasks_redis.engine.runtime.worker import new_worker_id
from mcp_tasks_redis.settings import Settings

log = logging.getLogger("mcp_tasks_redis.worker")

CTX_KEY = "mcp_tasks_redis"
"""Where `ArqTasks.on_startup` puts the process's engine and runner in arq's ``ctx``."""

# arq's own cap on a job's runs. The engine counts attempts itself (TaskLimits.max_attempts, a
# tool's Retry) and fails the task when they run out; arq must never give up first, since a job
# it gives up on ends without our function, and so without the task being told.
ARQ_MAX_TRIES = 1_000


@dataclass
class _Host:
    """What a worker process's runs share: built by on_startup, closed by on_shutdown."""

    engine: TaskEngine
    runner: ToolRunner
    worker_id: str


class ArqTasks:
    """MCP tasks for an arq worker: the function to register and the hooks that host it.

    ``registry``: the tools (a `ToolRegistry`, or ``"module:attribute"``). ``redis_url``,
    ``namespace``, ``shards`` and ``limits`` must match the servers' (`Settings`). ``queue_name``:
    the arq queue the servers enqueue into (default: derived from the namespace). ``job_timeout_s``:
    arq's timeout for our function; it bounds a run, and with arq's 10 s it is the lease.
    """

    def __init__(
        self,
        registry: ToolRegistry | str,
        *,
        redis_url: str = "redis://127.0.0.1:6379/0",
        namespace: str = "mcp-tasks",
        shards: int = 1,
        limits: TaskLimits | None = None,
        queue_name: str | None = None,
        job_timeout_s: float = 300,
        max_result_bytes: int | None = None,
        progress_min_interval: float = 0.1,
    ) -> None:
        self._registry = registry
        self.redis_url = redis_url
        self.namespace = namespace
        self.shards = shards
        self.limits = limits or TaskLimits()
        self.dispatch = ArqDispatch.for_namespace(namespace, queue_name)
        self.job_timeout_s = job_timeout_s
        self.max_result_bytes = max_result_bytes
        self.progress_min_interval = progress_min_interval

    @classmethod
    def from_settings(cls, registry: ToolRegistry | str, settings: Settings) -> ArqTasks:
        """The tasks of a deployment configured by `Settings` (``MCP_TASKS_*``), as its servers are."""
        from mcp_tasks_redis.ops.processes import limits_from

        return cls(
            registry,
            redis_url=settings.resolved_redis_url,
            namespace=settings.namespace,
            shards=settings.shards,
            limits=limits_from(settings),
            queue_name=settings.arq_queue,
            job_timeout_s=settings.arq_job_timeout_s,
            max_result_bytes=settings.max_result_bytes,
            progress_min_interval=settings.progress_min_interval_s,
        )

    @property
    def queue_name(self) -> str:
        return self.dispatch.queue_name

    @property
    def time_limit_s(self) -> float:
        """How long a run may take: a margin before arq's job timeout would cancel it."""
        return max(self.job_timeout_s - min(5.0, self.job_timeout_s / 10), 0.001)

    @property
    def function(self) -> Function:
        """The arq function to list in ``WorkerSettings.functions``."""
        return func(
            self.run,
            name=FUNCTION_NAME,
            timeout=self.job_timeout_s,
            max_tries=ARQ_MAX_TRIES,
            keep_result=0,
        )

    async def on_startup(self, ctx: dict[Any, Any]) -> None:
        """arq's ``on_startup`` hook (call it from yours if you have one)."""
        # Imported here: ops imports the wire adapter of the installed mcp, which the function
        # needs only once a worker starts.
        from mcp_tasks_redis.ops.processes import runner_for

        registry = load_registry(self._registry) if isinstance(self._registry, str) else self._registry
        engine = TaskEngine.from_url(
            self.redis_url,
            namespace=self.namespace,
            shards=self.shards,
            limits=self.limits,
            dispatcher=self.dispatch,
        )
        runner = runner_for(
            engine,
            registry,
            max_result_bytes=self.max_result_bytes,
            progress_min_interval=self.progress_min_interval,
        )
        engine.metrics.declare_tools(registry.names(), "worker")
        await engine.events.ready()
        host = ctx[CTX_KEY] = _Host(engine, runner, f"arq:{new_worker_id()}")
        log.info("worker %s started: MCP tasks from arq queue %s", host.worker_id, self.queue_name)

    async def on_shutdown(self, ctx: dict[Any, Any]) -> None:
        """arq's ``on_shutdown`` hook (call it from yours if you have one)."""
        host: _Host | None = ctx.pop(CTX_KEY, None)
        if host is not None:
            await host.engine.close()

    async def run(self, ctx: dict[Any, Any], task_id: str) -> str:
        """The arq function: run one task's tool; returns how the run ended (for arq's log)."""
        host: _Host = ctx[CTX_KEY]
        ended = await run_claimed(
            host.engine, host.runner, task_id, worker_id=host.worker_id, time_limit_s=self.time_limit_s
        )
        if isinstance(ended, RetryLater):
            raise Retry(defer=ended.delay_s)
        return ended

    def worker_settings(self, **overrides: Any) -> dict[str, Any]:
        """Settings for an arq worker that serves MCP tasks only (``arq.run_worker(settings)``,
        or the attributes of a ``WorkerSettings`` class); ``overrides`` are arq Worker options."""
        settings: dict[str, Any] = {
            "functions": [self.function],
            "on_startup": self.on_startup,
            "on_shutdown": self.on_shutdown,
            "queue_name": self.queue_name,
            "redis_settings": RedisSettings.from_dsn(self.redis_url),
            "job_serializer": json_serializer,
            "job_deserializer": json_deserializer,
            "job_timeout": self.job_timeout_s,
            "keep_result": 0,
            "max_tries": ARQ_MAX_TRIES,
        }
        settings.update(overrides)
        return settings


def run_arq_worker(registry: ToolRegistry, settings: Settings, *, burst: bool = False) -> None:
    """``mcp-tasks-redis worker --dispatcher arq``: an arq worker serving MCP tasks only, on arq's
    own event loop and signal handling (SIGTERM: running tasks are handed back and run again).

    arq's worker exits when Redis goes away (its poll raises); this one starts a new arq worker
    until Redis answers again, as a process supervisor would, so that a Redis restart costs no
    worker. The runs in progress finish first (arq waits for them as it closes).
    """
    from arq.worker import create_worker

    tasks = ArqTasks.from_settings(registry, settings)
    options = tasks.worker_settings(
        burst=burst, max_jobs=settings.concurrency, poll_delay=settings.arq_poll_delay_s
    )
    backoff = 0.2
    while True:
        worker = create_worker(options)  # type: ignore[arg-type]
        try:
            worker.run()
            return
        except (RedisConnectionError, OSError) as e:
            log.warning("arq worker: Redis unreachable (%s); starting again in %.1f s", e, backoff)
        # arq did not get to its on_shutdown: close this worker's engine before the next one.
        with contextlib.suppress(Exception):
            worker.loop.run_until_complete(tasks.on_shutdown(worker.ctx))
        time.sleep(backoff)
        backoff = min(backoff * 2, 5.0)
