"""`RedisTaskBackend`: what a tool running on a worker does to its task, done through Redis.

Progress and status messages become atomic task updates (stored, appended to the event stream,
published); input requests are stored on the task and answered through the task's reply slot.
Every write is fenced by the worker's lease, so a worker that lost its task cannot touch it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import RedisUnavailable, TaskIsTerminal
from mcp_tasks_redis.engine.record import Progress, TaskStatus

log = logging.getLogger("mcp_tasks_redis.worker")

# Builds the request stored on the task when a tool asks for input, in the wire's own shape
# (the 2025 wire: a JSON-RPC request whose id names the task and the key), from
# (task_id, key, method, params). Without one, ``{"method", "params"}`` is stored.
InputRequestBuilder = Callable[[str, str, str, dict[str, Any]], dict[str, Any]]


class InputCancelled(Exception):
    """The task finished (cancelled, most likely) while its tool waited for input."""


class InputRefused(Exception):
    """The client answered an input request with an error."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(f"The client refused the input request: {error.get('message', error)}")
        self.error = error


class RedisTaskBackend:
    def __init__(
        self,
        engine: TaskEngine,
        task_id: str,
        *,
        worker_id: str | None = None,
        input_request: InputRequestBuilder | None = None,
    ) -> None:
        self.engine = engine
        self.task_id = task_id
        self.worker_id = worker_id
        self._input_request = input_request

    async def publish_progress(self, progress: float, total: float | None, message: str | None) -> None:
        # Progress is a snapshot that the next update replaces: while Redis is briefly out of
        # reach (a restart, a failover) the tool carries on rather than fail over a lost update.
        try:
            await self.engine.tasks.update(
                self.task_id,
                progress=Progress(progress=progress, total=total, message=message),
                message=message,
                fence=self.worker_id,
            )
        except RedisUnavailable as e:
            log.warning("task %s: progress not stored (%s)", self.task_id, e, extra={"task_id": self.task_id})

    async def set_status_message(self, message: str) -> None:
        try:
            await self.engine.tasks.update(self.task_id, message=message, fence=self.worker_id)
        except RedisUnavailable as e:
            log.warning(
                "task %s: status message not stored (%s)", self.task_id, e, extra={"task_id": self.task_id}
            )

    async def set_working(self) -> None:
        record = await self.engine.tasks.get(self.task_id)
        if record is not None and record.status is TaskStatus.INPUT_REQUIRED:
            await self.engine.tasks.update(self.task_id, status=TaskStatus.WORKING, fence=self.worker_id)

    async def request_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the client, wait for its reply through Redis, and go back to working."""
        key = secrets.token_hex(8)
        if self._input_request is not None:
            request = self._input_request(self.task_id, key, method, params)
        else:
            request = {"method": method, "params": params}
        await self.engine.inputs.request(self.task_id, key, request, fence=self.worker_id)
        # Replies are stored as {"result": ...} or {"error": ...}, as a JSON-RPC response.
        reply = await self._wait_for_reply(key)
        if "error" in reply:
            raise InputRefused(reply["error"])
        pending = await self.engine.inputs.pending(self.task_id)
        if not pending:
            try:
                await self.engine.tasks.update(self.task_id, status=TaskStatus.WORKING, fence=self.worker_id)
            except TaskIsTerminal:
                raise InputCancelled(f"Task {self.task_id} finished while waiting for input") from None
        result: dict[str, Any] = reply.get("result") or {}
        return result

    async def _wait_for_reply(self, key: str) -> dict[str, Any]:
        engine, poll = self.engine, self.engine.limits.poll_interval_ms / 1000
        async with engine.events.watch(engine.keys.channel(self.task_id)) as watch:
            while True:
                try:
                    reply = await engine.inputs.take_reply(self.task_id, key)
                    if reply is not None:
                        return reply
                    record = await engine.tasks.get(self.task_id)
                except RedisUnavailable as e:
                    # The request and its reply slot live in Redis: wait for it to come back.
                    log.warning(
                        "task %s: waiting for input (%s)", self.task_id, e, extra={"task_id": self.task_id}
                    )
                    await asyncio.sleep(poll)
                    continue
                if record is None or record.is_terminal:
                    raise InputCancelled(f"Task {self.task_id} finished while waiting for input")
                await watch.next(poll)
                watch.drain()
