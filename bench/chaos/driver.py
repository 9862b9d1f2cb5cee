"""Chaos driver: N tasks across several workers while workers are SIGKILLed and replaced.

    .venv/bin/python bench/chaos/driver.py --tasks 200 --workers 3 --duration 60 --kill-every 2.0

Starts one server replica (Streamable HTTP) and the workers as real processes on one Redis
(``--redis-url``, else ``REDIS_URL``, else an embedded redis-server), creates the tasks through an
MCP client, kills a random worker every ``--kill-every`` seconds (starting a replacement each
time), then waits until every task is terminal and prints: tasks, kills, re-runs, max recovery
time (kill -> the dead worker's task started again elsewhere), lost, stuck. Exits 1 if any task
was lost or stuck, or any other check failed (see tests/chaos/chaoslib.py).

Only its own key namespace (and its tasks' arq job keys) are deleted afterwards; it never flushes
a Redis. The CI version of this run is tests/chaos/test_chaos.py.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from mcp_tasks_redis.engine.dispatch import (  # noqa: E402
    ARQ_IN_PROGRESS_PREFIX,
    ARQ_JOB_PREFIX,
    ARQ_RESULT_PREFIX,
    ARQ_RETRY_PREFIX,
)

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.ops.embedded import EmbeddedRedis  # noqa: E402
from tests.chaos.chaoslib import ChaosConfig, ChaosReport, ChaosRun  # noqa: E402
from tests.integration.procs import Stack  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", type=int, default=200)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of killing")
    p.add_argument("--kill-every", type=float, default=2.0, help="mean seconds between SIGKILLs")
    p.add_argument("--lease-ms", type=int, default=2000)
    p.add_argument("--max-attempts", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--min-task", type=float, default=0.5, help="shortest slow_compute, seconds")
    p.add_argument("--max-task", type=float, default=3.0, help="longest slow_compute, seconds")
    p.add_argument("--fail-ratio", type=float, default=0.05, help="share of tasks running the fail tool")
    p.add_argument("--settle-timeout", type=float, default=90.0)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    p.add_argument("--logs", type=Path, default=None, help="keep process logs in this directory")
    return p.parse_args(argv)


async def cleanup(engine: TaskEngine, namespace: str, task_ids: list[str]) -> None:
    keys = [k async for k in engine.redis.scan_iter(match=f"{namespace}:*", count=1000)]
    for task_id in task_ids:
        keys += [
            p + task_id for p in (ARQ_JOB_PREFIX, ARQ_IN_PROGRESS_PREFIX, ARQ_RETRY_PREFIX, ARQ_RESULT_PREFIX)
        ]
    for i in range(0, len(keys), 500):
        await engine.redis.delete(*keys[i : i + 500])


async def drive(args: argparse.Namespace, redis_url: str) -> ChaosReport:
    config = ChaosConfig(
        tasks=args.tasks,
        workers=args.workers,
        duration_s=args.duration,
        kill_every_s=args.kill_every,
        lease_ms=args.lease_ms,
        max_attempts=args.max_attempts,
        concurrency=args.concurrency,
        min_task_s=args.min_task,
        max_task_s=args.max_task,
        fail_ratio=args.fail_ratio,
        settle_timeout_s=args.settle_timeout,
        seed=args.seed,
    )
    namespace = f"chaos-{uuid.uuid4().hex[:10]}"
    workdir = args.logs or Path(tempfile.mkdtemp(prefix="mcp-tasks-chaos-"))
    workdir.mkdir(parents=True, exist_ok=True)
    stack = Stack(redis_url, namespace, workdir)
    engine = TaskEngine.from_url(redis_url, namespace=namespace)
    run = ChaosRun(stack, engine, config, log=lambda line: print(line, flush=True))
    try:
        print(
            f"chaos: {config.tasks} tasks, {config.workers} workers, {config.duration_s:g} s, "
            f"SIGKILL every ~{config.kill_every_s:g} s; redis {redis_url}, namespace {namespace}, "
            f"logs {workdir}",
            flush=True,
        )
        return await run.run()
    finally:
        stack.close()
        await cleanup(engine, namespace, list(run.expected))
        await engine.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    embedded: EmbeddedRedis | None = None
    redis_url = args.redis_url
    if not redis_url:
        embedded = EmbeddedRedis(prefer="redis-server").start()
        redis_url = embedded.url
    try:
        report = asyncio.run(drive(args, redis_url))
    finally:
        if embedded is not None:
            embedded.stop()
    print(report.summary(), flush=True)
    if report.lost or report.stuck:
        print("FAIL: tasks lost or stuck", flush=True)
        return 1
    if not report.ok:
        print("FAIL: see above", flush=True)
        return 1
    if report.max_recovery_s > report.recovery_bound_s:
        print(
            f"FAIL: recovery {report.max_recovery_s:.2f} s over {report.recovery_bound_s:.2f} s", flush=True
        )
        return 1
    print("OK", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
