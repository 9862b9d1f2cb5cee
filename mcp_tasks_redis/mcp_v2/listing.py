"""A registry's tools as `MCPServer` tools, so that ``tools/list`` shows them.

An extension contributes tools as functions, whose signature the server turns into the input
schema. Each registry tool is listed through a stand-in with the tool's own signature minus the
parameters the runtime injects (``ToolContext``, ``ProgressReporter`` ...). The stand-in never
runs: the extension's ``tools/call`` interceptor serves every registry tool itself.
"""

from __future__ import annotations

import inspect
import typing
from typing import Any

from mcp.server.extension import ToolBinding
from mcp.shared.exceptions import MCPError
from mcp_types import INTERNAL_ERROR

from mcp_tasks_redis.engine.registry import ToolSpec


def tool_binding(spec: ToolSpec) -> ToolBinding:
    hints = typing.get_type_hints(spec.fn, include_extras=True)
    injected = spec.injected
    parameters = [
        parameter.replace(annotation=hints.get(parameter.name, Any))
        for parameter in inspect.signature(spec.fn).parameters.values()
        if parameter.name not in injected
    ]
    structured = spec.output_schema is not None
    returns: Any = hints.get("return", Any) if structured else str

    async def stand_in(**_: Any) -> Any:
        raise MCPError(code=INTERNAL_ERROR, message=f"Tool {spec.name!r} is served by the tasks extension")

    stand_in.__name__ = spec.name
    stand_in.__doc__ = spec.description
    stand_in.__signature__ = inspect.Signature(parameters, return_annotation=returns)  # pyright: ignore[reportFunctionMemberAccess]
    stand_in.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": returns}
    kwargs: dict[str, Any] = {
        "name": spec.name,
        "title": spec.title,
        "description": spec.description,
        "structured_output": structured,
    }
    return ToolBinding(stand_in, kwargs=kwargs)
