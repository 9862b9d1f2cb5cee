"""`tasks ls|get|result|cancel|watch` and `health worker` against tasks written straight to Redis.

Fast: the tasks are made with the engine (no server, no worker), then every command runs as a
subprocess. The end-to-end twin, with tasks run by real workers, is in test_cli_dev.py.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio
from ops_support import assert_one_line_error, clean_env, run_cli

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.record import Progress, TaskStatus
from mcp_tasks_redis.engine.tasks import now_ms


@dataclass
class Seeded:
    working: str
    completed: str
    failed: str
    env: dict[str, str]


async def after_creation_ms(engine: TaskEngine, created_ms: int) -> None:
    """Until Redis' clock has passed ``created_ms``: the next task is created strictly later, so
    newest-first order is defined (creation times are in milliseconds)."""
    while True:
        seconds, micros = await engine.redis.time()
        if seconds * 1000 + micros // 1000 > created_ms:
            return


@pytest_asyncio.fixture
async def seeded(redis_url: str, namespace: str) -> AsyncIterator[Seeded]:
    engine = TaskEngine.from_url(redis_url, namespace=namespace)
    try:
        failed = await engine.tasks.create(tool="fail", arguments={"message": "boom"})
        await engine.tasks.update(
            failed.task_id,
            status=TaskStatus.FAILED,
            message="boom",
            result={"content": [{"type": "text", "text": "boom"}], "isError": True},
        )
        await after_creation_ms(engine, failed.created_at_ms)
        completed = await engine.tasks.create(tool="slow_compute", arguments={"seconds": 1})
        await engine.tasks.update(
            completed.task_id,
            status=TaskStatus.COMPLETED,
            message="Completed",
            result={"content": [{"type": "text", "text": "Computed for 1 seconds"}]},
        )
        await after_creation_ms(engine, completed.created_at_ms)
        working = await engine.tasks.create(tool="long_report", arguments={"seconds": 60})
        await engine.tasks.report_progress(
            working.task_id, Progress(progress=40, total=100, message="gather: 40%", at_ms=now_ms())
        )
        yield Seeded(working.task_id, completed.task_id, failed.task_id, clean_env(redis_url, namespace))
    finally:
        await engine.close()


def test_ls_lists_every_task_newest_first(seeded: Seeded) -> None:
    result = run_cli("tasks", "ls", env=seeded.env)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for task_id in (seeded.working, seeded.completed, seeded.failed):
        assert task_id in out
    assert out.index(seeded.working) < out.index(seeded.completed) < out.index(seeded.failed)
    assert "40%" in out
    assert "long_report" in out
    assert "gather: 40%" in out


def test_ls_filters_and_limits(seeded: Seeded) -> None:
    only = run_cli("tasks", "ls", "--status", "completed", env=seeded.env).stdout
    assert seeded.completed in only
    assert seeded.working not in only
    assert seeded.failed not in only
    newest = run_cli("tasks", "ls", "-n", "1", env=seeded.env).stdout
    assert seeded.working in newest
    assert seeded.completed not in newest


def test_get_shows_the_record(seeded: Seeded) -> None:
    result = run_cli("tasks", "get", seeded.working, env=seeded.env)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(":", 1) for line in result.stdout.splitlines())
    assert fields["id"].strip() == seeded.working
    assert fields["tool"].strip() == "long_report"
    assert fields["status"].strip() == "working"
    assert fields["progress"].strip() == "40% (gather: 40%)"
    assert json.loads(fields["arguments"]) == {"seconds": 60}


def test_result_of_each_kind_of_task(seeded: Seeded) -> None:
    done = run_cli("tasks", "result", seeded.completed, env=seeded.env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["content"][0]["text"] == "Computed for 1 seconds"

    failed = run_cli("tasks", "result", seeded.failed, env=seeded.env)
    assert failed.returncode == 1
    assert json.loads(failed.stdout)["isError"] is True
    assert_one_line_error(failed, "failed", "boom")

    running = run_cli("tasks", "result", seeded.working, env=seeded.env)
    assert running.returncode == 1
    assert_one_line_error(running, "no result yet", "working at 40%")


def test_cancel_then_cancel_again(seeded: Seeded) -> None:
    first = run_cli("tasks", "cancel", seeded.working, env=seeded.env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.split() == [seeded.working, "cancelled"]
    shown = run_cli("tasks", "get", seeded.working, env=seeded.env).stdout
    assert "status:    cancelled" in shown
    assert "Cancelled by an operator" in shown
    again = run_cli("tasks", "cancel", seeded.working, env=seeded.env)
    assert again.returncode == 1
    assert_one_line_error(again, "already ended (cancelled)")
    finished = run_cli("tasks", "cancel", seeded.completed, env=seeded.env)
    assert_one_line_error(finished, "already ended (completed)")


def test_ls_failed_shows_why_each_failed(seeded: Seeded) -> None:
    listed = run_cli("tasks", "ls", "--status", "failed", env=seeded.env)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if seeded.failed in line)
    assert "failed" in row
    assert "boom" in row
    assert seeded.completed not in listed.stdout
    assert seeded.working not in listed.stdout


def test_retry_runs_a_finished_task_again_as_a_new_task(seeded: Seeded) -> None:
    retried = run_cli("tasks", "retry", seeded.failed, env=seeded.env)
    assert retried.returncode == 0, retried.stderr
    new_id, status = retried.stdout.split()[:2]
    assert new_id != seeded.failed
    assert status == "working"
    shown = run_cli("tasks", "get", new_id, env=seeded.env)
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in shown.stdout.splitlines())}
    assert fields["rerun of"] == seeded.failed
    assert fields["tool"] == "fail"
    assert json.loads(fields["arguments"]) == {"message": "boom"}
    # The task that failed stays as it ended: a client holding its id still sees it failed.
    old = run_cli("tasks", "get", seeded.failed, env=seeded.env).stdout
    assert "status:    failed" in old
    unfinished = run_cli("tasks", "retry", seeded.working, env=seeded.env)
    assert unfinished.returncode == 1
    assert_one_line_error(unfinished, "has not finished (working)")


def test_watch_once(seeded: Seeded) -> None:
    table = run_cli("tasks", "watch", "--once", env=seeded.env)
    assert table.returncode == 0, table.stderr
    for header in ("id", "tool", "status", "progress", "message", "age"):
        assert header in table.stdout
    assert seeded.working in table.stdout
    assert seeded.failed in table.stdout
    one = run_cli("tasks", "watch", seeded.completed, "--once", env=seeded.env)
    assert one.returncode == 0, one.stderr
    assert seeded.completed in one.stdout
    assert seeded.working not in one.stdout
    assert "completed" in one.stdout


def test_watch_a_finished_task_returns_at_once(seeded: Seeded) -> None:
    started = time.monotonic()
    result = run_cli("tasks", "watch", seeded.failed, env=seeded.env, timeout=30)
    assert result.returncode == 0, result.stderr
    assert seeded.failed in result.stdout
    assert "failed" in result.stdout
    assert time.monotonic() - started < 15


async def test_ids_that_look_like_options(redis_url: str, namespace: str) -> None:
    # Generated ids are URL-safe base64 and may start with "-": they must still work as arguments.
    engine = TaskEngine.from_url(redis_url, namespace=namespace)
    try:
        task_id = (await engine.tasks.create(task_id="-n5-dash-first-id", tool="slow_compute")).task_id
    finally:
        await engine.close()
    env = clean_env(redis_url, namespace)
    for argv in (["get", task_id], ["watch", task_id, "--once"], ["cancel", task_id]):
        result = run_cli("tasks", *argv, env=env)
        assert result.returncode == 0, (argv, result.stderr)
        assert task_id in result.stdout


def test_health_worker_reads_the_reports(redis_url: str, namespace: str) -> None:
    import redis

    env = clean_env(redis_url, namespace)
    client = redis.Redis.from_url(redis_url)
    elsewhere = {
        "worker": "other:1:aa",
        "host": "some-other-host",
        "running": 0,
        "slots": 10,
        "completed": 0,
        "at": time.time(),
    }
    try:
        client.set(f"{namespace}:worker:other:1:aa", json.dumps(elsewhere), px=15_000)
        client.zadd(f"{namespace}:workers", {"other:1:aa": int(time.time() * 1000)})
        client.pexpire(f"{namespace}:workers", 15_000)
        missing = run_cli("health", "worker", env=env)
        assert missing.returncode == 1
        assert_one_line_error(missing, "no worker on host", "1 live worker(s) elsewhere")
        assert run_cli("health", "worker", "--any-host", env=env).returncode == 0

        mine = dict(elsewhere, worker="me:2:bb", host=socket.gethostname())
        client.set(f"{namespace}:worker:me:2:bb", json.dumps(mine), px=15_000)
        client.zadd(f"{namespace}:workers", {"me:2:bb": int(time.time() * 1000)})
        ok = run_cli("health", "worker", env=env)
        assert ok.returncode == 0, ok.stderr
        assert "ok: worker me:2:bb" in ok.stdout

        # A worker that stopped reporting: its key expired, the index entry lingers.
        client.delete(f"{namespace}:worker:me:2:bb")
        assert run_cli("health", "worker", env=env).returncode == 1
    finally:
        client.close()
