"""CI version of the chaos driver (bench/chaos/driver.py): 40 tasks on three workers while a
worker is SIGKILLed every ~2 s and replaced. Every task ends terminal (completed, or failed with a
reason), none is lost or stuck, each has exactly one outcome, and every task a dead worker held is
started again elsewhere within lease + reap interval + slack.

    .venv/bin/pytest tests/chaos/test_chaos.py -s
"""

from __future__ import annotations

import time

import pytest

pytest.register_assert_rewrite("tests.integration.procs", "tests.chaos.chaoslib")

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.engine.keys import GROUP  # noqa: E402
from mcp_tasks_redis.engine.limits import TaskLimits  # noqa: E402
from mcp_tasks_redis.engine.streams import StreamDispatch  # noqa: E402
from tests.chaos.chaoslib import REAP_INTERVAL_S, ChaosConfig, ChaosRun  # noqa: E402
from tests.integration.procs import Stack  # noqa: E402

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


async def test_sigkilled_workers_lose_no_task(stack: Stack, engine: TaskEngine) -> None:
    config = ChaosConfig(
        tasks=40,
        workers=3,
        duration_s=16,
        kill_every_s=2.0,
        lease_ms=2000,
        max_attempts=20,
        concurrency=10,
        min_task_s=0.5,
        max_task_s=3.0,
    )
    report = await ChaosRun(stack, engine, config).run()
    print("\n" + report.summary())
    assert report.tasks == 40
    assert report.kills >= 4, "the run must actually kill workers"
    assert report.recoveries, "at least one kill must have hit a running task"
    assert not report.lost, report.lost
    assert not report.stuck, report.stuck
    assert not report.failed_other, report.failed_other
    assert not report.wrong_results, report.wrong_results
    assert not report.multiple_outcomes, report.multiple_outcomes
    assert not report.unrecovered, report.unrecovered
    assert report.completed + report.failed_tool + report.failed_exhausted == report.tasks
    assert report.max_recovery_s <= report.recovery_bound_s, report.summary()


async def test_worker_killed_between_pickup_and_start(stack: Stack, redis_url: str, namespace: str) -> None:
    """A worker dies in the instant after XREADGROUP handed it the job and before it started the
    tool: the job sits in the group's pending list under a consumer that will never renew it and
    the task never showed a run. Another worker must still run it, within lease + reap interval,
    not leave it `working` until its TTL runs out."""
    lease_ms = 2000
    stack.configure(lease_ms=lease_ms, poll_interval_ms=250)
    # The task is created as a server replica of this deployment would (same lease).
    engine = TaskEngine.from_url(redis_url, namespace=namespace, limits=TaskLimits(lease_ms=lease_ms))
    try:
        await pickup_without_start(stack, engine, lease_ms)
    finally:
        await engine.close()


async def pickup_without_start(stack: Stack, engine: TaskEngine, lease_ms: int) -> None:
    record = await engine.tasks.create(tool="slow_compute", arguments={"seconds": 0.2}, dispatch=True)
    task_id = record.task_id
    stream = engine.keys.shard_of(task_id).stream
    # What a worker's read does, by a consumer that then dies without a trace.
    await StreamDispatch(engine.conn, "ghost").ensure_groups()
    delivered = await engine.redis.xreadgroup(GROUP, "ghost", {stream: ">"}, count=1)
    assert delivered, "the job must have been delivered to the ghost"
    assert delivered[0][1], "the job must have been delivered to the ghost"
    picked_at = time.time()
    worker = await stack.start_worker("survivor")
    started = await worker.wait_for_log(f"task {task_id} started", timeout_s=lease_ms / 1000 + 10)
    done = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=10)
    assert done is not None, done
    assert done.status.value == "completed", done
    assert started.ts is not None
    recovery = started.ts - picked_at
    print(f"\npickup without start -> run on another worker: {recovery:.2f} s (lease {lease_ms} ms)")
    assert recovery < lease_ms / 1000 + REAP_INTERVAL_S + 3
