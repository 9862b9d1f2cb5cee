"""Making a cancellation stick through redis-py.

redis-py can swallow a cancellation that lands while it reads a reply: it returns the reply (or,
in a read with a timeout, ``None`` as if the timeout ran out) and the cancelled task runs on. A
cancelled wait would then wait forever and a shutdown would hang on it. The task still counts the
request (``Task.cancelling()``), which is what these helpers go by.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

T = TypeVar("T")


async def unless_cancelled(reply: T) -> T:
    """The reply, unless the calling task was cancelled meanwhile: then raise the cancellation.

    First one checkpoint: an anyio cancel scope delivers its cancellation again there, as its own
    (a bare ``CancelledError`` raised here would not be recognised by the scope, and would cancel
    whatever encloses it instead). A plain asyncio cancellation is raised here if still pending.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        await asyncio.sleep(0)
        raise asyncio.CancelledError
    return reply


async def cancel_and_wait(task: asyncio.Task[Any], retry_s: float = 0.1) -> None:
    """Cancel ``task`` and wait until it has ended, cancelling again should it swallow one."""
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=retry_s)
    if not task.cancelled():
        task.exception()  # retrieved: an error on the way out is not "never retrieved"
