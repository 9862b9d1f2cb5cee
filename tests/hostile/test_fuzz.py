"""Hostile input: property-based fuzzing of tasks/get|result|list|cancel and tools/call params.

In process (``build_server`` on a real Redis, client sessions in memory), with hypothesis driving
well-typed but hostile values: unknown, malformed, huge and unicode task ids; malformed cursors,
including well-formed base64 JSON with the wrong things inside; negative and huge TTLs; invalid
tool arguments, unknown tools, task-support mismatches; arguments at and over the size limit.
Over real HTTP (a server process), raw JSON-RPC posts send what the SDK's client would refuse to
build: wrong types for every param, missing params, unknown methods.

Every rejected request gets the defined JSON-RPC error (-32602 invalid params, -32601 for a
task-support mismatch or an unknown method) or, for invalid arguments on a plain call, a tool
error naming the field; the server keeps serving (a valid request right after succeeds); and
nothing is written to Redis for a rejected request (the namespace's keys and values are the same
before and after). Oversized results are refused by the worker at its configured limit.

    .venv/bin/pytest tests/hostile/test_fuzz.py -s
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from mcp.shared.exceptions import McpError
from mcp.types import INVALID_PARAMS, METHOD_NOT_FOUND, CallToolResult, TextContent
from redis import Redis as SyncRedis

from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import to_result
from mcp_tasks_redis.engine.registry import InvalidArguments
from mcp_tasks_redis.engine.tasks import to_json
from mcp_tasks_redis.examples.demo import app as demo_app
from tests.hostile.harness import InProcessMCP, RawClient, snapshot

pytest_plugins = ["tests.integration.procs"]

pytestmark = [pytest.mark.timeout(180), pytest.mark.filterwarnings("ignore::DeprecationWarning")]

LIMITS = TaskLimits(min_ttl_ms=1_000, max_ttl_ms=86_400_000, default_ttl_ms=60_000)
ARG_LIMIT = 2048
FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

ID_ALPHABET = string.ascii_letters + string.digits + "_.:-"
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)

task_ids = st.one_of(
    st.text(max_size=200),  # anything, unicode included
    st.text(alphabet=ID_ALPHABET, min_size=1, max_size=128),  # well-formed, unknown
    st.text(alphabet=ID_ALPHABET, min_size=129, max_size=400),  # too long
    st.builds(lambda c, n: c * n, st.characters(), st.integers(1_000, 100_000)),  # huge
    st.sampled_from(
        [
            "",
            " ",
            "*",
            "?",
            "[a-z]",
            "..",
            "../x",
            "a b",
            "x\x00y",
            "task:1:events",
            "\u202e",
            "Ω" * 24,
            "🙂" * 40,
            "0" * 32,
            "-1",
            "null",
            "{}",
            "a\nb",
        ]
    ),
)


def encode(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


cursors = st.one_of(
    st.text(max_size=300),
    st.binary(max_size=64).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    json_values.map(encode),
    # The cursor's own shape with the wrong things inside.
    st.tuples(
        st.sampled_from(["desc", "asc", "DESC", ""]),
        json_values,
        st.one_of(st.text(max_size=40), st.text(alphabet=ID_ALPHABET, min_size=1, max_size=20)),
    ).map(lambda t: encode(list(t))),
    st.tuples(
        st.sampled_from(["desc", "asc"]),
        st.one_of(
            st.booleans(),
            st.integers(min_value=-(2**80), max_value=2**80),
            st.floats(allow_nan=False),
            st.just(1e308),
        ),
        st.text(alphabet=ID_ALPHABET, min_size=1, max_size=20),
    ).map(lambda t: encode(list(t))),
)

ttls = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63),
    st.integers(),
    st.sampled_from(
        [0, -1, 1, 999, 1000, 1001, 86_400_000, 86_400_001, 2**31, 2**53 + 1, 2**64, -(2**64), 10**30]
    ),
)


@pytest.fixture
def sync_redis(redis_url: str) -> Iterator[SyncRedis]:
    client = cast(Any, SyncRedis).from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def mcp(redis_url: str, namespace: str) -> Iterator[InProcessMCP]:
    with InProcessMCP(redis_url, namespace, demo_app, limits=LIMITS, max_argument_bytes=ARG_LIMIT) as server:
        # A few real tasks, so "nothing written" is checked against a namespace that has keys.
        for seconds in (1, 2):
            server.run(lambda s, x=seconds: s.experimental.call_tool_as_task("slow_compute", {"seconds": x}))
        yield server


class Rejections:
    """Checks one rejected request: the error, the follow-up request, the unchanged Redis."""

    def __init__(self, mcp: InProcessMCP, redis: SyncRedis, namespace: str) -> None:
        self.mcp, self.redis, self.namespace = mcp, redis, namespace
        self.counts: dict[str, int] = {}

    def expect_error(self, what: str, fn: Any, code: int, message_start: str = "") -> McpError:
        before = snapshot(self.redis, self.namespace)
        outcome = self.mcp.call_error(fn)
        assert isinstance(outcome, McpError), f"{what}: expected error {code}, got {outcome!r}"[:2000]
        assert outcome.error.code == code, f"{what}: {outcome.error}"[:2000]
        assert outcome.error.message.startswith(message_start), outcome.error.message[:500]
        self.after(what, before)
        return outcome

    def after(self, what: str, before: dict[bytes, Any]) -> None:
        # The server keeps serving...
        listed = self.mcp.run(lambda s: s.experimental.list_tasks())
        assert listed.tasks is not None
        # ...and the rejected request wrote nothing.
        assert snapshot(self.redis, self.namespace) == before, f"{what} wrote to Redis"
        self.counts[what] = self.counts.get(what, 0) + 1


@pytest.fixture
def rejections(mcp: InProcessMCP, sync_redis: SyncRedis, namespace: str) -> Iterator[Rejections]:
    checks = Rejections(mcp, sync_redis, namespace)
    yield checks
    print(f"\nrejected: {checks.counts}")


def test_unknown_and_malformed_task_ids(rejections: Rejections) -> None:
    @FUZZ
    @given(task_id=task_ids)
    def check(task_id: str) -> None:
        for name, fn in (
            ("tasks/get", lambda s: s.experimental.get_task(task_id)),
            ("tasks/result", lambda s: s.experimental.get_task_result(task_id, CallToolResult)),
            ("tasks/cancel", lambda s: s.experimental.cancel_task(task_id)),
        ):
            rejections.expect_error(name, fn, INVALID_PARAMS, "Task not found")

    check()


def test_malformed_cursors(rejections: Rejections) -> None:
    @FUZZ
    @given(cursor=cursors)
    def check(cursor: str) -> None:
        before = snapshot(rejections.redis, rejections.namespace)
        outcome = rejections.mcp.call_error(lambda s: s.experimental.list_tasks(cursor=cursor))
        if isinstance(outcome, McpError):
            assert outcome.error.code == INVALID_PARAMS, outcome.error
            assert outcome.error.message.startswith("Invalid cursor"), outcome.error.message[:300]
            rejections.after("tasks/list", before)
        else:
            # A cursor of the right shape is a valid position: a page (of this session's tasks).
            assert outcome.tasks is not None
            rejections.after("tasks/list (well-formed)", before)

    check()


def test_ttls_are_clamped_to_the_configured_bounds(mcp: InProcessMCP) -> None:
    seen: set[int] = set()

    @FUZZ
    @given(ttl=ttls)
    def check(ttl: int) -> None:
        created = mcp.run(lambda s: s.experimental.call_tool_as_task("slow_compute", {"seconds": 1}, ttl=ttl))
        expected = max(LIMITS.min_ttl_ms, min(LIMITS.max_ttl_ms, ttl))
        assert created.task.ttl == expected, (ttl, created.task.ttl)
        got = mcp.run(lambda s: s.experimental.get_task(created.task.taskId))
        assert got.ttl == expected
        seen.add(expected)

    check()
    print(f"\nTTLs clamped to {sorted(seen)[:3]}..{sorted(seen)[-3:]}")
    assert {LIMITS.min_ttl_ms, LIMITS.max_ttl_ms} <= seen


def valid_for(tool: str, arguments: dict[str, Any]) -> bool:
    """The registry's own verdict (pydantic's, lax: it takes "5" and true for a number)."""
    spec = demo_app.get(tool)
    assert spec is not None
    try:
        spec.validate_arguments(arguments)
    except InvalidArguments:
        return False
    return True


tool_arguments = st.one_of(
    st.dictionaries(st.text(max_size=12), json_values, max_size=4),
    st.fixed_dictionaries({"name": json_values}),
    st.fixed_dictionaries({"seconds": json_values}),
    st.fixed_dictionaries(
        {
            "seconds": st.one_of(
                st.floats(max_value=-1e-9), st.floats(min_value=3600.0001), st.text(max_size=20)
            )
        }
    ),
)


def test_invalid_arguments(rejections: Rejections) -> None:
    mcp = rejections.mcp

    @FUZZ
    @given(arguments=tool_arguments)
    def check(arguments: dict[str, Any]) -> None:
        # A plain call (greet runs inline): a tool error that names the problem; nothing written.
        if not valid_for("greet", arguments):
            before = snapshot(rejections.redis, rejections.namespace)
            result = mcp.run(lambda s: s.call_tool("greet", arguments))
            assert result.isError, result
            text = result.content[0]
            assert isinstance(text, TextContent)
            assert text.text.startswith("Invalid arguments for tool 'greet'"), text.text
            if "name" not in arguments:
                assert "name" in text.text
            rejections.after("tools/call greet (plain)", before)
        # A task-augmented call: -32602 naming the problem, and no task.
        if not valid_for("slow_compute", arguments):
            error = rejections.expect_error(
                "tools/call slow_compute (task)",
                lambda s: s.experimental.call_tool_as_task("slow_compute", arguments),
                INVALID_PARAMS,
                "Invalid arguments for tool 'slow_compute'",
            )
            # It names the field: the missing or wrong `seconds`, or an unexpected one.
            assert any(name in error.error.message for name in ["seconds", *arguments]), error.error.message

    check()


def test_unknown_tools_and_task_support_mismatches(rejections: Rejections) -> None:
    @FUZZ
    @given(
        name=st.text(max_size=100), arguments=st.dictionaries(st.text(max_size=8), json_values, max_size=3)
    )
    def check(name: str, arguments: dict[str, Any]) -> None:
        assume(name not in demo_app.names())
        rejections.expect_error(
            "tools/call unknown (plain)",
            lambda s: s.call_tool(name, arguments),
            INVALID_PARAMS,
            "Unknown tool",
        )
        rejections.expect_error(
            "tools/call unknown (task)",
            lambda s: s.experimental.call_tool_as_task(name, arguments),
            INVALID_PARAMS,
            "Unknown tool",
        )

    check()
    rejections.expect_error(
        "tools/call greet (task)",
        lambda s: s.experimental.call_tool_as_task("greet", {"name": "x"}),
        METHOD_NOT_FOUND,
    )
    rejections.expect_error(
        "tools/call long_report (plain)",
        lambda s: s.call_tool("long_report", {"seconds": 0}),
        METHOD_NOT_FOUND,
    )


def stored_size(arguments: dict[str, Any]) -> int:
    """Bytes of the arguments as the task stores them."""
    return len(to_json(arguments, "arguments").encode())


def at_limit(limit: int, char: str) -> str:
    """A question made of ``char`` whose arguments are exactly ``limit`` bytes as stored."""
    question = ""
    while stored_size({"question": question + char}) <= limit:
        question += char
    question += "x" * (limit - stored_size({"question": question}))
    assert stored_size({"question": question}) == limit
    return question


def test_arguments_at_and_over_the_limit(rejections: Rejections) -> None:
    """max_argument_bytes bounds the stored JSON of the arguments: at the limit a task is created,
    one byte over it is refused with a clear -32602 and nothing is written. Unicode counts by its
    UTF-8 bytes and quotes by their escapes, as stored."""
    mcp = rejections.mcp
    for char in ("x", "é", "🙂", '"'):
        question = at_limit(ARG_LIMIT, char)
        created = mcp.run(lambda s, q=question: s.experimental.call_tool_as_task("ask_user", {"question": q}))
        assert created.task.status == "working", char
        error = rejections.expect_error(
            f"oversized arguments ({char!r})",
            lambda s, q=question: s.experimental.call_tool_as_task("ask_user", {"question": q + "x"}),
            INVALID_PARAMS,
        )
        assert f"over the limit of {ARG_LIMIT} bytes" in error.error.message, error.error.message
        # A plain call is refused the same way.
        name = question + "x" * 5  # {"name": ...} is 4 bytes shorter than {"question": ...}
        assert stored_size({"name": name}) == ARG_LIMIT + 1
        rejections.expect_error(
            f"oversized arguments, plain ({char!r})",
            lambda s, n=name: s.call_tool("greet", {"name": n}),
            INVALID_PARAMS,
        )
    # Far over the limit (a megabyte): refused just as cleanly.
    rejections.expect_error(
        "1 MB of arguments",
        lambda s: s.experimental.call_tool_as_task("ask_user", {"question": "x" * 2**20}),
        INVALID_PARAMS,
    )


# -- raw JSON-RPC over Streamable HTTP: what the SDK's client would not even send ---------------------

METHODS = ["tasks/get", "tasks/result", "tasks/cancel", "tasks/list", "tools/call"]
RAW_FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

wrong_types = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=30),
    st.lists(json_scalars, max_size=3),
    st.dictionaries(st.text(max_size=5), json_scalars, max_size=3),
)
raw_params = st.one_of(
    json_values,  # anything at all, including non-objects
    st.fixed_dictionaries({"taskId": wrong_types}),
    st.fixed_dictionaries({"cursor": wrong_types}),
    st.fixed_dictionaries({"name": wrong_types, "arguments": wrong_types}),
    st.fixed_dictionaries(
        {"name": st.sampled_from(["slow_compute", "greet", "ask_user"]), "arguments": wrong_types}
    ),
    st.fixed_dictionaries(
        {
            "name": st.just("slow_compute"),
            "arguments": st.just({"seconds": 1}),
            "task": st.one_of(wrong_types, st.fixed_dictionaries({"ttl": wrong_types})),
        }
    ),
    st.fixed_dictionaries(
        {
            "name": st.just("greet"),
            "arguments": st.just({"name": "x"}),
            "_meta": st.one_of(wrong_types, st.fixed_dictionaries({"progressToken": wrong_types})),
        }
    ),
)


def task_created(method: str, reply: dict[str, Any]) -> bool:
    return method == "tools/call" and "task" in (reply.get("result") or {})


@pytest.mark.slow
async def test_raw_json_rpc_with_wrong_types_over_http(
    stack: Any, sync_redis: SyncRedis, namespace: str
) -> None:
    import asyncio

    server = await stack.start_server(max_argument_bytes=ARG_LIMIT)
    counts: dict[str, int] = {}

    def fuzz() -> None:
        client = RawClient(server.url)
        try:
            init = client.initialize()
            assert "result" in init, init
            created = client.request(
                "tools/call", {"name": "slow_compute", "arguments": {"seconds": 1}, "task": {"ttl": 60_000}}
            )
            assert "task" in created["result"], created

            @RAW_FUZZ
            @given(method=st.sampled_from(METHODS), params=raw_params, omit=st.booleans())
            def check(method: str, params: Any, omit: bool) -> None:
                before = snapshot(sync_redis, namespace)
                reply = client.request(method, params, omit_params=omit and params is None)
                if "error" in reply:
                    code = reply["error"]["code"]
                    assert code in (INVALID_PARAMS, METHOD_NOT_FOUND), (method, params, reply)
                    assert snapshot(sync_redis, namespace) == before, f"rejected {method} wrote to Redis"
                    counts[f"{method} -> {code}"] = counts.get(f"{method} -> {code}", 0) + 1
                else:
                    assert "result" in reply, reply
                    if not task_created(method, reply):
                        result = reply["result"]
                        if method == "tools/call" and result.get("isError"):
                            counts["tools/call -> tool error"] = counts.get("tools/call -> tool error", 0) + 1
                    counts[f"{method} -> ok"] = counts.get(f"{method} -> ok", 0) + 1
                # The server keeps serving this session.
                follow = client.request("tasks/list", {})
                assert "result" in follow, follow

            check()
            for method in ("tasks/frobnicate", "tools/explode", "", "rpc.discover"):
                before = snapshot(sync_redis, namespace)
                reply = client.request(method, {})
                assert reply.get("error", {}).get("code") in (METHOD_NOT_FOUND, INVALID_PARAMS), reply
                assert snapshot(sync_redis, namespace) == before
                counts[f"unknown method -> {reply['error']['code']}"] = (
                    counts.get(f"unknown method -> {reply['error']['code']}", 0) + 1
                )
        finally:
            client.close()

    await asyncio.to_thread(fuzz)
    print("\nraw JSON-RPC over HTTP:", json.dumps(counts, sort_keys=True, indent=1))
    assert server.alive
    # A fresh session on the same server works end to end.
    health = await asyncio.to_thread(lambda: httpx.get(f"{server.base_url}/health", timeout=5))
    assert health.status_code == 200


# -- results over the worker's limit ----------------------------------------------------------------

RESULT_LIMIT = 3000
ROOT = str(Path(__file__).resolve().parents[2])


def stored_result_size(text: str) -> int:
    """Bytes of echo's result as the task stores it."""
    return len(to_json(to_result(text), "result").encode())


def result_at_limit(limit: int, char: str) -> str:
    text = ""
    while stored_result_size(text + char) <= limit:
        text += char
    text += "x" * (limit - stored_result_size(text))
    assert stored_result_size(text) == limit
    return text


@pytest.mark.slow
async def test_results_at_and_over_the_workers_limit(stack: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_result_bytes bounds the stored JSON of a result: at the limit the task completes with its
    result, one byte over it the task fails with a message naming the limit, and tasks/result
    answers that as an error; nothing of the refused result is stored."""
    import asyncio

    from mcp_tasks_redis.engine.engine import TaskEngine
    from tests.integration.procs import http_session

    monkeypatch.setenv("PYTHONPATH", ROOT)
    stack.configure(app="tests.hostile.limits_app:app")
    server, _ = await asyncio.gather(stack.start_server(), stack.start_worker(max_result_bytes=RESULT_LIMIT))
    engine = TaskEngine.from_url(stack.redis_url, namespace=stack.namespace)
    outcomes: list[str] = []
    try:
        async with http_session(server.url) as session:
            for char in ("x", "é", '"', "\\"):
                text = result_at_limit(RESULT_LIMIT, char)
                fits = (await session.experimental.call_tool_as_task("echo", {"text": text})).task.taskId
                over = (
                    await session.experimental.call_tool_as_task("echo", {"text": text + "x"})
                ).task.taskId
                result = await session.experimental.get_task_result(fits, CallToolResult)
                assert not result.isError
                assert isinstance(result.content[0], TextContent)
                assert result.content[0].text == text
                with pytest.raises(McpError) as info:
                    await session.experimental.get_task_result(over, CallToolResult)
                message = info.value.error.message
                assert f"over the limit of {RESULT_LIMIT} bytes" in message, (char, message)
                record = await engine.tasks.get(over)
                assert record is not None
                assert record.status.value == "failed"
                assert record.result is None
                outcomes.append(f"{char!r}: {RESULT_LIMIT} bytes completed, {RESULT_LIMIT + 1} failed")
    finally:
        await engine.close()
    print("\nresult limit:", "; ".join(outcomes))
