"""Tools for the regression tests: parameters of every type pydantic validates into something
that is not JSON, and a tool that waits on an input request."""

from __future__ import annotations

import datetime
import decimal
import pathlib
import uuid
from typing import Annotated

from pydantic import BaseModel, Field

from mcp_tasks_redis.engine.context import ToolContext
from mcp_tasks_redis.engine.registry import ToolRegistry

app = ToolRegistry("regressions")


class Item(BaseModel):
    name: str
    qty: int


@app.tool(task_support="optional")
async def describe(
    at: datetime.datetime,
    ids: set[uuid.UUID],
    amount: decimal.Decimal,
    path: pathlib.Path,
    item: Item,
) -> str:
    """Say what arrived, with the Python types it arrived as."""
    kinds = [type(at).__name__, type(next(iter(ids))).__name__, type(amount).__name__, type(path).__name__]
    values = f"{at.isoformat()} {sorted(str(i) for i in ids)} {amount} {path.as_posix()}"
    return f"{values} {item.name}x{item.qty} {kinds}"


@app.tool(task_support="optional")
async def ask(question: Annotated[str, Field(description="What to ask")], ctx: ToolContext) -> str:
    """Ask the user and return the answer."""
    answer = await ctx.ask_text(question)
    return answer if answer is not None else "no answer"


@app.tool(task_support="optional")
async def noop() -> str:
    """Return at once."""
    return "ok"
