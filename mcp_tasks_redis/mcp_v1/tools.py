"""`tools/list` and `tools/call` for the 2025-11-25 wire.

A task-augmented call writes the task and its job before answering `CreateTaskResult`, so the id
resolves on every replica at once; the tool then runs on a worker. A plain call runs the tool in
this process and answers its result, relaying its progress on the request itself.
"""

from __future__ import annotations

from typing import Any

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

from mcp_tasks_redis.engine.context import CancellationToken, InlineBackend, RequestInfo, ToolContext
from mcp_tasks_redis.engine.errors import TaskError
from mcp_tasks_redis.engine.registry import InvalidArguments, Services, ToolSpec
from mcp_tasks_redis.engine.tasks import to_json
from mcp_tasks_redis.mcp_v1.convert import error_result, to_call_tool_result, to_task
from mcp_tasks_redis.mcp_v1.identity import current_owner, session_id
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
    arguments: dict[str, Any] = dict(params.arguments or {})
    # Measured as the task stores them (compact JSON, UTF-8), so the limit is the stored size.
    try:
        size = len(to_json(arguments, "Tool arguments").encode())
    except TaskError as e:
        raise _invalid(str(e)) from None
    if size > state.max_argument_bytes:
        raise _invalid(
            f"Arguments of {spec.name!r} are {size} bytes, over the limit of {state.max_argument_bytes} bytes"
        )
    try:
        arguments = spec.validate_arguments(arguments)
    except InvalidArguments as e:
        if as_task:
            raise _invalid(str(e)) from None
        return ServerResult(error_result(str(e)))

    ctx = state.server.request_context
    token = ctx.meta.progressToken if ctx.meta is not None else None
    if not as_task:
        return ServerResult(await _run_inline(state, spec, arguments, token))
    assert params.task is not None
    try:
        record = await state.engine.tasks.create(
            ttl_ms=params.task.ttl,
            owner=current_owner(),
            session=session_id(session),
            tool=spec.name,
            arguments=arguments,
            progress_token=token,
            dispatch=True,
        )
    except TaskError as e:
        raise _invalid(str(e)) from None
    state.relay.follow(session, record, from_start=True)
    return ServerResult(CreateTaskResult(task=to_task(record)))


async def _run_inline(
    state: ServerState, spec: ToolSpec, arguments: dict[str, Any], token: str | int | None
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
        value = await spec.invoke(arguments, Services.from_context(context))
    except McpError:
        raise
    except Exception as e:
        return error_result(str(e) or type(e).__name__)
    return to_call_tool_result(value)
