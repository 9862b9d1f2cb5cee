"""`tools/list` and `tools/call` for the 2025-11-25 wire.

A task-augmented call writes the task and its job before answering `CreateTaskResult`, so the id
resolves on every replica at once; the tool then runs on a worker. A plain call runs the tool in
this process and answers its result, relaying its progress on the request itself.
"""

from __future__ import annotations

from typing import Any

from mcp.server.session import ServerSession
from mcp.shared.exceptions import McpError
from mcp.types import (
    INVALID_PARAMS,
    METHOD_NOT_FOUND,
    CallToolRequest,
    CreateTaskResult,
    ElicitRequestFormParams,
    ErrorData,
    ListToolsRequest,
    ListToolsResult,
    ServerResult,
    Tool,
    ToolExecution,
)

from mcp_tasks_redis.engine.admission import Admission, admit
from mcp_tasks_redis.engine.context import CancellationToken, InlineBackend, RequestInfo, ToolContext
from mcp_tasks_redis.engine.errors import QuotaExceeded, TaskError
from mcp_tasks_redis.engine.outcome import from_exception, to_result
from mcp_tasks_redis.engine.policy import PolicyError
from mcp_tasks_redis.engine.record import TaskRecord
from mcp_tasks_redis.engine.registry import InvalidArguments, Services, ToolSpec
from mcp_tasks_redis.engine.tasks import new_task_id, to_json
from mcp_tasks_redis.engine.telemetry.tracing import request_span
from mcp_tasks_redis.mcp_v1.convert import call_tool_result, error_data, to_task, tool_error
from mcp_tasks_redis.mcp_v1.identity import current_owner, session_id
from mcp_tasks_redis.mcp_v1.input_requests import input_capabilities
from mcp_tasks_redis.mcp_v1.state import ServerState

TASKS_PROTOCOL_VERSION = "2025-11-25"


def to_tool(spec: ToolSpec) -> Tool:
    return Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        inputSchema=spec.input_schema,
        outputSchema=spec.output_schema,
        execution=ToolExecution(taskSupport=spec.task_support),
    )


def register(state: ServerState) -> None:
    async def list_tools(_: ListToolsRequest) -> ServerResult:
        return ServerResult(ListToolsResult(tools=[to_tool(spec) for spec in state.registry]))

    async def call_tool(request: CallToolRequest) -> ServerResult:
        # The 1.x SDK traces nothing: the request's span is ours (2.x makes the same one itself).
        ctx = state.server.request_context
        meta = ctx.meta.model_dump(by_alias=True) if ctx.meta is not None else None
        with request_span("tools/call", request.params.name, meta):
            return await _call_tool(state, request)

    state.server.request_handlers[ListToolsRequest] = list_tools
    state.server.request_handlers[CallToolRequest] = call_tool


def _invalid(message: str) -> McpError:
    return McpError(ErrorData(code=INVALID_PARAMS, message=message))


async def _call_tool(state: ServerState, request: CallToolRequest) -> ServerResult:
    params = request.params
    spec = state.registry.get(params.name)
    if spec is None:
        raise _invalid(f"Unknown tool: {params.name!r}")
    session = state.session()
    client = session.client_params
    # A client on an older protocol never heard of tasks: it gets normal processing.
    negotiated = client is None or str(client.protocolVersion) >= TASKS_PROTOCOL_VERSION
    as_task = params.task is not None and negotiated
    if as_task and spec.task_support == "forbidden":
        raise McpError(
            ErrorData(
                code=METHOD_NOT_FOUND, message=f"Tool {spec.name!r} does not support task-augmented calls"
            )
        )
    if not as_task and spec.task_support == "required" and negotiated:
        raise McpError(
            ErrorData(
                code=METHOD_NOT_FOUND, message=f"Tool {spec.name!r} must be called as a task (params.task)"
            )
        )
    # The JSON the client sent is what a task stores and a worker validates again: validated
    # values (datetimes, models, sets) need not survive a JSON round trip.
    arguments: dict[str, Any] = dict(params.arguments or {})
    try:
        size = len(to_json(arguments, "Tool arguments").encode())
    except QuotaExceeded as e:
        raise McpError(ErrorData(code=e.code, message=str(e), data=e.data)) from None
    except TaskError as e:
        raise _invalid(str(e)) from None
    if size > state.max_argument_bytes:
        raise _invalid(
            f"Arguments of {spec.name!r} are {size} bytes, over the limit of {state.max_argument_bytes} bytes"
        )
    try:
        validated = spec.validate_arguments(arguments)
    except InvalidArguments as e:
        if as_task:
            raise _invalid(str(e)) from None
        return ServerResult(tool_error(str(e)))

    ctx = state.server.request_context
    token = ctx.meta.progressToken if ctx.meta is not None else None
    if not as_task:
        return ServerResult(await _run_inline(state, spec, validated, token))
    assert params.task is not None
    call_meta = ctx.meta.model_dump(by_alias=True) if ctx.meta is not None else None
    try:
        admission = admit(spec, state.engine.limits, call_meta)
    except PolicyError as e:
        raise _invalid(str(e)) from None
    await state.engine.events.ready()
    relay, task_id = state.relay, new_task_id()
    # The relay hears the task's events from before it exists: a worker may finish it before
    # this handler resumes after the create.
    with relay.reading(task_id):
        record = await _create(state, session, spec, params.task.ttl, arguments, token, task_id, admission)
        relay.follow(record, from_start=True)
    return ServerResult(CreateTaskResult(task=to_task(record, state.poll_interval_ms)))


async def _create(
    state: ServerState,
    session: ServerSession,
    spec: ToolSpec,
    ttl_ms: int | None,
    arguments: dict[str, Any],
    token: str | int | None,
    task_id: str,
    admission: Admission,
) -> TaskRecord:
    client = session.client_params
    try:
        return await state.engine.tasks.create(
            task_id=task_id,
            fresh_id=True,
            ttl_ms=ttl_ms,
            owner=current_owner(),
            session=session_id(session),
            tool=spec.name,
            arguments=arguments,
            progress_token=token,
            meta={**admission.meta, "input": input_capabilities(client.capabilities if client else None)},
            priority=admission.priority,
            dispatch=True,
        )
    except QuotaExceeded as e:
        raise McpError(ErrorData(code=e.code, message=str(e), data=e.data)) from None
    except TaskError as e:
        raise _invalid(str(e)) from None


async def _run_inline(
    state: ServerState, spec: ToolSpec, kwargs: dict[str, Any], token: str | int | None
) -> Any:
    ctx = state.server.request_context
    session = ctx.session

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if token is not None:
            await session.send_progress_notification(
                token, progress, total, message, related_request_id=str(ctx.request_id)
            )

    async def on_input(method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method != "elicitation/create":
            raise _invalid(f"{method} is only available to tools run as tasks")
        elicit = ElicitRequestFormParams.model_validate(params)
        result = await session.elicit(
            elicit.message, elicit.requestedSchema, related_request_id=ctx.request_id
        )
        return result.model_dump(mode="json", by_alias=True, exclude_none=True)

    request = RequestInfo(
        task_id=None, owner=current_owner(), session=session_id(session), progress_token=token, tool=spec.name
    )
    context = ToolContext.create(
        InlineBackend(on_progress, on_input),
        request,
        CancellationToken(),
        min_interval=state.progress_min_interval,
    )
    try:
        value = await spec.invoke_validated(kwargs, Services.from_context(context))
    except Exception as e:
        outcome = from_exception(e)
        if outcome.error is not None:
            error = error_data(outcome.error, str(e))
            raise McpError(error) from None
        assert outcome.result is not None
        return call_tool_result(outcome.result)
    return call_tool_result(to_result(value))
