"""`build_server`: an ``MCPServer`` serving one registry's tools as SEP-2663 tasks run by workers.

What ``mcp-tasks-redis serve`` runs on ``mcp`` 2.x; any number of replicas built this way over
the same Redis and namespace are interchangeable.
"""

from __future__ import annotations

from typing import Any

from mcp.server.auth.provider import TokenVerifier
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v2.extension import TasksExtension

# Required by the SDK's auth settings; only a resource server is built here (no auth routes).
RESOURCE_SERVER_ISSUER = "http://127.0.0.1"


def build_server(
    registry: ToolRegistry,
    engine: TaskEngine,
    *,
    max_argument_bytes: int = 1_000_000,
    progress_min_interval: float = 0.1,
    token_verifier: TokenVerifier | None = None,
    required_scopes: list[str] | None = None,
) -> MCPServer[Any]:
    """With a ``token_verifier``, every MCP request needs a valid bearer token, and tasks are bound
    to the token's issuer, client id and subject."""
    bus = InMemorySubscriptionBus()
    tasks = TasksExtension(
        engine,
        registry,
        max_argument_bytes=max_argument_bytes,
        progress_min_interval=progress_min_interval,
        subscriptions=bus,
    )
    auth = None
    if token_verifier is not None:
        auth = AuthSettings.model_validate(
            {
                "issuer_url": RESOURCE_SERVER_ISSUER,
                "resource_server_url": None,
                "required_scopes": required_scopes,
            }
        )
    return MCPServer(
        registry.name,
        version=registry.version,
        instructions=registry.instructions,
        extensions=[tasks],
        middleware=tasks.middleware,
        subscriptions=bus,
        auth=auth,
        token_verifier=token_verifier,
        log_level="WARNING",
    )
