"""Where everything lives in Redis: one place that names every key and channel.

All keys of one task share the prefix ``{ns}:task:{id}`` so that an operator can see a task's
whole footprint with one ``SCAN MATCH``, and so that the scripts can give them one expiry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Task ids travel inside key names, channel names and JSON built by Lua, so they are kept to a
# conservative alphabet. Generated ids (token_urlsafe) fit it; so do the SDK's scoped ids.
TASK_ID_PATTERN = re.compile(r"\A[A-Za-z0-9_.:\-]{1,128}\Z")


def is_valid_task_id(task_id: str) -> bool:
    return bool(TASK_ID_PATTERN.match(task_id))


@dataclass(frozen=True)
class KeySpace:
    """Names of the keys and channels of one namespace (one deployment, or one test)."""

    namespace: str = "mcp-tasks"

    # -- per task -------------------------------------------------------------------------
    def task(self, task_id: str) -> str:
        """Hash: the task record (status, timestamps, arguments, outcome, lease)."""
        return f"{self.namespace}:task:{task_id}"

    def events(self, task_id: str) -> str:
        """Stream: capped history of status and progress events, for catch-up after reconnects."""
        return f"{self.namespace}:task:{task_id}:events"

    def inbox(self, task_id: str) -> str:
        """List: FIFO of messages for the client, delivered on tasks/result (TaskMessageQueue)."""
        return f"{self.namespace}:task:{task_id}:inbox"

    def inputs(self, task_id: str) -> str:
        """Hash: outstanding input requests (elicitation, sampling) by request key."""
        return f"{self.namespace}:task:{task_id}:inputs"

    def replies(self, task_id: str) -> str:
        """Hash: the client's replies to input requests, by request key."""
        return f"{self.namespace}:task:{task_id}:replies"

    def task_keys(self, task_id: str) -> list[str]:
        """Every key of one task, in the order the Lua scripts expect them."""
        return [
            self.task(task_id),
            self.events(task_id),
            self.inbox(task_id),
            self.inputs(task_id),
            self.replies(task_id),
        ]

    def channel(self, task_id: str) -> str:
        """Pub/sub channel for one task's events (status, progress, input, cancel)."""
        return f"{self.namespace}:chan:{task_id}"

    # -- shared ---------------------------------------------------------------------------
    @property
    def index(self) -> str:
        """Sorted set of every task id by creation time (ms): the listing index."""
        return f"{self.namespace}:index"

    def owner_index(self, owner: str) -> str:
        return f"{self.namespace}:index:owner:{owner}"

    def session_index(self, session: str) -> str:
        return f"{self.namespace}:index:session:{session}"

    @property
    def active(self) -> str:
        """Sorted set of unfinished tasks by the time the reaper should look at them next."""
        return f"{self.namespace}:active"

    @property
    def queue(self) -> str:
        """The arq queue (sorted set of job ids) for this namespace."""
        return f"{self.namespace}:queue"

    @property
    def wake_channel(self) -> str:
        """Pub/sub channel that wakes idle workers when a job is enqueued."""
        return f"{self.namespace}:wake"

    @property
    def workers(self) -> str:
        """Sorted set of live worker ids by their last heartbeat (ms)."""
        return f"{self.namespace}:workers"

    def worker(self, worker_id: str) -> str:
        """String: one worker's self-reported health (JSON), expiring if it stops reporting."""
        return f"{self.namespace}:worker:{worker_id}"
