"""arq as an optional dispatcher (``pip install "mcp-tasks-redis[arq]"``), for teams that run arq.

The default dispatcher is the shards' Redis Streams (engine/streams.py). With ``MCP_TASKS_DISPATCHER
=arq`` the servers enqueue each new task as an arq job instead (`ArqDispatch`, written by the
create script together with the task), and arq workers run them through `ArqTasks`: a function
and startup/shutdown hooks that a team adds to its own ``WorkerSettings``. Task state, leases,
cancellation, progress and results stay the engine's, in its own keys. Jobs are JSON, never
pickle. arq has no Redis Cluster client: this dispatcher needs a single Redis (docs/arq.md).
arq pins redis-py below 6, so this extra runs on redis-py 5.x.
"""

from mcp_tasks_redis.arq_dispatch.jobs import (
    FUNCTION_NAME,
    ArqDispatch,
    json_deserializer,
    json_serializer,
    queue_name_for,
)
from mcp_tasks_redis.arq_dispatch.worker import CTX_KEY, ArqTasks

__all__ = [
    "CTX_KEY",
    "FUNCTION_NAME",
    "ArqDispatch",
    "ArqTasks",
    "json_deserializer",
    "json_serializer",
    "queue_name_for",
]
