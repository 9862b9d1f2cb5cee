"""Helpers of the hostile suites: an in-process MCP server driven from synchronous (hypothesis)
tests, raw JSON-RPC over Streamable HTTP, and snapshots of a namespace's keys and values.

:class:`InProcessMCP` runs ``build_server`` on the test's Redis and client sessions connected to it
in memory (``mcp.shared.memory``), on an event loop in a background thread: each hypothesis example
is one synchronous call (:meth:`InProcessMCP.run`), so a failing example shrinks as usual.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

import httpx
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.shared.memory import create_connected_server_and_client_session
from redis import Redis as SyncRedis

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.mcp_v1.server import build_server

T = TypeVar("T")

PROTOCOL_VERSION = "2025-11-25"


class InProcessMCP:
    """``build_server(registry, engine)`` and ``sessions`` client sessions, in a background thread."""

    def __init__(
        self,
        redis_url: str,
        namespace: str,
        registry: ToolRegistry,
        *,
        sessions: int = 1,
        limits: TaskLimits | None = None,
        **server_options: Any,
    ) -> None:
        self.redis_url = redis_url
        self.namespace = namespace
        self.registry = registry
        self.n_sessions = sessions
        self.limits = limits
        self.server_options = server_options
        self.sessions: list[ClientSession] = []
        self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._thread_main, name="in-process MCP", daemon=True)

    def __enter__(self) -> InProcessMCP:
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("in-process MCP server did not start")
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # surfaced to the test by __enter__
            self._error = e
            self._ready.set()
        finally:
            # Background tasks of the server (notification relays of unfinished tasks) end here.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self.engine = TaskEngine.from_url(self.redis_url, namespace=self.namespace, limits=self.limits)
        server = build_server(self.registry, self.engine, **self.server_options)
        try:
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(self.n_sessions):
                    session = await stack.enter_async_context(
                        create_connected_server_and_client_session(server)
                    )
                    self.sessions.append(session)
                self._ready.set()
                await self._stop.wait()
        finally:
            with contextlib.suppress(Exception):
                await self.engine.close()

    def run(self, fn: Callable[[ClientSession], Awaitable[T]], *, session: int = 0, timeout: float = 30) -> T:
        """Run ``fn(session)`` on the server's loop and return its value (or raise its exception)."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(cast(Any, fn(self.sessions[session])), self.loop)
        return future.result(timeout)

    def call_error(
        self, fn: Callable[[ClientSession], Awaitable[Any]], *, session: int = 0
    ) -> McpError | Any:
        """Like :meth:`run`, but an McpError is returned instead of raised."""
        try:
            return self.run(fn, session=session)
        except McpError as e:
            return e


# -- Redis snapshots ----------------------------------------------------------------------------------


def read_value(client: SyncRedis, key: bytes) -> tuple[str, Any]:
    """(type, value) of one key, read by its type."""
    kind = cast(bytes, client.type(key)).decode()
    r = cast(Any, client)
    if kind == "string":
        return kind, r.get(key)
    if kind == "hash":
        return kind, r.hgetall(key)
    if kind == "list":
        return kind, r.lrange(key, 0, -1)
    if kind == "set":
        return kind, sorted(r.smembers(key))
    if kind == "zset":
        return kind, r.zrange(key, 0, -1, withscores=True)
    if kind == "stream":
        return kind, r.xrange(key)
    return kind, None


def snapshot(client: SyncRedis, namespace: str) -> dict[bytes, tuple[str, Any]]:
    """Every key of the namespace with its type and full value."""
    keys = [bytes(k) for k in cast(Any, client).scan_iter(match=f"{namespace}:*", count=1000)]
    return {key: read_value(client, key) for key in keys}


# -- raw JSON-RPC over Streamable HTTP ---------------------------------------------------------------


class RawClient:
    """JSON-RPC posts to a Streamable HTTP endpoint, with any params at all (the SDK's client only
    builds well-typed requests). Replies come as JSON or as an SSE stream; both are parsed."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.http = httpx.Client(timeout=30, follow_redirects=True)
        self.headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        self._next_id = 0

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if "mcp-session-id" in self.headers:
                self.http.delete(self.url, headers=self.headers)
        self.http.close()

    def initialize(self) -> dict[str, Any]:
        reply = self.request(
            "initialize",
            {
                "protocolVersion": PROTOCOL_VERSION,
                "capabilities": {"tasks": {"requests": {"elicitation": {"create": {}}}}},
                "clientInfo": {"name": "raw-fuzzer", "version": "0"},
            },
        )
        self.notify("notifications/initialized")
        return reply

    def post(self, body: Any) -> httpx.Response:
        response = self.http.post(self.url, content=json.dumps(body), headers=self.headers)
        session_id = response.headers.get("mcp-session-id")
        if session_id:
            self.headers["mcp-session-id"] = session_id
        return response

    def notify(self, method: str, params: Any = None) -> None:
        body: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            body["params"] = params
        self.post(body)

    def request(self, method: str, params: Any = None, *, omit_params: bool = False) -> dict[str, Any]:
        """The JSON-RPC response object (with "result" or "error") for one request."""
        self._next_id += 1
        body: dict[str, Any] = {"jsonrpc": "2.0", "id": self._next_id, "method": method}
        if not omit_params:
            body["params"] = params
        response = self.post(body)
        if response.status_code == 400:
            # A message that is not even a JSON-RPC request (params not an object...): the
            # transport answers 400 with a JSON-RPC error body.
            return cast(dict[str, Any], response.json())
        assert response.status_code == 200, (response.status_code, response.text[:500])
        return parse_reply(response, self._next_id)


def parse_reply(response: httpx.Response, request_id: int) -> dict[str, Any]:
    if response.headers.get("content-type", "").startswith("application/json"):
        return cast(dict[str, Any], response.json())
    for line in response.text.splitlines():
        if line.startswith("data:"):
            message = json.loads(line[5:])
            if isinstance(message, dict) and message.get("id") == request_id:
                return cast(dict[str, Any], message)
    raise AssertionError(f"no reply to request {request_id} in {response.text[:500]!r}")
