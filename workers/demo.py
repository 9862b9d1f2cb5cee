"""The deployable demo registry: ``--app workers.demo:app`` (the compose file and the image use it).

The tools themselves live in the library (`mcp_tasks_redis.examples.demo`), so an installed
package runs them from any folder; this module is the repository's entry point for them and the
place to start a deployment's own tools from.
"""

from mcp_tasks_redis.examples.demo import (
    STEPS,
    app,
    ask_user,
    fail,
    greet,
    long_report,
    noop,
    slow_compute,
)

__all__ = ["STEPS", "app", "ask_user", "fail", "greet", "long_report", "noop", "slow_compute"]
