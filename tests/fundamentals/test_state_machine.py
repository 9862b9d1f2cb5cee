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


async def status_of(engine: TaskEngine, task_id: str) -> TaskStatus:
    record = await engine.tasks.get(task_id)
    assert record is not None
    return record.status


async def test_a_new_task_is_working(engine: TaskEngine) -> None:
    record = await engine.tasks.create(tool="greet", arguments={"name": "Ann"})
    assert record.status is TaskStatus.WORKING
    stored = await engine.tasks.get(record.task_id)
    assert stored is not None
    assert (stored.status, stored.tool, stored.arguments) == (TaskStatus.WORKING, "greet", {"name": "Ann"})


async def test_working_and_input_required_alternate(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    assert await engine.tasks.update(task.task_id, status="input_required") is TaskStatus.INPUT_REQUIRED
    assert await engine.tasks.update(task.task_id, status="working") is TaskStatus.WORKING
    assert await status_of(engine, task.task_id) is TaskStatus.WORKING


@pytest.mark.parametrize("start", ["working", "input_required"])
@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
async def test_any_unfinished_status_may_end(engine: TaskEngine, start: str, end: str) -> None:
    task = await engine.tasks.create()
    if start != "working":
        await engine.tasks.update(task.task_id, status=start)
    assert await engine.tasks.update(task.task_id, status=end) == end
    assert await status_of(engine, task.task_id) == end


@pytest.mark.parametrize("end", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("then", ["working", "input_required", "completed", "failed", "cancelled"])
async def test_a_terminal_status_never_changes(engine: TaskEngine, end: str, then: str) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, status=end)
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, status=then)
    assert await status_of(engine, task.task_id) == end


async def test_a_terminal_task_keeps_its_message_whatever_is_written_later(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, status="completed", message="done")
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, message="changed later")
    # A worker's progress write racing the end lands, but no reader sees it on a finished task.
    await engine.tasks.report_progress(task.task_id, Progress(50, 100, "halfway", at_ms=2**41))
    final = await engine.tasks.get(task.task_id)
    assert final is not None
    assert (final.status_message, final.updated_at_ms) == ("done", final.updated_at_ms)
    assert final.updated_at_ms < 2**41


async def test_status_message_and_outcome_are_written_together(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    error = {"code": -32603, "message": "boom"}
    await engine.tasks.update(task.task_id, status="failed", message="boom", error=error)
    done = await engine.tasks.get(task.task_id)
    assert done is not None
    assert (done.status, done.status_message, done.error) == (TaskStatus.FAILED, "boom", error)
    assert done.updated_at_ms >= task.updated_at_ms


async def test_a_cancel_that_lands_first_beats_the_completion(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    assert await engine.tasks.cancel(task.task_id) is TaskStatus.WORKING
    with pytest.raises(TaskIsTerminal):
        await engine.tasks.update(task.task_id, status="completed", result={"content": []})
    final = await engine.tasks.get(task.task_id)
    assert final is not None
    assert (final.status, final.result) == (TaskStatus.CANCELLED, None)


async def test_cancelling_a_finished_task_is_refused(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, status="completed", result={"content": []})
    with pytest.raises(TaskIsTerminal) as refused:
        await engine.tasks.cancel(task.task_id)
    assert refused.value.current == "completed"


async def test_a_result_staged_before_a_cancel_is_dropped(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.tasks.update(task.task_id, result={"content": []})
    await engine.tasks.cancel(task.task_id)
    cancelled = await engine.tasks.get(task.task_id)
    assert cancelled is not None
    assert cancelled.result is None


async def test_changing_or_cancelling_a_missing_task_is_refused(engine: TaskEngine) -> None:
    with pytest.raises(TaskNotFound):
        await engine.tasks.update("no-such-task", status="completed")
    with pytest.raises(TaskNotFound):
        await engine.tasks.cancel("no-such-task")


async def test_progress_is_stored_and_published(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    await engine.events.ready()
    with engine.events.listen(task.task_id) as listener:
        await engine.tasks.report_progress(
            task.task_id, Progress(40, 100, "40%", at_ms=task.created_at_ms + 1)
        )
        event = await listener.next(5.0)
    assert event is not None
    assert (event["k"], event["p"]["v"]) == ("progress", 40)
    stored = await engine.tasks.get(task.task_id)
    assert stored is not None
    assert stored.progress == Progress(40, 100, "40%", at_ms=task.created_at_ms + 1)
    assert stored.status_message == "40%"


async def test_progress_for_a_task_that_is_gone_leaves_nothing_behind(
    engine: TaskEngine, redis: aioredis.Redis
) -> None:
    task = await engine.tasks.create()
    await engine.tasks.delete(task.task_id)
    assert await engine.tasks.report_progress(task.task_id, Progress(10)) is False
    assert await redis.exists(engine.keys.task(task.task_id)) == 0


async def test_an_unknown_status_is_refused_before_reaching_redis(engine: TaskEngine) -> None:
    task = await engine.tasks.create()
    with pytest.raises(ValueError, match="done"):
        await engine.tasks.update(task.task_id, status="done")
    assert await status_of(engine, task.task_id) is TaskStatus.WORKING
