"""ToolContext over a TaskBackend, the inline backend, and cancellation tokens."""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio import wait_all_tasks_blocked

from mcp_tasks_redis.engine.context import (
    CancellationToken,
    ElicitationAnswer,
    InlineBackend,
    InputUnavailable,
    MalformedInputResponse,
    RequestInfo,
    TaskCancelled,
    ToolContext,
)


class FakeBackend:
    """Records every call; `request_input` answers from a queue of canned results."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def publish_progress(self, progress: float, total: float | None, message: str | None) -> None:
        self.calls.append(("publish_progress", (progress, total, message)))

    async def set_status_message(self, message: str) -> None:
        self.calls.append(("set_status_message", (message,)))

    async def request_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append(("request_input", (method, params)))
        return self.answers.pop(0)

    async def set_working(self) -> None:
        self.calls.append(("set_working", ()))


REQUEST = RequestInfo(task_id="t-1", owner="alice", session="s-1", progress_token=7, attempt=2, tool="demo")


def make_context(backend: FakeBackend) -> ToolContext:
    return ToolContext.create(backend, REQUEST)


# -- elicitation -----------------------------------------------------------------------


async def test_elicit_sends_an_elicitation_request_and_parses_the_answer() -> None:
    backend = FakeBackend({"action": "accept", "content": {"name": "Ada"}})
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}

    answer = await make_context(backend).elicit("Who are you?", schema)

    assert backend.calls == [
        ("request_input", ("elicitation/create", {"message": "Who are you?", "requestedSchema": schema}))
    ]
    assert answer == ElicitationAnswer(action="accept", content={"name": "Ada"})
    assert answer.accepted


async def test_a_declined_elicitation_has_no_content() -> None:
    backend = FakeBackend({"action": "decline"})
    answer = await make_context(backend).elicit("Continue?", {"type": "object", "properties": {}})
    assert (answer.action, answer.content, answer.accepted) == ("decline", None, False)


async def test_a_malformed_elicitation_result_is_reported_clearly() -> None:
    backend = FakeBackend({"action": "maybe"})
    with pytest.raises(MalformedInputResponse, match="malformed elicitation result"):
        await make_context(backend).elicit("Continue?", {"type": "object", "properties": {}})


async def test_ask_text_requests_one_required_string_field() -> None:
    backend = FakeBackend({"action": "accept", "content": {"city": "Paris"}})

    assert await make_context(backend).ask_text("Which city?", field="city") == "Paris"
    _, (method, params) = backend.calls[0]
    assert method == "elicitation/create"
    assert params["requestedSchema"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    }


@pytest.mark.parametrize(
    "result",
    [
        {"action": "decline"},
        {"action": "cancel"},
        {"action": "accept", "content": {}},
        {"action": "accept", "content": {"answer": 42}},
    ],
)
async def test_ask_text_returns_none_unless_a_string_was_accepted(result: dict[str, Any]) -> None:
    assert await make_context(FakeBackend(result)).ask_text("Name?") is None


# -- sampling and raw input ------------------------------------------------------------


async def test_sample_sends_a_create_message_request_with_camel_case_params() -> None:
    reply = {"role": "assistant", "content": {"type": "text", "text": "hi"}, "model": "m"}
    backend = FakeBackend(reply)
    messages = [{"role": "user", "content": {"type": "text", "text": "hello"}}]

    result = await make_context(backend).sample(messages, 50, system_prompt="Be brief", temperature=0.2)

    assert result == reply
    assert backend.calls == [
        (
            "request_input",
            (
                "sampling/createMessage",
                {"messages": messages, "maxTokens": 50, "systemPrompt": "Be brief", "temperature": 0.2},
            ),
        )
    ]


async def test_require_input_is_a_raw_passthrough() -> None:
    backend = FakeBackend({"anything": True})
    assert await make_context(backend).require_input("custom/method", {"x": 1}) == {"anything": True}
    assert backend.calls == [("request_input", ("custom/method", {"x": 1}))]


# -- progress, status and accessors ----------------------------------------------------


async def test_report_progress_passes_every_call_through_unthrottled() -> None:
    backend = FakeBackend()
    ctx = make_context(backend)
    await ctx.report_progress(5, 10, "half")
    await ctx.report_progress(5.01)
    await ctx.report_progress(3)
    assert backend.calls == [
        ("publish_progress", (5, 10, "half")),
        ("publish_progress", (5.01, None, None)),
        ("publish_progress", (3, None, None)),
    ]


async def test_status_and_working_go_to_the_backend() -> None:
    backend = FakeBackend()
    ctx = make_context(backend)
    await ctx.set_status("Crunching numbers")
    await ctx.set_working()
    assert backend.calls == [("set_status_message", ("Crunching numbers",)), ("set_working", ())]


async def test_the_created_reporter_publishes_through_the_backend_as_percent() -> None:
    backend = FakeBackend()
    ctx = make_context(backend)
    await ctx.progress.update(40, "parsing")
    assert backend.calls == [("publish_progress", (40, 100.0, "parsing"))]
    assert ctx.progress.task_id == "t-1"


def test_context_exposes_the_request_and_its_parts() -> None:
    token = CancellationToken()
    ctx = ToolContext.create(FakeBackend(), REQUEST, token)
    assert ctx.task_id == "t-1"
    assert ctx.request is REQUEST
    assert ctx.cancellation is token


# -- inline backend --------------------------------------------------------------------


async def test_inline_backend_forwards_progress_to_its_callback() -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    ctx = ToolContext.create(InlineBackend(on_progress), RequestInfo(None, None, None, None))
    await ctx.report_progress(1, 2, "one")
    assert seen == [(1, 2, "one")]


async def test_inline_backend_without_input_handler_refuses_elicitation() -> None:
    ctx = ToolContext.create(InlineBackend(), RequestInfo(None, None, None, None))
    with pytest.raises(InputUnavailable, match=r"'elicitation/create'.*without a task") as excinfo:
        await ctx.ask_text("Name?")
    assert excinfo.value.method == "elicitation/create"


async def test_inline_backend_uses_its_input_handler_when_given() -> None:
    async def on_input(method: str, params: dict[str, Any]) -> dict[str, Any]:
        return {"action": "accept", "content": {"answer": f"{method} ok"}}

    ctx = ToolContext.create(InlineBackend(on_input=on_input), RequestInfo(None, None, None, None))
    assert await ctx.ask_text("Name?") == "elicitation/create ok"


async def test_inline_backend_keeps_the_last_status_message() -> None:
    backend = InlineBackend()
    await ToolContext.create(backend, RequestInfo(None, None, None, None)).set_status("step 2")
    assert backend.status_message == "step 2"


# -- cancellation ----------------------------------------------------------------------


def test_a_new_token_is_not_cancelled_and_does_not_raise() -> None:
    token = CancellationToken()
    token.raise_if_cancelled()
    assert (token.cancelled, token.reason) == (False, None)


def test_cancel_is_idempotent_and_keeps_the_first_reason() -> None:
    token = CancellationToken()
    token.cancel("client asked")
    token.cancel("second call")
    assert (token.cancelled, token.reason) == (True, "client asked")


async def test_raise_if_cancelled_raises_task_cancelled_with_the_reason() -> None:
    token = CancellationToken()
    token.cancel("client asked")
    with pytest.raises(TaskCancelled, match="client asked") as excinfo:
        token.raise_if_cancelled()
    assert excinfo.value.reason == "client asked"
    assert not isinstance(excinfo.value, anyio.get_cancelled_exc_class())


async def test_wait_blocks_until_the_token_is_cancelled() -> None:
    token = CancellationToken()
    woke: list[str | None] = []

    async def waiter() -> None:
        await token.wait()
        woke.append(token.reason)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await wait_all_tasks_blocked()
        assert woke == []
        token.cancel("stop")
    assert woke == ["stop"]


async def test_wait_returns_at_once_for_an_already_cancelled_token() -> None:
    token = CancellationToken()
    token.cancel()
    with anyio.fail_after(1):
        await token.wait()
    assert token.cancelled


def test_context_check_cancelled_uses_the_token() -> None:
    token = CancellationToken()
    ctx = ToolContext.create(FakeBackend(), REQUEST, token)
    ctx.check_cancelled()
    token.cancel()
    with pytest.raises(TaskCancelled, match="task was cancelled"):
        ctx.check_cancelled()
