"""Running one delivered task: its tool in a cancel scope, and its outcome written once.

`ToolRunner` resolves the tool from the shared registry, injects what the tool asks for, runs it
and turns what it returned or raised into an `Outcome` (engine/outcome.py). `write_outcome`
stores that outcome on the task, fenced by the run number: a cancel that landed first wins, and a
worker whose task was delivered again elsewhere writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, cast

import anyio

from mcp_tasks_redis.engine.context import CancellationToken, RequestInfo, TaskCancelled, ToolContext
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import encode_event
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR, REQUEST_TIMEOUT, Outcome, from_exception, to_result
from mcp_tasks_redis.engine.policy import Policy, ToolTimeout
from mcp_tasks_redis.engine.record import TaskStatus
from mcp_tasks_redis.engine.registry import InvalidArguments, Services, ToolRegistry
from mcp_tasks_redis.engine.runtime.backend import RedisTaskBackend
from mcp_tasks_redis.engine.streams import Delivery, failed_index_ttl
from mcp_tasks_redis.engine.tasks import now_ms

log = logging.getLogger("mcp_tasks_redis.worker")

# A wire adapter's wrapper around each run (the 2025 wire runs tools inside the SDK's
# `task_execution` context manager); it receives the delivery it wraps.
AroundRun = Callable[[Delivery], AbstractAsyncContextManager[Any]]


@dataclass(frozen=True)
class RetryLater:
    """A run failed with an exception its tool's retry policy names, and runs are left."""

    error: str
    delay_s: float
    next_attempt: int
    attempts: int

    @property
    def message(self) -> str:
        return (
            f"retrying in {self.delay_s:.0f} s, attempt {self.next_attempt} of {self.attempts}: {self.error}"
        )


RunResult = Outcome | RetryLater


@dataclass
class RunningTask:
    """One task a worker is running, and the means to stop its tool from outside."""

    delivery: Delivery
    expires_ms: int
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)
    cancel: CancellationToken = field(default_factory=CancellationToken)
    stop_reason: str | None = None
    timed_out: bool = False  # the run was cancelled at its tool's timeout
    # Resource use of this run: queue wait, run time, attempts, and a sync tool's thread CPU.
    usage: dict[str, Any] = field(default_factory=dict[str, Any])

    def stop(self, reason: str) -> None:
        """Stop the tool (cancel, lease lost, shutdown); its outcome will not be written."""
        if self.stop_reason is None:
            log.info(
                "stopping task %s: %s",
                self.delivery.task_id,
                reason,
                extra={"task_id": self.delivery.task_id},
            )
            self.stop_reason = reason
            self.cancel.cancel(reason)
            self.scope.cancel()


class ToolRunner:
    """How a worker runs a task's tool: from the registry, with its helpers injected."""

    def __init__(
        self,
        registry: ToolRegistry,
        *,
        max_result_bytes: int | None = None,
        progress_min_interval: float = 0.1,
        around: AroundRun | None = None,
        defaults: Policy | None = None,
    ) -> None:
        self.registry = registry
        self.defaults = defaults or TaskLimits().default_policy()
        self.max_result_bytes = max_result_bytes
        self.progress_min_interval = progress_min_interval
        self.around = around

    async def __call__(self, running: RunningTask, backend: RedisTaskBackend) -> RunResult:
        d = running.delivery
        started = now_ms()
        # Queued since creation on the first run (a quota's owner queue included: the entry was
        # added only when the task was let out of it); since it was delivered again on later runs.
        queued_since = d.created_ms if d.run == 1 else int(d.entry_id.partition("-")[0])
        running.usage.update(wait_ms=max(0, started - queued_since), attempts=d.attempt)
        try:
            return await self._run(running, backend)
        finally:
            running.usage["run_ms"] = now_ms() - started

    async def _run(self, running: RunningTask, backend: RedisTaskBackend) -> RunResult:
        d = running.delivery
        spec = self.registry.get(d.tool or "")
        if spec is None:
            known = ", ".join(self.registry.names()) or "none"
            return Outcome.of_error(INTERNAL_ERROR, f"Unknown tool {d.tool!r}: this worker serves {known}")
        policy = spec.policy.resolved(self.defaults)
        request = RequestInfo(
            task_id=d.task_id,
            owner=d.owner,
            session=d.session,
            progress_token=d.job.progress_token,
            attempt=d.attempt,
            tool=spec.name,
            prepared=prepared_values(d.job.meta),
        )
        context = ToolContext.create(
            backend, request, running.cancel, min_interval=self.progress_min_interval
        )
        wrapper = self.around(d) if self.around is not None else contextlib.nullcontext()
        async with wrapper:
            value: Any = None
            try:
                kwargs = spec.validate_arguments(d.job.arguments)
                timeout = policy.timeout_s
                with anyio.move_on_after(timeout if timeout is not None else math.inf) as timer:
                    value = await spec.invoke_validated(kwargs, Services.from_context(context), running.usage)
                if timer.cancelled_caught:
                    running.timed_out = True
                    raise ToolTimeout(timeout or 0)
            except InvalidArguments as e:
                return Outcome.tool_error(str(e))
            except TaskCancelled as e:
                # Also when the run was stopped from outside (cancel, take-over, shutdown): the
                # worker discards what comes back then. Raising a bare cancellation here instead
                # could escape the run's scope before anyio delivers the scope's own, and cancel
                # the worker's whole task group.
                return from_exception(e)
            except Exception as e:
                return self._after_failure(d, policy, e)
            result = to_result(value)
            if self.max_result_bytes is not None:
                size = len(json.dumps(result, separators=(",", ":"), ensure_ascii=False).encode())
                if size > self.max_result_bytes:
                    return Outcome.of_error(
                        INTERNAL_ERROR,
                        f"Tool result is {size} bytes, over the limit of {self.max_result_bytes} bytes",
                    )
            outcome = Outcome(result=result)
            # A tool that showed progress ends at 100%; one that reported none sends nothing.
            if context.progress.sent and not outcome.is_error:
                await context.progress.finish()
            return outcome

    @staticmethod
    def _after_failure(d: Delivery, policy: Policy, error: Exception) -> RunResult:
        """Retry the run, or say how it failed: runs out of retries and timeouts are failures of
        the task (a JSON-RPC error on both wires); any other exception is a tool error."""
        retry, message = policy.retry, str(error) or type(error).__name__
        attempts = d.attempts_allowed or (retry.attempts if retry else 1)
        if retry is not None and retry.retries(error):
            if d.attempt < attempts:
                return RetryLater(message, retry.delay_s(d.attempt), d.attempt + 1, attempts)
            return Outcome.of_error(INTERNAL_ERROR, f"Failed after {d.attempt} attempt(s): {message}")
        if isinstance(error, ToolTimeout):
            return Outcome.of_error(REQUEST_TIMEOUT, message)
        return from_exception(error)


def prepared_values(meta: dict[str, Any]) -> dict[str, Any]:
    """The prepare step's values a task carries in its job (engine/prepare.py)."""
    prepared = meta.get("prepared")
    return dict(cast(dict[str, Any], prepared)) if isinstance(prepared, dict) else {}


async def write_outcome(engine: TaskEngine, running: RunningTask, outcome: Outcome) -> str:
    """Store the outcome (fenced by the run); returns 'ok', the status that won, 'lost' or 'gone'.

    While Redis is out of reach the write is retried for as long as the lease can outlive the
    outage; after that another worker runs the task again, so giving up loses nothing.
    """
    d = running.delivery
    shard = d.shard
    status = TaskStatus.FAILED if outcome.error is not None else TaskStatus.COMPLETED
    # The dead letter lists JSON-RPC failures and the tool's own error results alike (the
    # 2025-11-25 wire calls both failed).
    failure = status is TaskStatus.FAILED or (outcome.result or {}).get("isError") is True
    now = now_ms()
    message = outcome.message
    fields: list[str | int] = ["st", status.value, "msg", message, "u", now]
    body = {"k": "status", "st": status.value, "msg": message, "u": now}
    raw = json.dumps(outcome.result if outcome.error is None else outcome.error, separators=(",", ":"))
    fields += ["res" if outcome.error is None else "err", raw]
    if running.usage:
        fields += ["use", json.dumps(running.usage, separators=(",", ":"))]
    head = json.dumps(body, separators=(",", ":"))
    if len(raw) > engine.limits.event_outcome_bytes:
        payload = encode_event(d.task_id, {**body, "big": 1})
    else:
        name = "res" if outcome.error is None else "err"
        payload = f'{d.task_id} {head[:-1]},"{name}":{raw}}}'
    # A task that ran past its TTL keeps its outcome readable for the grace period after it ends.
    retain = engine.limits.grace_ms if running.expires_ms - now < engine.limits.grace_ms else ""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + engine.limits.lease_ms / 1000
    while True:
        try:
            written = await engine.conn.run(
                engine.conn.scripts.finish,
                [shard.task(d.task_id), shard.failed],
                [
                    d.run,
                    shard.channel,
                    payload,
                    retain,
                    d.task_id,
                    now if failure else "",
                    failed_index_ttl(engine.limits),
                    *fields,
                ],
                task_id=d.task_id,
            )
            return written.decode() if isinstance(written, bytes) else str(written)
        except RedisUnavailable as e:
            if loop.time() >= give_up:
                raise
            log.warning(
                "task %s: outcome not written yet (%s); retrying", d.task_id, e, extra={"task_id": d.task_id}
            )
            await asyncio.sleep(0.2)
