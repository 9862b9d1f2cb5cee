"""`RedisTaskStore`: the SDK's `TaskStore` over the engine, shared by every process of a deployment.

Each method is one engine call (one Lua script or one command in the normal case), so any number
of server replicas and workers can act on the same task. Where the SDK's in-memory store is
lenient, this store follows the engine's stricter rules, all documented on the methods:
terminal tasks are immutable (even their message), requested TTLs are clamped, ids are
validated, and a cancelled task exposes no result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import redis.asyncio as aioredis
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import CallToolResult, ErrorData, Result, Task, TaskMetadata
from mcp.types import TaskStatus as WireStatus
from pydantic import ValidationError

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import NotSerializable, TaskNotFound
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.tasks import ListScope
from mcp_tasks_redis.mcp_v1.convert import to_task

__all__ = ["NUDGE_EVENT", "RedisTaskStore", "result_from_json", "result_to_json"]

# Published by notify_update: wakes every wait_for_update on the task, in every process.
NUDGE_EVENT = "nudge"


def result_to_json(result: Result) -> dict[str, Any]:
    """A result as the JSON object the client would receive; NotSerializable if it has none."""
    # Pydantic's JSON mode writes NaN and infinities as null, as the wire would; anything it
    # cannot write at all (arbitrary objects, undecodable bytes) is refused before any write.
    try:
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)
    except (TypeError, ValueError) as e:  # PydanticSerializationError and UnicodeError are ValueErrors
        raise NotSerializable(f"Task result is not JSON-serializable: {e}") from e


def result_from_json(data: Mapping[str, Any]) -> Result:
    """A stored result, typed back as `CallToolResult` when it is one, else as a generic `Result`.

    The SDK's tasks/result handler only calls ``model_dump`` on it, which gives the same JSON either
    way; the typed form is for in-process callers (``result.content[0].text``).
    """
    if "content" in data:
        try:
            return CallToolResult.model_validate(data)
        except ValidationError:
            pass
    return Result.model_validate(data)


class RedisTaskStore(TaskStore):
    """Task state in Redis, for ``server.experimental.enable_tasks(store=...)`` and for workers.

    Tasks it creates join a store-wide listing; ``scope`` is called on every ``list_tasks`` so
    that a server can restrict listing to the calling session or owner instead (e.g. from a
    contextvar set by its request handler).
    """

    def __init__(
        self,
        redis: aioredis.Redis | TaskEngine,
        *,
        namespace: str = "mcp-tasks",
        limits: TaskLimits | None = None,
        scope: Callable[[], ListScope | None] | None = None,
        newest_first: bool = False,
        fence: int | None = None,
    ) -> None:
        """``fence``: a worker's run number; status and result writes are refused once the task
        was delivered again (another worker took it over), so a stale worker can never
        overwrite the outcome of the run that replaced it."""
        self._fence = fence
        self.engine, self._owns_engine = TaskEngine.adopt(redis, namespace=namespace, limits=limits)
        self._scope = scope
        # Oldest-first by default, like the SDK's in-memory store; both orders are stable.
        self._newest_first = newest_first

    @classmethod
    def from_url(cls, url: str, *, namespace: str = "mcp-tasks", **limits: Any) -> RedisTaskStore:
        """A store with its own connection; ``limits`` are `TaskLimits` fields (``max_ttl_ms=...``)."""
        engine = TaskEngine.from_url(url, namespace=namespace, limits=TaskLimits(**limits))
        store = cls(engine)
        store._owns_engine = True
        return store

    def _task(self, record: TaskRecord) -> Task:
        return to_task(record, self.engine.limits.poll_interval_ms)

    async def _read(self, task_id: str) -> TaskRecord:
        record = await self.engine.tasks.get(task_id)
        if record is None:
            raise TaskNotFound(task_id)
        return record

    async def aclose(self) -> None:
        if self._owns_engine:
            await self.engine.close()

    # -- the nine TaskStore methods ---------------------------------------------------------

    async def create_task(
        self,
        metadata: TaskMetadata,
        task_id: str | None = None,
        *,
        owner: str | None = None,
        session: str | None = None,
        tool: str | None = None,
        arguments: Mapping[str, Any] | None = None,
        progress_token: str | int | None = None,
        dispatch: bool = False,
    ) -> Task:
        """Create a `working` task; the reported ttl is the requested one clamped to the limits.

        Without ``task_id`` the engine generates 192 random bits. A duplicate id raises
        TaskAlreadyExists (a ValueError); a malformed one InvalidTaskId. With ``dispatch`` the
        worker job is written in the same atomic step.
        """
        record = await self.engine.tasks.create(
            task_id=task_id,
            ttl_ms=metadata.ttl,
            owner=owner,
            session=session,
            tool=tool,
            arguments=arguments,
            progress_token=progress_token,
            dispatch=dispatch,
            # Listed store-wide (the SDK's handler lists all, then filters) and by owner or session.
            index=[
                ListScope(),
                *([ListScope(owner=owner)] if owner else []),
                *([ListScope(session=session)] if session else []),
            ],
        )
        return self._task(record)

    async def get_task(self, task_id: str) -> Task | None:
        record = await self.engine.tasks.get(task_id)
        return None if record is None else self._task(record)

    async def update_task(
        self,
        task_id: str,
        status: WireStatus | None = None,
        status_message: str | None = None,
    ) -> Task:
        """Change status and/or message atomically.

        Raises TaskNotFound, InvalidTransition, or TaskIsTerminal for *any* change to a finished
        task (even its message, even to the same status) - all ValueErrors.
        """
        await self.engine.tasks.update(task_id, status=status, message=status_message, fence=self._fence)
        return self._task(await self._read(task_id))

    async def store_result(self, task_id: str, result: Result) -> None:
        """Store the result without finishing the task (the SDK's TaskContext.complete then
        calls update_task(completed)). Refused on a finished task; prefer `complete`, which does
        both in one step."""
        await self.engine.tasks.update(task_id, result=result_to_json(result), fence=self._fence)

    async def get_result(self, task_id: str) -> Result | None:
        record = await self.engine.tasks.get(task_id)
        if record is None or record.result is None:
            return None
        return result_from_json(record.result)

    async def list_tasks(self, cursor: str | None = None) -> tuple[list[Task], str | None]:
        """One page by creation time, in the scope the ``scope`` hook names (all tasks if none).

        The cursor is opaque and stable while tasks are added; a malformed one raises
        InvalidCursor (a ValueError).
        """
        scope = self._scope() if self._scope is not None else None
        page = await self.engine.tasks.list(
            scope=scope or ListScope(), cursor=cursor, newest_first=self._newest_first
        )
        return [self._task(r) for r in page.tasks], page.next_cursor

    async def delete_task(self, task_id: str) -> bool:
        return await self.engine.tasks.delete(task_id)

    async def wait_for_update(self, task_id: str) -> None:
        """Block until the task's status changes, in any process, or `notify_update` is called.

        Returns at once if the task is already finished (it can never change again, and the
        caller's read may predate the change) and when the task disappears. Events are raced
        against a bounded re-read, so a lost event costs at most `TaskLimits.recheck_ms`.
        """
        engine = self.engine
        await engine.events.ready()
        with engine.events.listen(task_id) as listener:
            record = await self._read(task_id)
            if record.is_terminal:
                return
            baseline = record.status
            while True:
                event = await listener.next(engine.limits.recheck_ms / 1000)
                if event is not None and event.get("k") == NUDGE_EVENT:
                    return
                updated = record.with_event(event) if event is not None else None
                if updated is None:
                    updated = await engine.tasks.get(task_id)
                if updated is None or updated.status != baseline:
                    return
                record = updated

    async def notify_update(self, task_id: str) -> None:
        """Wake every `wait_for_update` on the task, in every process (one PUBLISH)."""
        await self.engine.inbox.notify(task_id, NUDGE_EVENT)

    # -- atomic helpers for our own server and worker runtime -------------------------------

    async def complete(self, task_id: str, result: Result) -> Task:
        """Store the result and finish the task in one script.

        On the 2025 wire a tool result with ``isError: true`` makes the task ``failed`` (the
        record says completed with that result, as a worker writes it; `to_task` shows failed).
        Raises TaskIsTerminal if the task already finished (e.g. a cancel landed first).
        """
        data = result_to_json(result)
        await self.engine.tasks.update(task_id, status=TaskStatus.COMPLETED, result=data, fence=self._fence)
        return self._task(await self._read(task_id))

    async def fail(
        self,
        task_id: str,
        message: str,
        *,
        result: Result | None = None,
        error: ErrorData | Mapping[str, Any] | None = None,
    ) -> Task:
        """Fail the task with a message and optionally the result or JSON-RPC error to report."""
        error_data: Mapping[str, Any] | None
        if isinstance(error, ErrorData):
            error_data = error.model_dump(mode="json", exclude_none=True)
        else:
            error_data = error
        await self.engine.tasks.update(
            task_id,
            status=TaskStatus.FAILED,
            message=message,
            result=result_to_json(result) if result is not None else None,
            error=error_data,
            fence=self._fence,
        )
        return self._task(await self._read(task_id))

    async def cancel(self, task_id: str, message: str | None = None) -> Task:
        """Cancel an unfinished task; the stored result, if any, is dropped with it.

        Raises TaskIsTerminal if it already finished (the 2025 wire answers that with -32602).
        """
        await self.engine.tasks.cancel(task_id, message or "Cancelled")
        return self._task(await self._read(task_id))
