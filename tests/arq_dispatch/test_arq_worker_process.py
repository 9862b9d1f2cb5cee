"""End to end through real arq worker processes: the documented path (``python -m arq`` on a team's
own ``WorkerSettings``, tests/arq_dispatch/arq_app.py) and ``mcp-tasks-redis worker --dispatcher arq``.

Tasks are created through the engine API as a server replica creates them; the workers are
separate OS processes. A worker stopped with SIGTERM hands its task back and another runs it at
once, uncounted; a worker killed with SIGKILL loses its task until arq's in-progress key expires
(the job timeout plus 10 s), after which another worker runs it as a new, counted attempt.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

pytest.importorskip("arq", reason='the arq dispatcher needs the [arq] extra: pip install ".[arq]"')

import redis.asyncio as aioredis

from mcp_tasks_redis.arq_dispatch import ArqDispatch, queue_name_for
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import TaskRecord, TaskStatus
from tests.arq_dispatch.arq_app import worker_env
from tests.arq_dispatch.helpers import arq_keys_left
from tests.arq_dispatch.limits import LIMITS
from tests.integration.stack import ProductProcess, Stack, product_command, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]

# The crash test's job timeout: arq's in-progress key, and so the wait after a SIGKILL, is this
# plus 10 s. Our own limit on a run is a little less (ArqTasks.time_limit_s).
JOB_TIMEOUT_S = 3.0


@pytest.fixture
def stack(request: pytest.FixtureRequest, redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Stack]:
    processes = Stack(redis_url, namespace, tmp_path)
    try:
        yield processes
    finally:
        processes.close()
        request.node.add_report_section("teardown", "worker logs", processes.report())


@pytest.fixture
async def remote(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    """The test's engine: it creates tasks as a server replica configured for arq would."""
    engine = TaskEngine(
        redis, namespace=namespace, limits=LIMITS, dispatcher=ArqDispatch.for_namespace(namespace)
    )
    yield engine
    await engine.close()


def arq_settings_worker(stack: Stack, name: str, *, hold: bool) -> ProductProcess:
    """``python -m arq tests.arq_dispatch.arq_app.WorkerSettings``: a team's own settings, as documented."""
    env = stack.env()  # MCP_TASKS_* are not read here: WorkerSettings says everything
    env.update(worker_env(stack.redis_url, stack.namespace, job_timeout_s=JOB_TIMEOUT_S, hold=hold))
    argv = [sys.executable, "-m", "arq", "tests.arq_dispatch.arq_app.WorkerSettings"]
    worker = ProductProcess(name, argv, env, stack.workdir / f"{name}.log")
    stack.processes.append(worker)
    return worker


def cli_worker(stack: Stack, name: str, *, hold: bool) -> ProductProcess:
    """``mcp-tasks-redis worker --dispatcher arq`` on the test tools."""
    env = stack.env(dispatcher="arq", arq_job_timeout_s=str(JOB_TIMEOUT_S), max_attempts=LIMITS.max_attempts)
    env["ARQ_TEST_HOLD"] = "1" if hold else "0"
    argv = [*product_command(), "worker", "--app", "tests.arq_dispatch.arq_app:app", "--concurrency", "4"]
    worker = ProductProcess(name, argv, env, stack.workdir / f"{name}.log")
    stack.processes.append(worker)
    return worker


async def ended(engine: TaskEngine, task_id: str, timeout: float = 30) -> TaskRecord:
    record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=timeout)
    assert record is not None
    return record


async def started(engine: TaskEngine, task_id: str, attempt: int = 1) -> None:
    message = f"started on attempt {attempt}"
    await engine.wait_until(task_id, lambda r: r is not None and r.status_message == message, timeout=20)


async def assert_arq_clean(redis: aioredis.Redis, engine: TaskEngine, task_ids: list[str]) -> None:
    """arq ends a job just after our function wrote the task's outcome, and says so by no event:
    its keys are polled until they are gone, and with them the emptied queue."""
    queue = queue_name_for(engine.keys.namespace)

    async def clean() -> bool:
        return not await arq_keys_left(redis, task_ids) and not await redis.exists(queue)

    await wait_for(clean, timeout_s=10, what="arq to end the tasks' jobs")


async def test_tasks_run_and_cancel_through_a_real_arq_worker_process(
    stack: Stack, remote: TaskEngine, redis: aioredis.Redis
) -> None:
    arq_settings_worker(stack, "arq-worker", hold=True)
    echoes = [
        await remote.tasks.create(tool="echo", arguments={"text": str(i)}, dispatch=True) for i in range(5)
    ]
    held = await remote.tasks.create(tool="hold", dispatch=True)
    for i, task in enumerate(echoes):
        done = await ended(remote, task.task_id)
        assert (done.status, done.result) == (
            TaskStatus.COMPLETED,
            {"content": [{"type": "text", "text": f"echo: {i}"}]},
        )
    await started(remote, held.task_id)
    await remote.tasks.cancel(held.task_id)
    stopped = await ended(remote, held.task_id)
    assert stopped.status is TaskStatus.CANCELLED
    tasks = [t.task_id for t in [*echoes, held]]
    await assert_arq_clean(redis, remote, tasks)


async def test_a_worker_stopped_with_sigterm_hands_its_task_to_another_uncounted(
    stack: Stack, remote: TaskEngine, redis: aioredis.Redis
) -> None:
    first = cli_worker(stack, "worker-1", hold=True)
    task = await remote.tasks.create(tool="hold", dispatch=True)
    await started(remote, task.task_id)
    first.terminate()
    await first.wait_exit(10)
    cli_worker(stack, "worker-2", hold=False)
    done = await ended(remote, task.task_id)
    assert (done.status, done.attempt, done.run) == (TaskStatus.COMPLETED, 1, 2)
    assert done.result == {"content": [{"type": "text", "text": "released"}]}
    await assert_arq_clean(redis, remote, [task.task_id])


async def test_a_killed_worker_task_runs_again_after_arq_lock_expires_as_a_new_attempt(
    stack: Stack, remote: TaskEngine, redis: aioredis.Redis
) -> None:
    first = arq_settings_worker(stack, "worker-1", hold=True)
    task = await remote.tasks.create(tool="hold", dispatch=True)
    await started(remote, task.task_id)
    first.kill()
    cli_worker(stack, "worker-2", hold=False)
    done = await ended(remote, task.task_id, timeout=JOB_TIMEOUT_S + 10 + 20)
    assert (done.status, done.attempt, done.run) == (TaskStatus.COMPLETED, 2, 2)
    assert done.result == {"content": [{"type": "text", "text": "released"}]}
    await assert_arq_clean(redis, remote, [task.task_id])
