"""Throttled, monotonic progress reporting for long-running tools.

A tool reports absolute percentages (or items done within named phases) and the
``ProgressReporter`` decides which of them are worth sending: every send becomes
a Redis write and an MCP notification, so a tight loop calling ``update`` must not
turn into thousands of messages.  The reporter guarantees that progress never goes
backwards and that 100% is delivered exactly once.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

__all__ = ["MILESTONES", "Phase", "ProgressReporter", "ProgressSink"]

ProgressSink = Callable[[float, float | None, str | None], Awaitable[None]]
"""Receives ``(progress, total, message)``; the reporter always passes ``total=100.0``."""

MILESTONES: tuple[float, ...] = (25.0, 50.0, 75.0, 100.0)

_LOGGER_NAME = "mcp_tasks_redis.progress"
_COMPLETE = 100.0


def _fmt(value: float) -> str:
    # "3/10" reads better than "3.0/10.0" when callers pass whole floats.
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class ProgressReporter:
    """Turns a stream of progress updates into a throttled stream of sink calls."""

    def __init__(
        self,
        sink: ProgressSink,
        *,
        min_interval: float = 0.1,
        min_delta: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
        task_id: str | None = None,
    ) -> None:
        if min_interval < 0 or min_delta < 0:
            raise ValueError("min_interval and min_delta must be >= 0")
        self._sink = sink
        self._min_interval = min_interval
        self._min_delta = min_delta
        self._clock = clock
        self._logger = logger if logger is not None else logging.getLogger(_LOGGER_NAME)
        self.task_id = task_id

        self._current = 0.0  # highest value seen, sent or not
        self._pending_message: str | None = None
        self._last_sent: float | None = None
        self._last_message: str | None = None
        self._last_sent_at: float | None = None
        self._sent = 0
        self._finished = False
        self._milestones_logged: set[float] = set()

        self._plan: dict[str, tuple[float, float]] | None = None
        self._cursor = 0.0  # where the next unplanned phase starts

    # -- diagnostics -------------------------------------------------------------------

    @property
    def sent(self) -> int:
        """How many times the sink was called."""
        return self._sent

    @property
    def last_sent(self) -> float | None:
        """The last percentage handed to the sink, or None before the first send."""
        return self._last_sent

    @property
    def current(self) -> float:
        """The highest percentage reported so far, including throttled ones."""
        return self._current

    @property
    def finished(self) -> bool:
        """True once 100% has been sent; later updates are ignored."""
        return self._finished

    # -- absolute updates --------------------------------------------------------------

    async def update(self, percent: float, message: str | None = None, *, force: bool = False) -> None:
        """Report ``percent`` (0..100) done; ``force`` bypasses throttling but not monotonicity."""
        if math.isnan(percent):
            raise ValueError("progress percent must be a number, got NaN")
        if self._finished:
            return
        percent = min(max(float(percent), 0.0), _COMPLETE)
        if percent < self._current:
            # A late or out-of-order update must not make a client's progress bar jump back.
            return
        self._current = percent
        self._pending_message = message

        if percent >= _COMPLETE or force or self._should_send(percent, message):
            await self._send(percent, message)

    async def flush(self) -> None:
        """Send the latest throttled value, if it differs from what was last sent."""
        if self._finished:
            return
        new_message = self._pending_message is not None and self._pending_message != self._last_message
        if self._last_sent != self._current or new_message:
            await self._send(self._current, self._pending_message)

    async def finish(self, message: str | None = None) -> None:
        """Report 100%; a no-op if 100% was already sent."""
        await self.update(_COMPLETE, message)

    def _should_send(self, percent: float, message: str | None) -> bool:
        if self._last_sent is None or self._last_sent_at is None:
            return True
        moved = percent - self._last_sent
        new_message = message is not None and message != self._last_message
        if moved == 0 and not new_message:
            return False
        if moved >= self._min_delta:
            return True
        return self._clock() - self._last_sent_at >= self._min_interval

    async def _send(self, percent: float, message: str | None) -> None:
        previous = self._last_sent if self._last_sent is not None else 0.0
        # State is updated before awaiting the sink so that a concurrent update on the same
        # event loop sees it and cannot produce a duplicate (e.g. a second 100%).
        self._last_sent = percent
        self._last_message = message
        self._last_sent_at = self._clock()
        self._sent += 1
        if percent >= _COMPLETE:
            self._finished = True
        self._log_milestones(previous, percent)
        await self._sink(percent, _COMPLETE, message)

    def _log_milestones(self, previous: float, percent: float) -> None:
        for milestone in MILESTONES:
            if previous < milestone <= percent and milestone not in self._milestones_logged:
                self._milestones_logged.add(milestone)
                self._logger.info(
                    "task %s progress reached %d%%",
                    self.task_id or "-",
                    int(milestone),
                    extra={"task_id": self.task_id, "milestone": milestone},
                )

    # -- phases ------------------------------------------------------------------------

    def plan(self, weights: Mapping[str, float]) -> None:
        """Declare phases up front; weights are relative and scaled to fill 0..100 in order."""
        if not weights:
            raise ValueError("a progress plan needs at least one phase")
        if any(w < 0 or math.isnan(w) for w in weights.values()):
            raise ValueError("phase weights must be non-negative numbers")
        total = sum(weights.values())
        if total <= 0:
            raise ValueError("phase weights must add up to more than 0")
        slices: dict[str, tuple[float, float]] = {}
        start = 0.0
        items = list(weights.items())
        for index, (name, weight) in enumerate(items):
            # Pin the last slice to 100 so float rounding cannot leave the plan at 99.999.
            end = _COMPLETE if index == len(items) - 1 else start + weight * _COMPLETE / total
            slices[name] = (start, end)
            start = end
        self._plan = slices

    @asynccontextmanager
    async def phase(self, name: str, total: float, weight: float | None = None) -> AsyncGenerator[Phase]:
        """Run a phase of ``total`` items mapped onto a slice of 0..100.

        The slice comes from the plan if one was declared, else the next ``weight``
        percent, else everything that is left.  Leaving the block normally reports
        the slice end; leaving it with an exception reports nothing.
        """
        if total < 0 or math.isnan(total):
            raise ValueError(f"phase {name!r}: total must be >= 0, got {total}")
        start, end = self._slice_for(name, weight)
        phase = Phase(self, name, total, start, end)
        yield phase
        self._cursor = max(self._cursor, end)
        await self.update(end, f"{name}: {_fmt(total)}/{_fmt(total)}", force=True)

    def _slice_for(self, name: str, weight: float | None) -> tuple[float, float]:
        if self._plan is not None:
            if name not in self._plan:
                # A typo in a phase name would otherwise silently misreport progress.
                raise ValueError(f"phase {name!r} is not in the progress plan {list(self._plan)}")
            if weight is not None:
                raise ValueError(f"phase {name!r} is planned; its weight comes from the plan")
            return self._plan[name]
        start = max(self._cursor, self._current)
        if weight is None:
            return start, _COMPLETE
        if weight < 0 or math.isnan(weight):
            raise ValueError(f"phase {name!r}: weight must be >= 0, got {weight}")
        return start, min(start + weight, _COMPLETE)


class Phase:
    """Progress within one phase, counted in items; created by ``ProgressReporter.phase``."""

    def __init__(self, reporter: ProgressReporter, name: str, total: float, start: float, end: float) -> None:
        self._reporter = reporter
        self.name = name
        self.total = total
        self.start = start
        self.end = end
        self._done: float = 0

    @property
    def done(self) -> float:
        """Items reported done so far."""
        return self._done

    def percent_for(self, done: float) -> float:
        """The overall percentage corresponding to ``done`` items of this phase."""
        fraction = 1.0 if self.total == 0 else min(max(done / self.total, 0.0), 1.0)
        return self.start + (self.end - self.start) * fraction

    async def update_item(self, i: float, message: str | None = None) -> None:
        """Report that ``i`` of ``total`` items are done."""
        self._done = i
        text = message if message is not None else f"{self.name}: {_fmt(i)}/{_fmt(self.total)}"
        await self._reporter.update(self.percent_for(i), text)

    async def advance(self, n: float = 1, message: str | None = None) -> None:
        """Report ``n`` more items done."""
        await self.update_item(self._done + n, message)
