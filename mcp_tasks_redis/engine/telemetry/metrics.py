"""`Metrics`: the Prometheus series of one process, counted in memory and rendered on a scrape.

Each `TaskEngine` holds one `Metrics` with a registry of its own (never prometheus-client's global
default registry): a process (one engine) exposes exactly its own series, and tests that build
several engines in one process see each engine's counts apart. Every count is made by the process
that made the change it counts, at the moment its script succeeded, so that summing a series over
the fleet counts each task once:

- servers count the tasks they create, the calls refused by a quota, the tasks they cancel, and
  how long the relay took from an event's publication to its notification;
- workers count the runs and their resource use, the outcomes they write, retries, timeouts, and
  what their reapers find (leases that expired, tasks re-run or failed);
- every process counts the times Redis could not be reached, by operation.

Label values are bounded: a tool label is a name of the registry the process serves (declared
with `declare_tools`; any other name is counted as ``other``), never a task id or an owner.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

PRIORITY_NAMES = ("high", "normal", "low")
"""Priority levels by index (engine/policy.py), as label values."""

FINISHED_STATUSES = ("completed", "tool_error", "failed", "cancelled")
"""``status`` of `mcp_tasks_finished_total`. ``tool_error``: the tool answered a result with
``isError: true``; stored as ``completed``, it is ``failed`` on the 2025-11-25 wire and
``completed`` on SEP-2663, so it is counted apart and a dashboard can add it to either."""

OTHER = "other"
"""The tool label of a name the process was not told of (bounds the label's values)."""

MAX_UNDECLARED_TOOLS = 100
"""With no registry declared (an SDK store user), this many distinct tool names get a label of
their own; later ones count as `OTHER`."""

WAIT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600)
RUN_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600, 14400)
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)

Role = Literal["server", "worker"]
Sampler = Callable[[], Awaitable[None]]


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Metrics:
    """The series of one process; its methods are the events the engine and adapters report."""

    def __init__(self, *, process_collectors: bool = True) -> None:
        """``process_collectors``: also export the process's CPU, memory, file descriptors, GC and
        Python version (prometheus-client's standard ``process_*`` and ``python_*`` series)."""
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process_collectors:
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)
            GCCollector(registry=r)
        self.created = Counter(
            "mcp_tasks_created", "Tasks created and dispatched to workers.", ["tool", "priority"], registry=r
        )
        self.finished = Counter(
            "mcp_tasks_finished",
            "Tasks that ended, counted by the process whose write ended them (workers: completed,"
            " tool_error, failed; servers: cancelled).",
            ["tool", "status"],
            registry=r,
        )
        self.queue_wait = Histogram(
            "mcp_tasks_queue_wait_seconds",
            "From dispatch to a worker starting the run, per run.",
            ["tool"],
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.run_time = Histogram(
            "mcp_tasks_run_seconds",
            "Wall time of a run on a worker.",
            ["tool"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.end_to_end = Histogram(
            "mcp_tasks_end_to_end_seconds",
            "From a task's creation to its outcome being written by a worker.",
            ["tool"],
            buckets=RUN_BUCKETS,
            registry=r,
        )
        self.cpu = Counter(
            "mcp_tasks_tool_cpu_seconds",
            "CPU time of sync tools, measured on the thread each runs in (async tools are not measured).",
            ["tool"],
            registry=r,
        )
        self.retries = Counter(
            "mcp_tasks_retries",
            "Runs that failed and were scheduled again by the retry policy.",
            ["tool"],
            registry=r,
        )
        self.timeouts = Counter(
            "mcp_tasks_timeouts", "Runs cancelled at their timeout.", ["tool"], registry=r
        )
        self.lease_expiries = Counter(
            "mcp_tasks_lease_expiries",
            "Running tasks whose worker stopped renewing its lease, found by this worker's reaper.",
            ["tool"],
            registry=r,
        )
        self.reruns = Counter(
            "mcp_tasks_reruns",
            "Tasks of a lost worker delivered again by this worker's reaper.",
            ["tool"],
            registry=r,
        )
        self.quota_refusals = Counter(
            "mcp_tasks_quota_refusals",
            "Task calls refused by a per-owner quota (reason: rate or queue).",
            ["tool", "reason"],
            registry=r,
        )
        self.relay_lag = Histogram(
            "mcp_tasks_relay_lag_seconds",
            "From a task change's publication (by its writer's clock) to the notification sent for it.",
            ["notification"],
            buckets=LAG_BUCKETS,
            registry=r,
        )
        self.redis_errors = Counter(
            "mcp_tasks_redis_errors",
            "Redis out of reach (RedisUnavailable), by operation.",
            ["operation"],
            registry=r,
        )
        self._declared: set[str] = set()
        self._seen: set[str] = set()
        self._samplers: list[Sampler] = []
        self._worker_gauges = False

    # -- labels --------------------------------------------------------------------------------
    def declare_tools(self, names: Iterable[str], role: Role) -> None:
        """The registry this process serves (``server``) or runs (``worker``): its names are the
        tool label's values, and the counters a dashboard rates over start at zero for each."""
        for name in names:
            self._declared.add(name)
            if role == "server":
                for priority in PRIORITY_NAMES:
                    self.created.labels(name, priority)
                self.finished.labels(name, "cancelled")
                for reason in ("rate", "queue"):
                    self.quota_refusals.labels(name, reason)
            else:
                for status in FINISHED_STATUSES[:3]:
                    self.finished.labels(name, status)
                for counter in (self.retries, self.timeouts, self.lease_expiries, self.reruns):
                    counter.labels(name)

    def tool(self, name: str | None) -> str:
        """The label value for a tool name (bounded; see the module docstring)."""
        if not name:
            return "none"
        if name in self._declared or name in self._seen:
            return name
        if not self._declared and len(self._seen) < MAX_UNDECLARED_TOOLS:
            self._seen.add(name)
            return name
        return OTHER

    # -- servers -------------------------------------------------------------------------------
    def task_created(self, tool: str | None, level: int) -> None:
        self.created.labels(self.tool(tool), PRIORITY_NAMES[level]).inc()

    def quota_refused(self, tool: str | None, reason: str) -> None:
        self.quota_refusals.labels(self.tool(tool), reason).inc()

    def task_cancelled(self, tool: str | None) -> None:
        self.finished.labels(self.tool(tool), "cancelled").inc()

    def notification_sent(self, notification: str, published_ms: int | None) -> None:
        """A relay sent a notification about a change written (and published) at
        ``published_ms``, by the writer's clock: a status change's ``lastUpdatedAt``, a progress
        report's time. None: nothing to time it by, not observed."""
        if published_ms is not None and published_ms > 0:
            self.relay_lag.labels(notification).observe(max(0, _now_ms() - published_ms) / 1000)

    # -- workers -------------------------------------------------------------------------------
    def track_worker(self, running: Callable[[], int], slots: int) -> None:
        """A worker runs in this process: its running tasks and slots, read at each scrape."""
        if self._worker_gauges:
            return
        self._worker_gauges = True
        Gauge("mcp_tasks_running", "Tasks this worker runs now.", registry=self.registry).set_function(
            lambda: running()
        )
        Gauge("mcp_tasks_worker_slots", "Tasks this worker may run at once.", registry=self.registry).set(
            slots
        )

    def run_ended(self, tool: str | None, usage: Mapping[str, Any]) -> None:
        """One run's resource use (`RunningTask.usage`): queue wait, run time, thread CPU."""
        label = self.tool(tool)
        if isinstance(usage.get("wait_ms"), int | float):
            self.queue_wait.labels(label).observe(usage["wait_ms"] / 1000)
        if isinstance(usage.get("run_ms"), int | float):
            self.run_time.labels(label).observe(usage["run_ms"] / 1000)
        if isinstance(usage.get("cpu_ms"), int | float):
            self.cpu.labels(label).inc(usage["cpu_ms"] / 1000)

    def outcome_written(self, tool: str | None, status: str, created_ms: int) -> None:
        """A worker ended a task with its run's outcome."""
        label = self.tool(tool)
        self.finished.labels(label, status).inc()
        self.end_to_end.labels(label).observe(max(0, _now_ms() - created_ms) / 1000)

    def task_failed(self, tool: str | None) -> None:
        """A reaper failed a task: its runs ran out with its workers lost, or nobody ran it in
        time."""
        self.finished.labels(self.tool(tool), "failed").inc()

    def retry_scheduled(self, tool: str | None) -> None:
        self.retries.labels(self.tool(tool)).inc()

    def timed_out(self, tool: str | None) -> None:
        self.timeouts.labels(self.tool(tool)).inc()

    def lease_expired(self, tool: str | None, rerun: bool) -> None:
        label = self.tool(tool)
        self.lease_expiries.labels(label).inc()
        if rerun:
            self.reruns.labels(label).inc()

    # -- every process -------------------------------------------------------------------------
    def redis_unavailable(self, operation: str) -> None:
        self.redis_errors.labels(operation).inc()

    def add_sampler(self, sampler: Sampler) -> None:
        """Something read at each scrape, before the series are rendered (queue depths)."""
        self._samplers.append(sampler)

    async def render(self, accept: str = "") -> tuple[bytes, str]:
        """Every series, after running the samplers, in the format the scraper's ``Accept``
        header asks for (Prometheus text by default, or OpenMetrics); and its content type."""
        for sample in self._samplers:
            await sample()
        encoder, content_type = choose_encoder(accept)
        return encoder(_WithoutCreated(self.registry)), content_type


class _WithoutCreated(Collector):
    """The registry's families without their ``*_created`` samples (each counter's and
    histogram's creation time, which the text format shows as gauges of their own,
    ``mcp_tasks_created_created`` among them): half the series, and nothing a dashboard uses."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for family in self.registry.collect():
            if family.type in ("counter", "histogram", "summary"):
                family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


def finished_status(error: object, result: Mapping[str, Any] | None) -> str:
    """The ``status`` label of an outcome: ``failed`` for a JSON-RPC error, ``tool_error`` for a
    result with ``isError: true``, else ``completed``."""
    if error is not None:
        return "failed"
    return "tool_error" if result is not None and result.get("isError") is True else "completed"
