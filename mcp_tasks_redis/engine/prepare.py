"""Input a tool needs before its task exists: a protocol-neutral pre-task round.

Some tools must ask the client something before it is worth starting work (which file, a
confirmation, a name). A tool declares a *prepare* step for that
(``@app.tool(prepare=confirm)``). The server replica that receives the call runs it, before any
task is created, with what the client has answered so far:

- it returns `NeedInput` to ask (each request keyed, ``{"method", "params"}`` as the client
  would receive it); the wire adapter asks the client its own way (SEP-2663: an MRTR
  ``InputRequiredResult`` answered by a retry of the call) and runs the step again with the
  answers;
- or it returns the values the tool needs (JSON), which travel with the task to whichever
  worker runs it, where the tool reads them as ``ctx.prepared``.

The step runs on a server replica, so it must be quick and must not need what only workers
have; raising an exception answers the call with a tool error, as a failing plain call would.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from mcp_tasks_redis.engine.context import ELICITATION_METHOD, ElicitationAnswer, MalformedInputResponse

__all__ = ["NeedInput", "Preparation", "PrepareFn", "run_prepare"]


@dataclass(frozen=True)
class NeedInput:
    """Ask the client before the task exists: requests by key, each ``{"method", "params"}``."""

    requests: dict[str, dict[str, Any]]

    def __post_init__(self) -> None:
        if not self.requests:
            raise ValueError("NeedInput needs at least one request")


@dataclass(frozen=True)
class Preparation:
    """What a prepare step sees: the call's arguments (as the client sent them) and the client's
    answers so far, by request key (each the client's response, e.g. ``{"action", "content"}``)."""

    tool: str
    arguments: Mapping[str, Any]
    answers: Mapping[str, Mapping[str, Any]] = field(default_factory=dict[str, Mapping[str, Any]])

    def elicit(self, key: str, message: str, requested_schema: dict[str, Any]) -> NeedInput:
        """Ask the user for structured input (a form elicitation) under ``key``."""
        params = {"mode": "form", "message": message, "requestedSchema": requested_schema}
        return NeedInput({key: {"method": ELICITATION_METHOD, "params": params}})

    def elicitation(self, key: str) -> ElicitationAnswer | None:
        """The client's answer to the elicitation asked under ``key``, or None if not answered."""
        raw = self.answers.get(key)
        if raw is None:
            return None
        try:
            return ElicitationAnswer.model_validate(dict(raw))
        except ValidationError as e:
            message = f"Client sent a malformed elicitation result for {key!r}: {e}"
            raise MalformedInputResponse(message) from e


PrepareFn = Callable[[Preparation], Awaitable[NeedInput | Mapping[str, Any]] | NeedInput | Mapping[str, Any]]
"""A tool's prepare step: `NeedInput` to ask the client, or the prepared values (JSON)."""


async def run_prepare(prepare: PrepareFn, preparation: Preparation) -> NeedInput | dict[str, Any]:
    """Run a prepare step (sync or async); the prepared values come back as a plain dict."""
    outcome = prepare(preparation)
    if inspect.isawaitable(outcome):
        outcome = await outcome
    if isinstance(outcome, NeedInput):
        return outcome
    return dict(outcome)
