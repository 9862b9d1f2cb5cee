"""Where everything lives in Redis: one place that names every key and channel.

Tasks are spread over ``shards``. A shard is one Redis Cluster hash slot: its dispatch stream,
its listing indexes, its event channel and the keys of every task assigned to it share one hash
tag, so that each Lua script touches keys of one slot only and a Redis Cluster spreads the
shards (and so the tasks) over its masters. On a single Redis one shard is all it takes.

A task's shard follows from its id alone (a stable hash), so any process finds a task's keys
from the id a client hands it. The number of shards is therefore part of the deployment, like
the namespace: every process must agree on it, and it must not change while tasks exist.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass, field
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

# Task ids travel inside key names and events, so they are kept to a conservative alphabet.
# Generated ids (token_urlsafe) fit it; so do the mcp SDK's scoped ids ("scope:uuid").
TASK_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_.:\-]{1,128}\Z")
NAMESPACE_PATTERN = re.compile(r"\A[^\s*?\[\]\\{}]{1,64}\Z")

GROUP = "workers"
"""The consumer group every worker reads the dispatch streams with."""


def is_valid_task_id(task_id: str) -> bool:
    return bool(TASK_ID_PATTERN.match(task_id))


@cache
def shard_tag(shard: int, shards: int) -> str:
    """A hash tag whose slot lies in the ``shard``-th equal part of the slot range.

    Redis Cluster splits the slot range into contiguous blocks per master, so tags spread
    evenly over the range spread shards evenly over the masters. Found by search: the first
    ``"{shard}-{n}"`` that hashes into the wanted part.
    """
    low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    n = 0
    while True:
        tag = f"{shard}-{n}"
        if low <= key_slot(tag.encode()) < high:
            return tag
        n += 1


@dataclass(frozen=True)
class Shard:
    """The keys and channel of one shard (one hash slot)."""

    index: int
    prefix: str  # "{namespace}:{tag}"

    @property
    def stream(self) -> str:
        """Stream: the jobs of this shard's normal-priority tasks, read by the workers' group."""
        return f"{self.prefix}:q"

    @property
    def streams(self) -> tuple[str, str, str]:
        """The dispatch streams by priority level: high, normal, low (engine/policy.py)."""
        return (f"{self.prefix}:q:high", self.stream, f"{self.prefix}:q:low")

    def level_of(self, stream: str) -> int:
        return self.streams.index(stream)

    @property
    def channel(self) -> str:
        """Pub/sub channel of every event of this shard's tasks (status, progress, input)."""
        return f"{self.prefix}:ev"

    @property
    def delayed(self) -> str:
        """Sorted set: tasks waiting to be dispatched again (retry backoff), by due time."""
        return f"{self.prefix}:delayed"

    @property
    def failed(self) -> str:
        """Sorted set: failed tasks by failure time, the dead-letter listing."""
        return f"{self.prefix}:failed"

    def task(self, task_id: str) -> str:
        """Hash: the task record (status, timestamps, job, outcome, input requests, progress)."""
        return f"{self.prefix}:t:{task_id}"

    def inbox(self, task_id: str) -> str:
        """List: messages queued for the client through the SDK's TaskMessageQueue."""
        return f"{self.prefix}:t:{task_id}:inbox"

    def session_index(self, session: str) -> str:
        """Sorted set: one session's tasks in this shard by creation (tasks/list without auth)."""
        return f"{self.prefix}:ix:s:{session}"

    def owner_running(self, owner: str) -> str:
        """Sorted set: a quota-bound owner's running tasks, scored by when they stop counting."""
        return f"{self.prefix}:quota:{owner}:run"

    def owner_queue(self, owner: str) -> str:
        """List: a quota-bound owner's tasks waiting for one of its running ones to end (FIFO)."""
        return f"{self.prefix}:quota:{owner}:wait"

    def owner_rate(self, owner: str) -> str:
        """Counter: a quota-bound owner's task creations in the current rate window."""
        return f"{self.prefix}:quota:{owner}:rate"

    @property
    def queued_owners(self) -> str:
        """Sorted set: the owners with tasks in their quota queue (for the reaper to admit)."""
        return f"{self.prefix}:quota:owners"

    @property
    def all_index(self) -> str:
        """Sorted set: tasks created to be listed store-wide (the mcp SDK's TaskStore lists all)."""
        return f"{self.prefix}:ix:all"

    def owner_index(self, owner: str) -> str:
        """Sorted set: one principal's tasks in this shard by creation (tasks/list with auth)."""
        return f"{self.prefix}:ix:o:{owner}"


@dataclass(frozen=True)
class KeySpace:
    """Names of the keys and channels of one namespace (one deployment, or one test)."""

    namespace: str = "mcp-tasks"
    shards: int = 1
    _shards: tuple[Shard, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not NAMESPACE_PATTERN.match(self.namespace):
            raise ValueError(
                f"Invalid namespace {self.namespace!r}: 1-64 characters, no spaces, braces or glob characters"
            )
        if not 1 <= self.shards <= 1024:
            raise ValueError(f"shards must be between 1 and 1024, got {self.shards}")
        shards = tuple(
            Shard(i, f"{self.namespace}:{{{shard_tag(i, self.shards)}}}") for i in range(self.shards)
        )
        object.__setattr__(self, "_shards", shards)

    @property
    def all_shards(self) -> tuple[Shard, ...]:
        return self._shards

    def shard_of(self, task_id: str) -> Shard:
        return self._shards[zlib.crc32(task_id.encode()) % self.shards]

    def task(self, task_id: str) -> str:
        return self.shard_of(task_id).task(task_id)

    # -- deployment-wide (not per shard) ------------------------------------------------------
    @property
    def workers(self) -> str:
        """Sorted set of live worker ids by their last health report (ms)."""
        return f"{self.namespace}:workers"

    def worker(self, worker_id: str) -> str:
        """String: one worker's self-reported health (JSON), expiring if it stops reporting."""
        return f"{self.namespace}:worker:{worker_id}"

    @property
    def scan_pattern(self) -> str:
        """SCAN MATCH pattern of every task record of the namespace (operator listings)."""
        return f"{_glob_escape(self.namespace)}:{{*}}:t:*"


def _glob_escape(text: str) -> str:
    return "".join("\\" + ch if ch in "*?[]\\" else ch for ch in text)
