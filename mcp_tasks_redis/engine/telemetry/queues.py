"""Queue depths, read from Redis when Prometheus scrapes, never on a task's path.

At each scrape, one pipelined round trip reads, for every shard: ``XLEN`` and ``XINFO GROUPS`` of
each priority level's dispatch stream, the retry backoff set's ``ZCARD`` and the number of owners
with tasks held back by their quota (``ZCARD``). Finished jobs are acknowledged and deleted
together, so a stream holds the jobs waiting for a worker plus the ones delivered to one (the
group's pending entries): waiting = length - pending.

Every process that exposes metrics samples the same deployment-wide values: aggregate them with
``max`` across instances, not ``sum``. When Redis cannot be reached the gauges are left out of
that scrape (Prometheus marks them stale) rather than repeating an old value.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from mcp_tasks_redis.engine.connection import REDIS_DOWN, RedisConnection
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.keys import GROUP
from mcp_tasks_redis.engine.telemetry.metrics import PRIORITY_NAMES, Metrics


@dataclass(frozen=True)
class QueueSnapshot:
    """The dispatch queues of a deployment at one moment, summed over its shards."""

    waiting: dict[str, int]  # by priority: jobs no worker has taken yet
    delivered: dict[str, int]  # by priority: jobs a worker holds (running, or kept for a slot)
    retry_backoff: int  # tasks waiting out a retry backoff
    owners_waiting: int  # owners with tasks held back by their running quota


async def read_queues(conn: RedisConnection) -> QueueSnapshot:
    """Read the queues in one pipelined round trip (RedisUnavailable when Redis is out of reach);
    `mcp-tasks-redis` admin commands may show the same numbers the metrics do."""
    shards = conn.keys.all_shards
    pipe: Any = conn.redis.pipeline(transaction=False)
    for shard in shards:
        for stream in shard.streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        pipe.zcard(shard.delayed)
        pipe.zcard(shard.queued_owners)
    try:
        replies: list[Any] = await pipe.execute(raise_on_error=False)
    except REDIS_DOWN as e:
        raise RedisUnavailable(conn.url, e) from e
    waiting: dict[str, int] = dict.fromkeys(PRIORITY_NAMES, 0)
    delivered: dict[str, int] = dict.fromkeys(PRIORITY_NAMES, 0)
    delayed = held = at = 0
    for _ in shards:
        for name in PRIORITY_NAMES:
            length, groups = replies[at], replies[at + 1]
            at += 2
            pending = _pending(groups)
            if isinstance(length, int):  # an error reply (no such stream yet): nothing queued
                waiting[name] += max(0, length - pending)
                delivered[name] += pending
        delayed += replies[at] if isinstance(replies[at], int) else 0
        held += replies[at + 1] if isinstance(replies[at + 1], int) else 0
        at += 2
    return QueueSnapshot(waiting, delivered, delayed, held)


class QueueDepth(Collector):
    """The ``mcp_tasks_queue_*`` gauges of one deployment (namespace), sampled per scrape."""

    def __init__(self, conn: RedisConnection, metrics: Metrics) -> None:
        """Registers itself with ``metrics``: its gauges are sampled before each rendering."""
        self.conn = conn
        self._metrics = metrics
        self._latest: QueueSnapshot | None = None
        metrics.registry.register(self)
        metrics.add_sampler(self.sample)

    async def sample(self) -> None:
        """Read the depths; on an outage, forget them and count the error."""
        try:
            self._latest = await read_queues(self.conn)
        except RedisUnavailable:
            self._latest = None
            self._metrics.redis_unavailable("sample_queues")

    def describe(self) -> Iterable[Metric]:
        return []  # registering must not sample (the registry calls collect() otherwise)

    def collect(self) -> Iterable[Metric]:
        latest = self._latest
        if latest is None:
            return []
        queued = GaugeMetricFamily(
            "mcp_tasks_queue_waiting", "Jobs waiting for a worker, by priority level.", labels=["priority"]
        )
        taken = GaugeMetricFamily(
            "mcp_tasks_queue_delivered",
            "Jobs delivered to a worker and not yet finished (running, or held for a free slot).",
            labels=["priority"],
        )
        for name in PRIORITY_NAMES:
            queued.add_metric([name], latest.waiting[name])
            taken.add_metric([name], latest.delivered[name])
        backoff = GaugeMetricFamily(
            "mcp_tasks_queue_retry_backoff",
            "Tasks waiting out a retry backoff before dispatch.",
            value=latest.retry_backoff,
        )
        owners = GaugeMetricFamily(
            "mcp_tasks_quota_owners_waiting",
            "Owners with tasks held back by their running quota.",
            value=latest.owners_waiting,
        )
        return [queued, taken, backoff, owners]


def _pending(groups: Any) -> int:
    """The workers group's pending count in an XINFO GROUPS reply (0 when it does not exist)."""
    if not isinstance(groups, list):
        return 0
    for group in groups:  # pyright: ignore[reportUnknownVariableType]
        if isinstance(group, dict):
            info: dict[Any, Any] = group  # pyright: ignore[reportUnknownVariableType]
            name = info.get("name", info.get(b"name"))
            if name in (GROUP, GROUP.encode()):
                return int(info.get("pending", info.get(b"pending", 0)) or 0)
    return 0
