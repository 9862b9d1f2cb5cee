"""What one run on a worker reports to the process's metrics and to its trace span.

The worker opens `observed_run` around each run and tells the `RunReport` how the run ended; the
report turns that into counts (engine/telemetry/metrics.py) and the run span's outcome
(engine/telemetry/tracing.py). Nothing here touches Redis.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator

from mcp_tasks_redis.engine.outcome import Outcome
from mcp_tasks_redis.engine.runtime.execution import RetryLater, RunningTask
from mcp_tasks_redis.engine.telemetry.metrics import Metrics, finished_status
from mcp_tasks_redis.engine.telemetry.tracing import SpanHandle, job_carrier, run_span, step_span


class RunReport:
    """How one run ended, said once to the metrics and the span."""

    def __init__(self, metrics: Metrics, running: RunningTask, span: SpanHandle) -> None:
        self.metrics = metrics
        self.running = running
        self.span = span

    @property
    def _tool(self) -> str | None:
        return self.running.delivery.tool

    def ran(self) -> None:
        """The tool's run is over (whatever came of it): its resource use and a timeout."""
        usage = self.running.usage
        self.metrics.run_ended(self._tool, usage)
        self.span.set(
            {
                "mcp_tasks.queue_wait_ms": usage.get("wait_ms"),
                "mcp_tasks.run_ms": usage.get("run_ms"),
                "mcp_tasks.cpu_ms": usage.get("cpu_ms"),
            }
        )
        if self.running.timed_out:
            self.metrics.timed_out(self._tool)

    def written(self, outcome: Outcome, written: str) -> None:
        """The worker tried to store the run's outcome; ``written`` is what `write_outcome` said."""
        if written != "ok":
            self.span.outcome(f"dropped: {written}")
            return
        status = finished_status(outcome.error, outcome.result)
        self.metrics.outcome_written(self._tool, status, self.running.delivery.created_ms)
        self.span.outcome(status, outcome.message if status != "completed" else None)

    @contextlib.contextmanager
    def retrying(self, retry: RetryLater) -> Generator[None]:
        """Around scheduling the next run: a span of its own, and the count."""
        self.metrics.retry_scheduled(self._tool)
        self.span.outcome("retry", retry.error)
        name = f"task.retry {self._tool or ''}".rstrip()
        attributes = {
            "mcp_tasks.retry.delay_s": retry.delay_s,
            "mcp_tasks.retry.next_attempt": retry.next_attempt,
            "mcp_tasks.retry.attempts": retry.attempts,
            "mcp_tasks.retry.error": retry.error,
        }
        with step_span(name, attributes):
            yield

    def retry_failed(self) -> None:
        """Scheduling the retry found the task's runs used up: the task failed."""
        self.metrics.task_failed(self._tool)

    def stopped(self, reason: str) -> None:
        """The run was stopped from outside (cancelled, lease lost, handed back)."""
        self.span.outcome("stopped")
        self.span.set({"mcp_tasks.stop_reason": reason})


@contextlib.contextmanager
def observed_run(metrics: Metrics, running: RunningTask) -> Generator[RunReport]:
    """The run's span (a child of the task's create span, through the job) and its report."""
    d = running.delivery
    with run_span(d.tool, d.task_id, d.attempt, d.run, job_carrier(d.job.meta)) as span:
        yield RunReport(metrics, running, span)
