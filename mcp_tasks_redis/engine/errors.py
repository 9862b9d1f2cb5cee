"""The engine's exceptions: each names one way a request on a task can be refused.

They subclass ValueError where the `mcp` SDK's TaskStore contract says "raises ValueError", so
the adapters can hand them to SDK helpers unchanged.
"""

from __future__ import annotations


class TaskError(Exception):
    """Base class for every refusal the engine makes."""


class TaskNotFound(TaskError, ValueError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task not found: {task_id}")
        self.task_id = task_id


class TaskAlreadyExists(TaskError, ValueError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"Task with ID {task_id} already exists")
        self.task_id = task_id


class InvalidTransition(TaskError, ValueError):
    def __init__(self, task_id: str, current: str, requested: str) -> None:
        if current in ("completed", "failed", "cancelled"):
            text = f"Cannot transition from terminal status '{current}' to '{requested}'"
        else:
            text = f"Cannot transition from '{current}' to '{requested}'"
        super().__init__(f"{text} (task {task_id})")
        self.task_id = task_id
        self.current = current
        self.requested = requested


class TaskIsTerminal(InvalidTransition):
    """An update (message, result, progress) to a task that has already finished."""


class InvalidTaskId(TaskError, ValueError):
    def __init__(self, task_id: str) -> None:
        super().__init__(f"Invalid task id {task_id[:80]!r}: use 1-128 characters of [A-Za-z0-9_.:-]")


class InvalidCursor(TaskError, ValueError):
    def __init__(self, cursor: str) -> None:
        super().__init__(f"Invalid cursor: {cursor[:80]!r}")


class NotSerializable(TaskError, ValueError):
    """A result or argument that cannot be written as JSON."""


class PayloadTooLarge(TaskError, ValueError):
    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the limit of {limit} bytes")


class QuotaExceeded(TaskError):
    """The caller has too many tasks waiting, or creates them too fast; retrying later may work.

    Both wires answer it with JSON-RPC error `code` (in the range JSON-RPC leaves to servers; the
    number echoes HTTP 429) and ``data`` that says when to retry, where that is known.
    """

    code = -32029

    def __init__(self, message: str, retry_after_ms: int | None = None, reason: str = "rate") -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms
        self.reason = reason  # which limit: "rate" (creation rate) or "queue" (queue limit)

    @property
    def data(self) -> dict[str, int] | None:
        return {"retryAfterMs": self.retry_after_ms} if self.retry_after_ms is not None else None


class LeaseLost(TaskError):
    """The worker no longer holds the task: it was cancelled, or another worker took it over."""


class RedisUnavailable(ConnectionError):
    """Redis could not be reached; the message names the URL. Retrying later is safe.

    Not a `TaskError`: an outage is no refusal of the request, and handlers that map refusals
    to "invalid params" must not tell a client that its valid request was its own mistake.
    """

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"Redis at {url} is unreachable ({type(cause).__name__}: {cause})")
        self.url = url
