"""What a running tool can use: progress, status, client input and cancellation.

Tools receive a ``ToolContext`` (or one of its parts) by annotating a parameter.
The context talks to a ``TaskBackend``; the worker runtime implements it over Redis
for task-augmented calls, and ``InlineBackend`` covers plain ``tools/call`` requests
that run without a task.  Nothing here knows about the MCP SDK.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import anyio
from pydantic import BaseModel, ValidationError

from mcp_tasks_redis.engine.progress import ProgressReporter, ProgressSink

__all__ = [
    "ELICITATION_METHOD",
    "SAMPLING_METHOD",
    "CancellationToken",
    "ElicitationAnswer",
    "InlineBackend",
    "InputHandler",
    "InputUnavailable",
    "MalformedInputResponse",
    "RequestInfo",
    "TaskBackend",
    "TaskCancelled",
    "ToolContext",
]

ELICITATION_METHOD = "elicitation/create"
SAMPLING_METHOD = "sampling/createMessage"

InputHandler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
"""Answers a client request ``(method, params)`` with its JSON result."""


class TaskBackend(Protocol):
    """Operations the runtime provides to one running tool invocation."""

    async def publish_progress(self, progress: float, total: float | None, message: str | None) -> None:
        """Record progress and notify the client."""
        ...

    async def set_status_message(self, message: str) -> None:
        """Set the task's human-readable status message."""
        ...

    async def request_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the client (``elicitation/create`` or ``sampling/createMessage``) and wait.

        The runtime moves the task to ``input_required`` while waiting and back to
        ``working`` once the client has answered; the JSON result is returned.
        """
        ...

    async def set_working(self) -> None:
        """Mark the task as ``working`` again."""
        ...


class TaskCancelled(Exception):
    """Raised by ``CancellationToken.raise_if_cancelled`` once the task was cancelled."""

    def __init__(self, reason: str | None = None) -> None:
        super().__init__(reason or "task was cancelled")
        self.reason = reason


class CancellationToken:
    """A one-way flag a tool polls or awaits to stop cooperatively.

    Tools get a plain exception (``TaskCancelled``) rather than anyio's cancellation
    exception so that cleanup code can tell a client cancel from a scope cancel.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._reason: str | None = None

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    @property
    def reason(self) -> str | None:
        """Why the task was cancelled, if the canceller said so."""
        return self._reason

    def cancel(self, reason: str | None = None) -> None:
        """Cancel; only the first call's reason is kept, later calls do nothing."""
        if self._event.is_set():
            return
        self._reason = reason
        self._event.set()

    async def wait(self) -> None:
        """Return once the token is cancelled."""
        await self._event.wait()

    def raise_if_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if the token is cancelled."""
        if self._event.is_set():
            raise TaskCancelled(self._reason)


@dataclass(frozen=True)
class RequestInfo:
    """Who asked for this invocation and how; all optional for inline runs."""

    task_id: str | None
    owner: str | None
    session: str | None
    progress_token: str | int | None
    attempt: int = 1
    tool: str = ""
    # What the tool's prepare step returned before the task existed (engine/prepare.py).
    prepared: Mapping[str, Any] = field(default_factory=dict[str, Any])


class ElicitationAnswer(BaseModel):
    """The client's answer to an ``elicitation/create`` request."""

    action: Literal["accept", "decline", "cancel"]
    content: dict[str, Any] | None = None

    @property
    def accepted(self) -> bool:
        return self.action == "accept"


class InputUnavailable(RuntimeError):
    """A tool asked the client for input but nobody can answer (inline run, no handler)."""

    def __init__(self, method: str) -> None:
        super().__init__(
            f"Tool requested {method!r}, but it is running inline without a task and no "
            f"input handler is available; call the tool as a task to use client input."
        )
        self.method = method


class MalformedInputResponse(ValueError):
    """The client's answer to an input request did not have the expected shape."""


def _camel(key: str) -> str:
    # MCP params are camelCase; let Python callers write system_prompt=..., too.
    # Leading-underscore keys such as "_meta" are protocol names and stay as they are.
    if key.startswith("_"):
        return key
    head, *rest = key.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


class ToolContext:
    """Everything a running tool may touch, bound to one invocation."""

    def __init__(
        self,
        backend: TaskBackend,
        request: RequestInfo,
        cancel: CancellationToken,
        progress: ProgressReporter,
    ) -> None:
        self._backend = backend
        self._request = request
        self._cancel = cancel
        self._progress = progress

    @classmethod
    def create(
        cls,
        backend: TaskBackend,
        request: RequestInfo,
        cancel: CancellationToken | None = None,
        *,
        min_interval: float = 0.1,
        min_delta: float = 1.0,
    ) -> ToolContext:
        """Build a context whose progress reporter sends through ``backend``."""
        reporter = ProgressReporter(
            backend.publish_progress,
            min_interval=min_interval,
            min_delta=min_delta,
            task_id=request.task_id,
        )
        return cls(backend, request, cancel if cancel is not None else CancellationToken(), reporter)

    @property
    def task_id(self) -> str | None:
        return self._request.task_id

    @property
    def request(self) -> RequestInfo:
        return self._request

    @property
    def prepared(self) -> Mapping[str, Any]:
        """The values the tool's prepare step gathered before the task was created."""
        return self._request.prepared

    @property
    def cancellation(self) -> CancellationToken:
        return self._cancel

    @property
    def progress(self) -> ProgressReporter:
        """The throttled reporter; prefer it over ``report_progress`` in loops."""
        return self._progress

    @property
    def backend(self) -> TaskBackend:
        return self._backend

    async def report_progress(
        self, progress: float, total: float | None = None, message: str | None = None
    ) -> None:
        """Send progress straight to the backend, with no throttling or clamping."""
        await self._backend.publish_progress(progress, total, message)

    async def set_status(self, message: str) -> None:
        await self._backend.set_status_message(message)

    async def set_working(self) -> None:
        await self._backend.set_working()

    def check_cancelled(self) -> None:
        """Raise ``TaskCancelled`` if the task was cancelled."""
        self._cancel.raise_if_cancelled()

    async def require_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """Send a raw client request and return its JSON result."""
        return await self._backend.request_input(method, params)

    async def elicit(self, message: str, requested_schema: dict[str, Any]) -> ElicitationAnswer:
        """Ask the user for structured input described by ``requested_schema``."""
        result = await self._backend.request_input(
            ELICITATION_METHOD, {"message": message, "requestedSchema": requested_schema}
        )
        try:
            return ElicitationAnswer.model_validate(result)
        except ValidationError as exc:
            raise MalformedInputResponse(f"Client sent a malformed elicitation result: {exc}") from exc

    async def ask_text(self, message: str, field: str = "answer") -> str | None:
        """Ask for one line of text; None unless the user accepted and gave a string."""
        schema: dict[str, Any] = {
            "type": "object",
            "properties": {field: {"type": "string"}},
            "required": [field],
        }
        answer = await self.elicit(message, schema)
        if not answer.accepted or answer.content is None:
            return None
        value = answer.content.get(field)
        return value if isinstance(value, str) else None

    async def sample(self, messages: list[dict[str, Any]], max_tokens: int, **extra: Any) -> dict[str, Any]:
        """Ask the client's model for a completion; returns the ``CreateMessageResult`` dict.

        Extra keyword arguments become request params; snake_case names are sent in
        camelCase (``system_prompt`` -> ``systemPrompt``).
        """
        params: dict[str, Any] = {"messages": messages, "maxTokens": max_tokens}
        params.update({_camel(key): value for key, value in extra.items()})
        return await self._backend.request_input(SAMPLING_METHOD, params)


class InlineBackend:
    """A ``TaskBackend`` for tools run directly by a plain ``tools/call`` (no task).

    Progress goes to ``on_progress`` when given; client input needs ``on_input``,
    otherwise ``request_input`` raises ``InputUnavailable``.
    """

    def __init__(
        self,
        on_progress: ProgressSink | None = None,
        on_input: InputHandler | None = None,
    ) -> None:
        self._on_progress = on_progress
        self._on_input = on_input
        self.status_message: str | None = None

    async def publish_progress(self, progress: float, total: float | None, message: str | None) -> None:
        if self._on_progress is not None:
            await self._on_progress(progress, total, message)

    async def set_status_message(self, message: str) -> None:
        # There is no task to carry a status; keep it so callers can still show it.
        self.status_message = message

    async def request_input(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if self._on_input is None:
            raise InputUnavailable(method)
        return await self._on_input(method, params)

    async def set_working(self) -> None:
        return None
