"""The conformance fixture registry: ``--app workers.conformance:app``, what the official MCP
conformance suite's SEP-2663 tasks scenarios call (``tests/v2/test_conformance.py``).

The tools live in the library (`mcp_tasks_redis.examples.conformance`), so an installed package
serves them from any folder; this module is the repository's entry point for them.
"""

from mcp_tasks_redis.examples.conformance import (
    app,
    confirm_delete,
    failing_job,
    greet,
    multi_input,
    protocol_error_job,
    slow_compute,
    test_tool_with_task,
)

__all__ = [
    "app",
    "confirm_delete",
    "failing_job",
    "greet",
    "multi_input",
    "protocol_error_job",
    "slow_compute",
    "test_tool_with_task",
]
