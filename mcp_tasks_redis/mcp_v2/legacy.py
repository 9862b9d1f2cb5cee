"""The 2025-11-25 Tasks wire (SEP-1686) for handshake-era clients of a 2.x server.

The 2.x SDK still negotiates 2025-11-25 with an older client (``initialize``), but it has no
tasks runtime and its result sieve turns a ``{task}`` answer to ``tools/call`` from a handler or
an extension interceptor into -32603. A server middleware owns what it returns, so this module
serves that wire from middleware and method bindings, over the same engine and workers:

- ``initialize``: advertises ``capabilities.tasks`` (``cancel``, ``requests.tools.call``; no
  ``list``, which the spec says not to offer without auth binding) on 2025-11-25 only;
- ``tools/list``: each registry tool's ``execution.taskSupport``;
- ``tools/call`` with ``params.task``: the task is written, ``{task}`` answered (a ``forbidden``
  tool: -32601; a ``required`` tool called plainly: -32601); a prepare step asks its questions
  with ``elicitation/create`` on the call itself, before the task exists;
- ``tasks/get``, ``tasks/cancel`` (-32602 for a finished task) and the blocking ``tasks/result``,
  which sends the task's input requests to the client on its own stream and hands each answer
  to the waiting worker through Redis. A tool result with ``isError: true`` is ``failed`` here;
- what the connection hears about the tasks it created or asked about, as on the 1.x wire
  (legacy_relay.py): ``notifications/tasks/status`` on every status or statusMessage change,
  ``notifications/progress`` for a call that sent a progressToken, and the tasks' input requests
  on the connection's stream, for clients that only poll ``tasks/get`` (FastMCP 3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator
from typing import Any, cast

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.session import ServerSession
from mcp.shared.exceptions import MCPError
from mcp.shared.message import ServerMessageMetadata
from mcp_types import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    CallToolRequestParams,
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    ElicitRequest,
    ElicitRequestFormParams,
    ElicitResult,
    RequestId,
)

from mcp_tasks_redis.engine.errors import QuotaExceeded, TaskError, TaskIsTerminal, TaskNotFound
from mcp_tasks_redis.engine.prepare import NeedInput, Preparation, run_prepare
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from mcp_tasks_redis.engine.registry import InvalidArguments, ToolSpec
from mcp_tasks_redis.engine.tasks import new_task_id, to_json
from mcp_tasks_redis.mcp_v2.calls import admitted
from mcp_tasks_redis.mcp_v2.convert import failure, input_kinds, iso
from mcp_tasks_redis.mcp_v2.identity import current_owner
from mcp_tasks_redis.mcp_v2.legacy_relay import LegacyRelay, LegacyRelays, ask_and_store, legacy_status
from mcp_tasks_redis.mcp_v2.state import TasksState, dump, invalid_params

LEGACY_VERSION = "2025-11-25"
RELATED_TASK = "io.modelcontextprotocol/related-task"
CAPABILITY: dict[str, Any] = {"cancel": {}, "requests": {"tools": {"call": {}}}}
PREPARE_ROUNDS = 8


def legacy_task(record: TaskRecord, poll_interval_ms: int) -> dict[str, Any]:
    """The 2025-11-25 ``Task``: ``ttl``/``pollInterval``, and a tool error is ``failed``."""
    task: dict[str, Any] = {
        "taskId": record.task_id,
        "status": legacy_status(record),
        "createdAt": iso(record.created_at),
        "lastUpdatedAt": iso(record.updated_at),
        "ttl": record.ttl_ms,
        "pollInterval": poll_interval_ms,
    }
    if record.status_message is not None:
        task["statusMessage"] = record.status_message
    return task


def relays(state: TasksState) -> LegacyRelays:
    """The process's relays to handshake-era connections, made on first use."""
    if state.legacy_relays is None:
        state.legacy_relays = LegacyRelays(
            state, ask, lambda record: legacy_task(record, state.poll_interval_ms)
        )
    return state.legacy_relays


class LegacyTasks:
    """The server middleware serving the 2025-11-25 parts that only a middleware can answer."""

    def __init__(self, state: TasksState) -> None:
        self.state = state

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "initialize":
            result = await call_next(ctx)
            if isinstance(result, dict) and result.get("protocolVersion") == LEGACY_VERSION:
                capabilities = cast(dict[str, Any], result.setdefault("capabilities", {}))
                capabilities["tasks"] = CAPABILITY
            return result
        if ctx.protocol_version != LEGACY_VERSION:
            return await call_next(ctx)
        if ctx.method == "tools/list":
            return self._with_task_support(await call_next(ctx))
        if ctx.method == "tools/call":
            params: dict[str, Any] = dict(ctx.params or {})
            spec = self.state.registry.get(str(params.get("name")))
            if spec is not None:
                if params.get("task") is not None:
                    return await self._create(spec, ctx)
                if spec.task_support == "required":
                    raise MCPError(
                        code=METHOD_NOT_FOUND, message=f"Tool {spec.name!r} must be called as a task"
                    )
        return await call_next(ctx)

    def _with_task_support(self, result: HandlerResult) -> HandlerResult:
        if isinstance(result, dict):
            for tool in cast(list[dict[str, Any]], result.get("tools") or []):
                spec = self.state.registry.get(str(tool.get("name")))
                if spec is not None:
                    tool["execution"] = {"taskSupport": spec.task_support}
        return result

    async def _create(self, spec: ToolSpec, ctx: ServerRequestContext[Any, Any]) -> dict[str, Any]:
        if spec.task_support == "forbidden":
            raise MCPError(
                code=METHOD_NOT_FOUND, message=f"Tool {spec.name!r} does not support task-augmented calls"
            )
        params = CallToolRequestParams.model_validate(ctx.params or {}, by_name=False)
        arguments: dict[str, Any] = dict(params.arguments or {})
        try:
            size = len(to_json(arguments, "Tool arguments").encode())
            if size > self.state.max_argument_bytes:
                raise invalid_params(f"Arguments of {spec.name!r} are {size} bytes, over the limit")
            spec.validate_arguments(arguments)
        except (TaskError, InvalidArguments) as e:
            raise invalid_params(str(e)) from None
        capabilities = ctx.session.client_capabilities
        meta: dict[str, Any] = {"input": input_kinds(capabilities)}
        if spec.prepare is not None:
            meta["prepared"] = await self._prepare(spec, arguments, ctx)
        ttl = params.task.ttl if params.task is not None else None
        admission = admitted(self.state, spec, params)
        token: Any = dict(cast(dict[str, Any], (ctx.params or {}).get("_meta") or {})).get("progressToken")
        engine, task_id = self.state.engine, new_task_id()
        await engine.events.ready()
        relay = relays(self.state).of(ctx)
        # The relay hears the task's events from before it exists: a worker may finish it before
        # this handler resumes after the create.
        with relay.reading(task_id) if relay is not None else contextlib.nullcontext():
            try:
                record = await engine.tasks.create(
                    task_id=task_id,
                    fresh_id=True,
                    tool=spec.name,
                    arguments=arguments,
                    ttl_ms=ttl,
                    owner=current_owner(),
                    progress_token=token if isinstance(token, str | int) else None,
                    meta={**admission.meta, **meta},
                    priority=admission.priority,
                    dispatch=True,
                    index=(),
                )
            except QuotaExceeded as e:
                raise MCPError(code=e.code, message=str(e), data=e.data) from None
            except TaskError as e:
                raise invalid_params(str(e)) from None
            if relay is not None:
                relay.follow(record, from_start=True)
        return {"task": legacy_task(record, self.state.poll_interval_ms)}

    async def _prepare(
        self, spec: ToolSpec, arguments: dict[str, Any], ctx: ServerRequestContext[Any, Any]
    ) -> Any:
        """A prepare step's questions, asked on the call itself (this wire has server requests)."""
        assert spec.prepare is not None
        answers: dict[str, Any] = {}
        for _ in range(PREPARE_ROUNDS):
            try:
                outcome = await run_prepare(spec.prepare, Preparation(spec.name, arguments, answers))
            except Exception as e:
                raise invalid_params(f"Tool {spec.name!r} could not start: {e}") from None
            if not isinstance(outcome, NeedInput):
                return outcome
            for key, request in outcome.requests.items():
                answers[key] = await ask(ctx.session, request, None, ctx.request_id)
        raise invalid_params(f"Tool {spec.name!r} kept asking before it could start")


async def ask(
    session: ServerSession,
    request: dict[str, Any],
    task_id: str | None,
    related_request_id: RequestId | None,
) -> dict[str, Any]:
    """Send one input request to the client, on the stream of request ``related_request_id``
    (None: the connection's standalone stream); its JSON result."""
    params = dict(request.get("params") or {})
    if task_id is not None:
        params["_meta"] = {**(params.get("_meta") or {}), RELATED_TASK: {"taskId": task_id}}
    metadata = ServerMessageMetadata(related_request_id=related_request_id) if related_request_id else None
    method = request.get("method")
    if method == "elicitation/create":
        elicit = ElicitRequest(params=ElicitRequestFormParams.model_validate(params, by_name=False))
        return dump(await session.send_request(elicit, ElicitResult, metadata=metadata))
    if method == "sampling/createMessage":
        sample = CreateMessageRequest(params=CreateMessageRequestParams.model_validate(params, by_name=False))
        return dump(await session.send_request(sample, CreateMessageResult, metadata=metadata))
    raise MCPError(code=METHOD_NOT_FOUND, message=f"{method} cannot be sent to this client")


async def get_task(state: TasksState, ctx: ServerRequestContext[Any, Any], task_id: str) -> dict[str, Any]:
    """The task, and from now on the connection hears about it (as on the 1.x wire)."""
    relay = relays(state).of(ctx)
    with relay.reading(task_id) if relay is not None else contextlib.nullcontext():
        record = await state.task_for_caller(task_id)
        if relay is not None:
            relay.follow(record, from_start=False)
    return legacy_task(record, state.poll_interval_ms)


async def cancel_task(state: TasksState, record: TaskRecord) -> dict[str, Any]:
    """Cancel, or -32602 for a task that already finished (this wire's rule)."""
    try:
        if record.is_terminal:
            raise TaskIsTerminal(record.task_id, record.status.value, "cancelled")
        await state.engine.tasks.cancel(record.task_id, "Cancelled by the client", tool=record.tool)
    except TaskIsTerminal:
        current = legacy_task(await _reread(state, record), state.poll_interval_ms)["status"]
        raise invalid_params(f"Cannot cancel task: already in terminal status '{current}'") from None
    except TaskNotFound:
        raise invalid_params(f"Task not found: {record.task_id}") from None
    cancelled = await _reread(state, record)
    return legacy_task(cancelled, state.poll_interval_ms)


async def _reread(state: TasksState, record: TaskRecord) -> TaskRecord:
    return await state.engine.tasks.get(record.task_id) or record


async def task_result(
    state: TasksState, record: TaskRecord, ctx: ServerRequestContext[Any, Any]
) -> dict[str, Any]:
    """Wait until the task ends, asking its input requests meanwhile (those the connection has
    not been sent yet); what ``tools/call`` would have answered, with the related-task ``_meta``
    (or the same JSON-RPC error)."""
    task_id = record.task_id
    relay, session = relays(state).of(ctx), ctx.session
    asked: set[str] = set()
    final: TaskRecord | None = None

    def first_time(key: str) -> bool:
        if key in asked:
            return False
        asked.add(key)
        return relay is None or relay.claim_input(task_id, key)

    async with anyio.create_task_group() as tg:

        async def on_record(current: TaskRecord | None) -> None:
            if current is not None and relay is not None:
                relay.follow(current, from_start=False)
            for key, request in (current.input_requests if current is not None else {}).items():
                if first_time(key):
                    tg.start_soon(ask_and_store, state, ask, session, task_id, key, request, ctx.request_id)

        with _reading(relay, task_id):
            final = await state.engine.wait_until(
                task_id, lambda r: r is None or r.is_terminal, on_record=on_record
            )
        tg.cancel_scope.cancel()
    if final is None:
        raise invalid_params(f"Task not found: {task_id}")
    meta = {RELATED_TASK: {"taskId": task_id}}
    if final.status is TaskStatus.CANCELLED:
        raise MCPError(code=INTERNAL_ERROR, message=f"Task {task_id} was cancelled", data={"_meta": meta})
    if final.result is not None:
        return {**final.result, "_meta": {**(final.result.get("_meta") or {}), **meta}}
    error = failure(final)
    raise MCPError(code=int(error["code"]), message=str(error["message"]), data=error.get("data"))


@contextlib.contextmanager
def _reading(relay: LegacyRelay | None, task_id: str) -> Generator[None]:
    if relay is None:
        yield
        return
    with relay.reading(task_id):
        yield
