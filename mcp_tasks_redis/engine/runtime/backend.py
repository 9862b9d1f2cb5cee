"""`RedisTaskBackend`: what a tool running on a worker does to its task, done through Redis.

Progress and status messages are stored on the task and published (one script each); input
requests are stored on the task, and the answer comes back through the task's events from
whichever server replica the client reached. Writes that change the task's status are fenced by
the run number the worker was given, so a worker that lost its task cannot touch it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from dataclasses import replace
from typing import Any

from mcp_tasks_redis.engine.context import ELICITATION_METHOD, SAMPLING_METHOD
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable
from mcp_tasks_redis.engine.events import Listener
from mcp_tasks_redis.engine.outcome import INTERNAL_ERROR, ProtocolError
from mcp_tasks_redis.engine.record import Progress
from mcp_tasks_redis.engine.streams import Delivery
from mcp_tasks_redis.engine.tasks import now_ms
from mcp_tasks_redis.engine.telemetry.tracing import step_span

log = logging.getLogger("mcp_tasks_redis.worker")

INVALID_REQUEST = -32600

# What a client without the capability answers a server's request with (the mcp SDK's clients
# answer exactly this): a task's tool gets the same refusal a plain call's tool would.
UNSUPPORTED = {ELICITATION_METHOD: "Elicitation not supported", SAMPLING_METHOD: "Sampling not supported"}
CAPABILITY = {ELICITATION_METHOD: "elicitation", SAMPLING_METHOD: "sampling"}


class InputCancelled(Exception):
    """The task finished (cancelled, most likely) while its tool waited for input."""


class InputRefused(ProtocolError):
    """The client answered an input request with an error (or cannot answer such requests)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(
            int(error.get("code") or INTERNAL_ERROR), str(error.get("message") or error), error.get("data")
        )
        self.error = error


class InputTimedOut(ProtocolError):
    def __init__(self, seconds: float) -> None:
        super().__init__(INTERNAL_ERROR, f"No answer to the input request within {seconds:g} s")


class RedisTaskBackend:
    def __init__(self, engine: TaskEngine, delivery: Delivery) -> None:
        self.engine = engine
        self.delivery = delivery
        self.had_inputs = False
        self._progress = Progress()

    @property
    def task_id(self) -> str:
        return self.delivery.task_id

    async def publish_progress(self, progress: float, total: float | None, message: str | None) -> None:
        await self._write_progress(replace(self._progress, progress=progress, total=total, message=message))

    async def set_status_message(self, message: str) -> None:
        await self._write_progress(replace(self._progress, message=message))

    async def _write_progress(self, progress: Progress) -> None:
        self._progress = progress = replace(progress, at_ms=now_ms())
        # Progress is a snapshot that the next update replaces: while Redis is briefly out of
        # reach (a restart, a failover) the tool carries on rather than fail over a lost update.
        try:
            await self.engine.tasks.report_progress(self.task_id, progress)
        except RedisUnavailable as e:
            log.warning("task %s: progress not stored (%s)", self.task_id, e, extra={"task_id": self.task_id})

    async def set_working(self) -> None:
        """Nothing to do: answering the last outstanding input request sets the task working."""

    async def request_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the client, wait for the answer through Redis, return the answer's result."""
        capability = CAPABILITY.get(method)
        allowed = self.delivery.job.meta.get("input")
        if capability is not None and isinstance(allowed, list) and capability not in allowed:
            raise InputRefused({"code": INVALID_REQUEST, "message": UNSUPPORTED[method]})
        engine = self.engine
        key = secrets.token_hex(8)
        self.had_inputs = True
        await engine.events.ready()
        span_attributes = {"mcp_tasks.task.id": self.task_id, "mcp_tasks.input.method": method}
        with (
            step_span(f"task.input_wait {method}", span_attributes),
            engine.events.listen(self.task_id) as listener,
        ):
            request = {"method": method, "params": params}
            await engine.tasks.request_input(self.task_id, key, request, fence=self.delivery.run)
            answer = await self._wait_for_answer(key, listener)
        if "error" in answer:
            raise InputRefused(answer["error"])
        result: dict[str, Any] = answer.get("result") or {}
        return result

    async def _wait_for_answer(self, key: str, listener: Listener) -> dict[str, Any]:
        limits = self.engine.limits
        loop = asyncio.get_running_loop()
        wait_ms = self.delivery.deadline_ms - now_ms()
        if limits.input_timeout_ms is not None:
            wait_ms = min(wait_ms, limits.input_timeout_ms)
        give_up = loop.time() + max(wait_ms, 0) / 1000
        while True:
            remaining = give_up - loop.time()
            if remaining <= 0:
                raise InputTimedOut(max(wait_ms, 0) / 1000)
            event = await listener.next(min(limits.recheck_ms / 1000, remaining))
            if event is not None and event.get("k") == "answered":
                replies: dict[str, Any] = event.get("replies") or {}
                if key in replies:
                    return replies[key]  # type: ignore[no-any-return]
                continue
            if event is not None and event.get("k") == "status":
                if event.get("st") in ("completed", "failed", "cancelled"):
                    raise InputCancelled(f"Task {self.task_id} finished while waiting for input")
                continue
            if event is not None and event.get("k") != "reconnected":
                continue
            try:
                record = await self.engine.tasks.get(self.task_id)
            except RedisUnavailable as e:
                # The request and its answer live in Redis: wait for it to come back.
                log.warning(
                    "task %s: waiting for input (%s)", self.task_id, e, extra={"task_id": self.task_id}
                )
                continue
            if record is None or record.is_terminal:
                raise InputCancelled(f"Task {self.task_id} finished while waiting for input")
            if key in record.answers:
                return record.answers[key]
