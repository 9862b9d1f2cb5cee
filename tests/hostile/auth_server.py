"""A server replica with bearer-token auth, for the isolation and failover suites.

    MCP_TEST_TOKENS='{"tok-a": {"client_id": "app", "subject": "alice"}}' \\
        python tests/hostile/auth_server.py

It is ``mcp-tasks-redis serve --transport streamable-http`` (same settings from the environment:
REDIS_URL, MCP_TASKS_NAMESPACE, MCP_TASKS_HOST, MCP_TASKS_PORT, ...), built with
``http_app(..., token_verifier=StaticVerifier(...))``: the SDK's bearer auth middleware in front,
and a verifier that knows a fixed table of tokens (``MCP_TEST_TOKENS``: token -> client_id,
subject, scopes, iss). Any other token is refused with 401.

:func:`start_auth_server` starts one as a process of a test's :class:`Stack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = str(Path(__file__).resolve())
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mcp.server.auth.provider import AccessToken  # noqa: E402

ENV_TOKENS = "MCP_TEST_TOKENS"


class StaticVerifier:
    """A `TokenVerifier` over a fixed table: token -> {client_id, subject, scopes, iss}."""

    def __init__(self, tokens: dict[str, dict[str, Any]]) -> None:
        self.tokens = tokens

    async def verify_token(self, token: str) -> AccessToken | None:
        spec = self.tokens.get(token)
        if spec is None:
            return None
        claims = {"iss": spec["iss"]} if spec.get("iss") else None
        return AccessToken(
            token=token,
            client_id=spec["client_id"],
            scopes=list(spec.get("scopes", [])),
            subject=spec.get("subject"),
            claims=claims,
        )


async def serve() -> None:
    import uvicorn

    from mcp_tasks_redis.mcp_v1.host import http_app
    from mcp_tasks_redis.ops import logs
    from mcp_tasks_redis.ops.cli import load_app
    from mcp_tasks_redis.ops.processes import engine_from
    from mcp_tasks_redis.settings import Settings

    settings = Settings()
    logs.configure(settings.log_level, settings.log_format)
    registry = load_app(settings.app)
    engine = engine_from(settings)
    verifier = StaticVerifier(json.loads(os.environ.get(ENV_TOKENS, "{}")))
    app = http_app(registry, engine, settings, token_verifier=verifier)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level="warning", lifespan="on")
    try:
        await uvicorn.Server(config).serve()
    finally:
        await engine.close()


async def start_auth_server(
    stack: Any, name: str, tokens: dict[str, dict[str, Any]], **settings: str | int
) -> Any:
    """Start this script as a server replica of ``stack`` (a tests.integration.procs.Stack); it is
    returned once /health answers, and stopped with the stack."""
    from tests.integration.procs import ServerProcess, free_port

    port = free_port()
    env = stack.env(host="127.0.0.1", port=port, **settings)
    env[ENV_TOKENS] = json.dumps(tokens)
    argv = [sys.executable, SCRIPT]
    server = ServerProcess(name, argv, env, stack._log_path(name), port)
    stack.processes.append(server)
    await server.wait_healthy()
    return server


@contextlib.asynccontextmanager
async def bearer_session(url: str, token: str | None, **session_options: Any) -> AsyncIterator[Any]:
    """An initialized ``ClientSession`` over Streamable HTTP sending ``Authorization: Bearer``."""
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client

    headers = {"Authorization": f"Bearer {token}"} if token is not None else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        transport = streamablehttp_client(url, headers=headers)
    async with transport as (read, write, _), ClientSession(read, write, **session_options) as session:
        await session.initialize()
        yield session


if __name__ == "__main__":
    asyncio.run(serve())
