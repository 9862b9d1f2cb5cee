"""``tools/call`` for a registry tool: a task, an inline run, or a question first.

The server decides, per SEP-2663, from the tool's ``taskSupport`` and what the calling request
declared:

- a client that declared the extension gets a task for an ``optional`` or ``required`` tool: the
  record and its job are written before the flat ``CreateTaskResult`` is answered, so the id
  resolves on every replica at once, and a worker runs the tool;
- a client that did not gets the tool run here, inline, unless the tool can only run as a task
  (``required``): then -32021 with ``data.requiredCapabilities``. A ``forbidden`` tool always
  runs inline. The legacy ``params.task`` is ignored;
- a tool with a prepare step (engine/prepare.py) first asks the client what it needs, as an MRTR
  ``InputRequiredResult``, before any task exists; the retry carries the answers.
"""

from __future__ import annotations

from typing import Any

from mcp.server.context import HandlerResult, ServerRequestContext
from mcp.server.mcpserver import require_client_extension
from mcp.shared.exceptions import MCPError
from mcp_types import METHOD_NOT_FOUND, CallToolRequestParams, CallToolResult
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from mcp_tasks_redis.engine.admission import Admission, admit
from mcp_tasks_redis.engine.context import (
    ELICITATION_METHOD,
    CancellationToken,
    InlineBackend,
    InputUnavailable,
    RequestInfo,
    ToolContext,
)
from mcp_tasks_redis.engine.errors import QuotaExceeded, TaskError
from mcp_tasks_redis.engine.outcome import Outcome, error_result, from_exception, to_result
from mcp_tasks_redis.engine.policy import PolicyError
from mcp_tasks_redis.engine.prepare import NeedInput, Preparation, run_prepare
from mcp_tasks_redis.engine.registry import InvalidArguments, Services, ToolSpec
from mcp_tasks_redis.engine.tasks import to_json
from mcp_tasks_redis.mcp_v2.convert import create_task_result, declares_tasks, input_kinds
from mcp_tasks_redis.mcp_v2.identity import current_owner
from mcp_tasks_redis.mcp_v2.protocol import EXTENSION_ID
from mcp_tasks_redis.mcp_v2.state import TasksState, dump, invalid_params


async def call_tool(
    state: TasksState, spec: ToolSpec, params: CallToolRequestParams, ctx: ServerRequestContext[Any, Any]
) -> HandlerResult:
    capabilities = ctx.session.client_capabilities
    modern = ctx.protocol_version in MODERN_PROTOCOL_VERSIONS
    declared = modern and declares_tasks(capabilities, EXTENSION_ID)
    if spec.task_support == "required" and not declared:
        if not modern:  # the 2025-11-25 rule: a plain call to a task-only tool
            raise MCPError(code=METHOD_NOT_FOUND, message=f"Tool {spec.name!r} must be called as a task")
        require_client_extension(ctx, EXTENSION_ID)  # raises -32021 with requiredCapabilities
    as_task = declared and spec.task_support != "forbidden"

    # The JSON the client sent is what a task stores and a worker validates again.
    arguments: dict[str, Any] = dict(params.arguments or {})
    try:
        size = len(to_json(arguments, "Tool arguments").encode())
    except QuotaExceeded as e:
        raise MCPError(code=e.code, message=str(e), data=e.data) from None
    except TaskError as e:
        raise invalid_params(str(e)) from None
    if size > state.max_argument_bytes:
        raise invalid_params(
            f"Arguments of {spec.name!r} are {size} bytes, over the limit of {state.max_argument_bytes} bytes"
        )
    try:
        validated = spec.validate_arguments(arguments)
    except InvalidArguments as e:
        return tool_result(error_result(str(e)))  # what a plain call answers: a tool error

    prepared: dict[str, Any] = {}
    if spec.prepare is not None:
        answers = {key: dump(value) for key, value in (params.input_responses or {}).items()}
        try:
            outcome = await run_prepare(spec.prepare, Preparation(spec.name, arguments, answers))
        except Exception as e:
            return _answer(from_exception(e))
        if isinstance(outcome, NeedInput):
            return {"resultType": "input_required", "inputRequests": outcome.requests}
        prepared = outcome

    if not as_task:
        return await _run_inline(state, spec, validated, prepared, ctx)
    # What the worker must respect: the input kinds this client can answer, and what the
    # prepare step gathered.
    admission = admitted(state, spec, params)
    meta: dict[str, Any] = {**admission.meta, "input": input_kinds(capabilities)}
    if prepared:
        meta["prepared"] = prepared
    try:
        record = await state.engine.tasks.create(
            tool=spec.name,
            arguments=arguments,
            owner=current_owner(),
            meta=meta,
            priority=admission.priority,
            dispatch=True,
            index=(),
        )
    except QuotaExceeded as e:
        raise MCPError(code=e.code, message=str(e), data=e.data) from None
    except TaskError as e:
        raise invalid_params(str(e)) from None
    return create_task_result(record, state.poll_interval_ms)


def admitted(state: TasksState, spec: ToolSpec, params: CallToolRequestParams) -> Admission:
    """The call's priority and job facts; -32602 for a priority hint the server does not know."""
    try:
        return admit(spec, state.engine.limits, dict(params.meta or {}))
    except PolicyError as e:
        raise invalid_params(str(e)) from None


async def _run_inline(
    state: TasksState,
    spec: ToolSpec,
    kwargs: dict[str, Any],
    prepared: dict[str, Any],
    ctx: ServerRequestContext[Any, Any],
) -> HandlerResult:
    """Run the tool in this process and answer its result (progress goes on the request itself
    when the client sent a progress token)."""
    session = ctx.session

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        await session.report_progress(progress, total, message)

    async def on_input(method: str, params: dict[str, Any]) -> dict[str, Any]:
        # Only a handshake-era connection can carry a server's request; the 2026 wire asks
        # through tasks (inputRequests) or a prepare step (MRTR) instead.
        if method != ELICITATION_METHOD or not session.can_send_request:
            raise InputUnavailable(method)
        result = await session.elicit_form(
            str(params.get("message") or ""), params.get("requestedSchema") or {}
        )
        return dump(result)

    request = RequestInfo(
        task_id=None,
        owner=current_owner(),
        session=None,
        progress_token=None,
        tool=spec.name,
        prepared=prepared,
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
        return _answer(from_exception(e))
    return tool_result(to_result(value))


def tool_result(result: dict[str, Any]) -> CallToolResult:
    """CallToolResult JSON as the SDK's model (which carries the 2026 ``resultType``)."""
    return CallToolResult.model_validate(result, by_name=False)


def _answer(outcome: Outcome) -> CallToolResult:
    """What a plain call answers for an outcome: its result, or its JSON-RPC error raised."""
    if outcome.error is not None:
        raise MCPError(
            code=int(outcome.error["code"]),
            message=str(outcome.error["message"]),
            data=outcome.error.get("data"),
        )
    assert outcome.result is not None
    return tool_result(outcome.result)
