"""`TaskLimits`: the bounds and timings every process of one deployment must agree on."""

from __future__ import annotations

from dataclasses import dataclass

from mcp_tasks_redis.engine.policy import Policy, Retry


@dataclass(frozen=True)
class TaskLimits:
    default_ttl_ms: int = 3_600_000
    min_ttl_ms: int = 1_000
    max_ttl_ms: int = 7 * 86_400_000
    # Suggested to clients as the task's poll interval.
    poll_interval_ms: int = 500
    # How long a finished or abandoned task stays readable past its TTL, so that a reaper's
    # "failed: expired" can still be seen.
    grace_ms: int = 60_000
    # A running task's lease: a worker renews all of its leases every third of this; a task
    # whose lease lapses is delivered again.
    lease_ms: int = 30_000
    max_attempts: int = 3
    list_page_size: int = 50
    # The longest a waiter goes without re-reading the task, in case pub/sub lost an event.
    recheck_ms: int = 2_000
    # A terminal event carries the task's outcome up to this size (JSON bytes), so that waiters
    # need not read the record; a larger outcome is read by whoever needs it.
    event_outcome_bytes: int = 65_536
    # How long a tool may wait for the client's answer to an input request; None: until the
    # task's TTL runs out.
    input_timeout_ms: int | None = None
    # The policy of tools that declare none of their own (engine/policy.py): runs in all (a lost
    # worker uses one up; exceptions earn another only where a tool's Retry names them), timeout.
    default_timeout_s: float | None = None
    # The highest priority a call may ask for in its _meta (a tool's own level is not bounded).
    call_priority_max: str = "normal"
    # Per-owner quotas (the principal, or the session without auth); 0 turns one off. Over the
    # running limit a task waits in its owner's queue; past the queue limit or the creation rate
    # a call is refused (QuotaExceeded). With several shards each limit holds per shard.
    owner_max_running: int = 0
    owner_max_queued: int = 1_000
    owner_rate: int = 0
    owner_rate_window_ms: int = 60_000
    # Replicas that must have a new task before its creation is acknowledged (WAIT), and how long
    # to wait for them; 0: acknowledged once the master has it (Redis' own default).
    replica_acks: int = 0
    replica_wait_ms: int = 1_000

    @property
    def quotas(self) -> bool:
        return self.owner_max_running > 0 or self.owner_rate > 0

    def default_policy(self) -> Policy:
        return Policy(
            retry=Retry(attempts=self.max_attempts), timeout_s=self.default_timeout_s, priority="normal"
        )

    def clamp_ttl(self, requested: int | None) -> int:
        if requested is None:
            return self.default_ttl_ms
        return max(self.min_ttl_ms, min(self.max_ttl_ms, requested))
