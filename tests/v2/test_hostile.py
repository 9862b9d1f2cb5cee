"""Hostile ``tasks/get|update|cancel`` requests get their defined JSON-RPC error and write nothing.

One server replica, no worker (nothing needs to run): a task is created, then each malformed or
mismatched request goes through a real `mcp` 2.x client session, and the namespace's Redis
content is compared before and after. Another owner's task must look exactly like a missing one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.integration.stack", "tests.v2.clients")

from mcp.client.client import Client  # noqa: E402
from mcp.server.auth.middleware.auth_context import auth_context_var  # noqa: E402
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser  # noqa: E402
from mcp.server.auth.provider import AccessToken  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402
from mcp_types import HEADER_MISMATCH, INVALID_PARAMS, METHOD_NOT_FOUND  # noqa: E402
from redis.asyncio import Redis  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.mcp_v2.client import TasksClientExtension, cancel_task, get_task, update_task  # noqa: E402
from mcp_tasks_redis.mcp_v2.protocol import CreateTaskResult  # noqa: E402
from mcp_tasks_redis.mcp_v2.server import build_server  # noqa: E402
from tests.integration.stack import Stack  # noqa: E402
from tests.v2.clients import RawRequest, RawTaskRequest, namespace_state, tasks_client  # noqa: E402
from workers.conformance import app  # noqa: E402

pytest_plugins = ["tests.integration.stack"]

HUGE = "x" * 100_000


def raw(method: str, params: Any) -> RawRequest:
    return RawRequest(method=method, params=params)


def named(method: str, params: dict[str, Any]) -> RawTaskRequest:
    return RawTaskRequest(method=method, params=params)


HOSTILE: list[tuple[str, Any, int]] = [
    # params that are not what the method takes: invalid params
    ("tasks/get", raw("tasks/get", {}), INVALID_PARAMS),
    ("tasks/get", raw("tasks/get", {"taskId": 12345}), INVALID_PARAMS),
    ("tasks/get", raw("tasks/get", {"taskId": None}), INVALID_PARAMS),
    ("tasks/cancel", raw("tasks/cancel", {"taskId": ["a", "b"]}), INVALID_PARAMS),
    ("tasks/update", raw("tasks/update", {"taskId": {"$ne": ""}, "inputResponses": {}}), INVALID_PARAMS),
    # unknown, malformed or oversized ids: the same "not found" as any unknown task
    ("tasks/get", named("tasks/get", {"taskId": "no-such-task"}), INVALID_PARAMS),
    ("tasks/get", named("tasks/get", {"taskId": "../../etc/passwd"}), INVALID_PARAMS),
    ("tasks/get", named("tasks/get", {"taskId": "*"}), INVALID_PARAMS),
    ("tasks/cancel", named("tasks/cancel", {"taskId": "no-such-task"}), INVALID_PARAMS),
    ("tasks/cancel", named("tasks/cancel", {"taskId": "a" * 4000}), INVALID_PARAMS),
    (
        "tasks/update",
        named("tasks/update", {"taskId": "no-such-task", "inputResponses": {"k": {}}}),
        INVALID_PARAMS,
    ),
    # the routing header must name the task in the body
    ("tasks/get", raw("tasks/get", {"taskId": "some-task"}), HEADER_MISMATCH),
    # methods that do not exist on this wire
    ("tasks/result", named("tasks/result", {"taskId": "some-task"}), METHOD_NOT_FOUND),
    ("tasks/list", raw("tasks/list", {}), METHOD_NOT_FOUND),
]


@pytest.mark.slow
@pytest.mark.timeout(60)
async def test_hostile_task_requests_get_defined_errors_and_write_nothing(
    stack: Stack, redis: Redis, namespace: str
) -> None:
    stack.configure(app="workers.conformance:app")
    server = await stack.start_server()
    async with tasks_client(server.url) as client:
        created = await client.session.call_tool("slow_compute", {"seconds": 5}, allow_claimed=True)
        assert isinstance(created, CreateTaskResult)
        task_id = created.task_id
        # Requests naming the real task, but malformed: the task must come out of them untouched.
        on_task: list[tuple[str, Any, int]] = [
            (
                "tasks/update",
                named("tasks/update", {"taskId": task_id, "inputResponses": "yes"}),
                INVALID_PARAMS,
            ),
            (
                "tasks/update",
                named("tasks/update", {"taskId": task_id, "inputResponses": {"k": 1}}),
                INVALID_PARAMS,
            ),
            (
                "tasks/update",
                named("tasks/update", {"taskId": task_id, "inputResponses": [1]}),
                INVALID_PARAMS,
            ),
            (
                "tasks/update",
                named("tasks/update", {"taskId": task_id, "inputResponses": {"k": {"v": HUGE * 20}}}),
                INVALID_PARAMS,
            ),
            ("tasks/cancel", raw("tasks/cancel", {"taskId": task_id}), HEADER_MISMATCH),
        ]
        before = await namespace_state(redis, namespace)
        assert any(task_id.encode() in key for key in before), before.keys()
        for method, request, code in HOSTILE + on_task:
            with pytest.raises(MCPError) as info:
                await client.session.send_request(request, dict[str, Any])
            assert info.value.error.code == code, (method, request.params, info.value.error)
        # Answers to keys the task never asked are acknowledged and ignored.
        await update_task(client.session, task_id, {"never-asked": {"action": "accept"}})
        assert await namespace_state(redis, namespace) == before
        assert (await get_task(client.session, task_id)).status == "working"


@contextlib.contextmanager
def authenticated_as(client_id: str, subject: str) -> Iterator[None]:
    token = AccessToken(
        token="t", client_id=client_id, scopes=[], subject=subject, claims={"iss": "https://idp"}
    )
    reset = auth_context_var.set(AuthenticatedUser(token))
    try:
        yield
    finally:
        auth_context_var.reset(reset)


async def test_another_owners_task_looks_missing_and_stays_untouched(engine: TaskEngine) -> None:
    server = build_server(app, engine)
    async with Client(server, extensions=[TasksClientExtension()]) as client:
        with authenticated_as("app", "alice"):
            created = await client.session.call_tool("slow_compute", {"seconds": 5}, allow_claimed=True)
            assert isinstance(created, CreateTaskResult)
        record = await engine.tasks.get(created.task_id)
        assert record is not None
        assert record.owner == "https://idp|app|alice"
        with authenticated_as("app", "mallory"):
            for ask in (get_task, cancel_task):
                with pytest.raises(MCPError) as info:
                    await ask(client.session, created.task_id)
                assert info.value.error.code == INVALID_PARAMS
                assert "Task not found" in info.value.error.message
            with pytest.raises(MCPError) as info:
                await update_task(client.session, created.task_id, {"k": {"action": "accept"}})
            assert info.value.error.code == INVALID_PARAMS
        with authenticated_as("app", "alice"):
            assert (await get_task(client.session, created.task_id)).status == "working"
        await engine.tasks.cancel(created.task_id)
