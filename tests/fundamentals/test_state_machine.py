"""The task state machine, enforced inside Redis by one Lua script per change.

working <-> input_required -> completed | failed | cancelled; terminal statuses never change.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import TaskIsTerminal, TaskNotFound
from mcp_tasks_redis.engine.record import Progress, TaskStatus


@pytest.fixture
async def engine(redis: aioredis.Redis, namespace: str) -> AsyncIterator[TaskEngine]:
    engine = TaskEngine(redis, namespace=namespace)
    yield engine
    await engine.close()


async def test_a_new_task_is_working(engine: TaskEngine) -> None:
    record = await engine.tasks.create(tool="greet", arguments={"name": "Ann"})
    assert record.status is TaskStatus.WORKING
    assert record.arguments == {"name": "Ann"}


async def test_working_and_input_required_alternate(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    assert (
        await engine.tasks.update(task.task_id, status="input_required")
    ).status is TaskStatus.INPUT_REQUIRED
    assert (await engine.tasks.update(task.task_id, status="working")).status is TaskStatus.WORKING


@pytest.mark.parametrize("start", ["working", "input_required"])
@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
async def test_any_unfinished_status_may_end(engine: TaskEngine, start: str, end: str) -> None:
    task = await engine.tasks.create()
    if start != "working":
        await engine.tasks.update(task.task_id, status=start)
    assert (await engine.tasks.update(task.task_id, status=end)).status == end


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("then", ["working", "input_required", "completed", "failed", "cancelled"])
async def test_a_terminal_status_never_changes(engine: TaskEngine, end: str, then: str) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, status=end)
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, status=then)
    assert (await engine.tasks.get(task.task_id)).status == end  # type: ignore[union-attr]


async def test_a_terminal_task_keeps_its_message_and_progress(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, status="completed", message="done")
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, message="changed later")
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, progress=Progress(progress=1))
    assert (await engine.tasks.get(task.task_id)).status_message == "done"  # type: ignore[union-attr]


async def test_status_message_and_outcome_are_written_together(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    done = await engine.tasks.update(
        task.task_id, status="failed", message="boom", error={"code": -32603, "message": "boom"}
    )
    assert (done.status, done.status_message, done.error) == (
        TaskStatus.FAILED,
        "boom",
        {"code": -32603, "message": "boom"},
    )
    assert done.updated_at_ms >= task.updated_at_ms


async def test_a_cancel_that_lands_first_beats_the_completion(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.tasks.cancel(task.task_id)
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, status="completed", result={"content": []})
    final = await engine.tasks.get(task.task_id)
    assert final is not None
    assert final.status is TaskStatus.CANCELLED
    assert final.result is None


async def test_a_result_staged_before_a_cancel_is_dropped(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, result={"content": []})
    cancelled = await engine.tasks.cancel(task.task_id)
    assert cancelled.result is None


async def test_changing_a_missing_task_is_refused(engine: TaskEngine) -> None:
    with pytest.raises(TaskNotFound):
        await engine.tasks.update("no-such-task", status="completed")


async def test_progress_is_stored_and_published(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    async with engine.events.watch(engine.keys.channel(task.task_id)) as watch:
        await engine.tasks.update(
            task.task_id, progress=Progress(progress=40, total=100, message="40%"), message="40%"
        )
        # A watcher may also see a "reconnected" nudge (re-read the task) before the event.
        event = await watch.next(5.0)
        while event is not None and event["type"] == "reconnected":
            event = await watch.next(5.0)
    assert event is not None
    assert event["type"] == "progress"
    assert event["progress"]["progress"] == 40
    stored = await engine.tasks.get(task.task_id)
    assert stored is not None
    assert stored.progress == Progress(progress=40, total=100, message="40%")


async def test_an_unknown_status_is_refused_before_reaching_redis(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    with pytest.raises(ValueError, match="done"):
        await engine.tasks.update(task.task_id, status="done")
    assert (await engine.tasks.get(task.task_id)).status is TaskStatus.WORKING  # type: ignore[union-attr]
