"""A tool registry for the result-size tests: ``echo`` returns its text as the tool result.

Servers and workers load it with ``MCP_TASKS_APP=tests.hostile.limits_app:app`` (the repository
root on PYTHONPATH).
"""

from __future__ import annotations

from mcp_tasks_redis.engine.registry import ToolRegistry

app = ToolRegistry("limits-test", instructions="Tools for the size-limit tests.")


@app.tool(task_support="optional")
async def echo(text: str) -> str:
    """Return ``text`` as the result."""
    return text
