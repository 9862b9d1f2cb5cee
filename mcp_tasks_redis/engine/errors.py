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


class RedisUnavailable(TaskError, ConnectionError):
    """Redis could not be reached; the message names the URL. Retrying later is safe."""

    def __init__(self, url: str, cause: BaseException) -> None:
        super().__init__(f"Redis at {url} is unreachable ({type(cause).__name__}: {cause})")
        self.url = url
