"""What a deployment does with a task besides running it: retries, timeouts and priorities.

A tool declares its policy where it is registered (``@app.tool(retry=Retry(...), timeout_s=30,
priority="high")``); what it leaves out comes from the deployment's defaults (`Policy`, built
from the settings). Bad values are refused where they are declared, with the value and the rule.

- **Retry**: how many runs a task gets in all (the first run included; a worker lost while running
  it uses one up too), which exceptions of the tool start another run, and how long to wait before
  it (exponential backoff with jitter). While it waits the task stays ``working`` and its status
  message says so; when runs run out it ends ``failed`` with the last error.
- **Timeout**: at the deadline the tool is cancelled and the run fails with "timed out after N s"
  (retried only if the retry policy names `ToolTimeout`).
- **Priority**: ``high``, ``normal`` or ``low``; each level is a dispatch stream of its own.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
"""The levels, highest first (a level's index is its dispatch stream's)."""


class PolicyError(ValueError):
    """A policy value that cannot work, named with the rule it breaks."""


class ToolTimeout(Exception):
    """A run that exceeded its tool's timeout (name it in `Retry.on` to retry such runs)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"Tool timed out after {seconds:g} s")
        self.seconds = seconds


def _is_exception_class(kind: object) -> bool:
    # Declarations come from user code: checked at run time whatever the annotations say.
    return isinstance(kind, type) and issubclass(kind, BaseException)


def priority_level(value: object) -> int:
    """The index of a priority name; PolicyError for anything else."""
    if value not in PRIORITIES:
        raise PolicyError(f"Unknown priority {value!r}: use one of {', '.join(PRIORITIES)}")
    return PRIORITIES.index(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Retry:
    """Runs a task gets, and which tool exceptions earn another one after a backoff."""

    attempts: int = 3
    on: tuple[type[BaseException], ...] = ()
    backoff_s: float = 1.0
    backoff_factor: float = 2.0
    backoff_max_s: float = 60.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if isinstance(self.attempts, bool) or self.attempts < 1:
            raise PolicyError(
                f"Retry attempts must be a whole number >= 1 (runs in all), got {self.attempts!r}"
            )
        for name in ("backoff_s", "backoff_max_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise PolicyError(f"Retry {name} must be a number of seconds >= 0, got {value!r}")
        if not math.isfinite(self.backoff_factor) or self.backoff_factor < 1:
            raise PolicyError(f"Retry backoff_factor must be >= 1, got {self.backoff_factor!r}")
        if not 0 <= self.jitter <= 1:
            raise PolicyError(f"Retry jitter must be between 0 and 1, got {self.jitter!r}")
        if not all(_is_exception_class(kind) for kind in self.on):
            raise PolicyError(f"Retry on= must list exception classes, got {self.on!r}")

    def retries(self, error: BaseException) -> bool:
        return isinstance(error, self.on)

    def delay_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """The wait before run ``attempt + 1``: backoff_s x factor^(attempt-1), capped, +- jitter."""
        base = min(self.backoff_max_s, self.backoff_s * self.backoff_factor ** max(attempt - 1, 0))
        spread = base * self.jitter
        return max(0.0, base + (rng or random).uniform(-spread, spread))


@dataclass(frozen=True)
class Policy:
    """A tool's policy; None fields fall back to the deployment's defaults (`resolved`)."""

    retry: Retry | None = None
    timeout_s: float | None = None
    priority: Priority | None = None

    def __post_init__(self) -> None:
        if self.timeout_s is not None and (not math.isfinite(self.timeout_s) or self.timeout_s <= 0):
            raise PolicyError(f"timeout_s must be a number of seconds > 0, got {self.timeout_s!r}")
        if self.priority is not None:
            priority_level(self.priority)

    def resolved(self, defaults: Policy) -> Policy:
        """This policy with the deployment's defaults in the fields it leaves out."""
        return replace(
            self,
            retry=self.retry or defaults.retry,
            timeout_s=self.timeout_s if self.timeout_s is not None else defaults.timeout_s,
            priority=self.priority or defaults.priority,
        )


@dataclass(frozen=True)
class CallBounds:
    """What a caller may ask for one call, in the call's ``_meta`` (the server's bounds)."""

    highest_priority: Priority = "normal"
    meta_key: str = "dev.mcp-tasks-redis/priority"

    def priority_for(self, meta: dict[str, Any] | None, tool_priority: Priority) -> Priority:
        """The call's priority: the tool's, or the one the call asks for within the bounds.

        A call may lower its priority, and raise it up to the tool's own level or the server's
        bound, whichever is higher; a level above that is lowered to it. PolicyError for an
        unknown level.
        """
        asked = (meta or {}).get(self.meta_key)
        if asked is None:
            return tool_priority
        ceiling = min(priority_level(tool_priority), priority_level(self.highest_priority))
        return PRIORITIES[max(priority_level(asked), ceiling)]


DEFAULT_POLICY = Policy(retry=Retry(), timeout_s=None, priority="normal")

__all__ = [
    "DEFAULT_POLICY",
    "PRIORITIES",
    "CallBounds",
    "Policy",
    "PolicyError",
    "Priority",
    "Retry",
    "ToolTimeout",
    "priority_level",
]
