"""`mcp-tasks-redis dev`: the whole stack in one command serves real MCP clients and stops cleanly.

Also the operator commands on tasks that real workers run, and the Redis choice of the dev stack.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from ops_support import (
    ROOT,
    clean_env,
    command,
    free_port,
    initialize_status,
    mcp_session,
    pid_alive,
    run_cli,
    run_task,
    stop_process,
    wait_until,
)

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.ops.stack import StackError, choose_redis


@dataclass
class Dev:
    process: subprocess.Popen[str]
    port: int
    log: Path
    lines: list[str] = field(default_factory=list[str])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def child_pids(self) -> list[int]:
        out = self.output
        server = re.search(r"server: .*\(pid (\d+)\)", out)
        workers = re.search(r"workers: \d+ \(pids ([\d, ]+)\)", out)
        assert server, out
        assert workers, out
        return [int(server.group(1)), *(int(p) for p in workers.group(1).split(", "))]


def start_dev(env: dict[str, str], tmp_path: Path, *extra: str) -> Dev:
    port = free_port()
    log = tmp_path / "dev.log"
    process = subprocess.Popen(
        [*command(), "dev", "--port", str(port), *extra],
        env=env,
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=log.open("w"),
        stdin=subprocess.DEVNULL,
    )
    dev = Dev(process, port, log)

    def read() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            dev.lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        wait_until(lambda: "ready:" in dev.output or process.poll() is not None, 60, "dev to be ready")
    except AssertionError:
        stop_process(process)
        raise
    assert process.poll() is None, dev.output + log.read_text()
    return dev


@pytest.fixture
def dev(redis_url: str, namespace: str, tmp_path: Path) -> Iterator[Dev]:
    stack = start_dev(clean_env(redis_url, namespace), tmp_path, "--workers", "2")
    try:
        yield stack
    finally:
        stop_process(stack.process)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_dev_serves_mcp_and_stops_on_signal(dev: Dev, redis_url: str, sig: signal.Signals) -> None:
    assert f"redis:   {redis_url}" in dev.output
    assert f"MCP endpoint {dev.url}" in dev.output
    pids = dev.child_pids()
    assert len(pids) == 3
    assert all(pid_alive(p) for p in pids)

    # MCP answers at /mcp and /mcp/ themselves: no redirect first.
    assert [initialize_status(dev.url), initialize_status(dev.url + "/")] == [200, 200]

    task_id, result, progress = asyncio.run(run_task(dev.url, "slow_compute", {"seconds": 0.5}))
    assert not result.isError
    assert result.content[0].text == "Computed for 0.5 seconds"
    assert progress
    assert progress[-1] == 100.0
    assert task_id

    async def plain_call() -> str:
        async with mcp_session(dev.url) as (session, _):
            called = await session.call_tool("greet", {"name": "dev"})
            return called.content[0].text  # type: ignore[union-attr]

    assert asyncio.run(plain_call()) == "Hello, dev!"

    dev.process.send_signal(sig)  # Ctrl-C reaches only `dev`: it stops its children itself
    assert dev.process.wait(30) == 0
    wait_until(lambda: "stopped" in dev.output, 5, "the last line")
    assert "stopping: worker 1, worker 2, server" in dev.output
    assert not [p for p in pids if pid_alive(p)], "a child of dev outlived it"
    assert "Traceback" not in dev.output
    # The SDK logs a traceback of its own when a client's GET stream closes; ours must log none.
    assert "mcp_tasks_redis/" not in dev.log.read_text()


@pytest.mark.slow
def test_dev_stops_everything_when_a_child_dies(dev: Dev) -> None:
    pids = dev.child_pids()
    import os

    os.kill(pids[1], signal.SIGKILL)  # worker 1 crashes
    assert dev.process.wait(30) == 2
    wait_until(lambda: not [p for p in pids if pid_alive(p)], 15, "the other children to stop")
    assert "worker 1 exited with code -9" in dev.log.read_text()


@pytest.mark.slow
async def test_tasks_commands_on_tasks_real_workers_run(dev: Dev, redis_url: str, namespace: str) -> None:
    env = clean_env(redis_url, namespace)
    done_id, _, _ = await run_task(dev.url, "slow_compute", {"seconds": 0.2})
    async with mcp_session(dev.url) as (_, tasks):
        long_id = (await tasks.call_tool_as_task("slow_compute", {"seconds": 30})).task.taskId

    engine = TaskEngine.from_url(redis_url, namespace=namespace)
    try:
        record = await engine.wait_until(
            long_id, lambda r: r is not None and r.progress is not None, timeout=20
        )
        assert record is not None
        assert record.status == "working"

        listed = await asyncio.to_thread(run_cli, "tasks", "ls", env=env)
        assert listed.returncode == 0
        assert done_id in listed.stdout
        assert long_id in listed.stdout
        assert "completed" in listed.stdout
        assert "working" in listed.stdout
        result = await asyncio.to_thread(run_cli, "tasks", "result", done_id, env=env)
        assert "Computed for 0.2 seconds" in result.stdout

        # Follow the long task live while an operator cancels it from another shell.
        watcher = await asyncio.create_subprocess_exec(
            *command(),
            "tasks",
            "watch",
            long_id,
            "--interval",
            "0.2",
            env=env,
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        cancelled = await asyncio.to_thread(run_cli, "tasks", "cancel", long_id, env=env)
        assert cancelled.returncode == 0
        assert "cancelled" in cancelled.stdout
        out, err = await asyncio.wait_for(watcher.communicate(), 30)
        assert watcher.returncode == 0, err
        assert long_id in out.decode()
        assert "cancelled" in out.decode()

        # The worker let go: arq's in-progress key for the job disappears.
        deadline = asyncio.get_running_loop().time() + 10
        while await engine.redis.exists(f"arq:in-progress:{long_id}"):
            assert asyncio.get_running_loop().time() < deadline, "the worker did not stop the tool"
            await asyncio.sleep(0.05)
        shown = await asyncio.to_thread(run_cli, "tasks", "get", long_id, env=env)
        assert "status:    cancelled" in shown.stdout
        health = await asyncio.to_thread(run_cli, "health", "worker", env=env)
        assert health.returncode == 0, health
        assert health.stdout.count("ok: worker") == 2, health
        server = await asyncio.to_thread(
            run_cli, "health", "server", "--url", f"http://127.0.0.1:{dev.port}/health", env=env
        )
        assert server.returncode == 0
        assert '"status":"ok"' in server.stdout.replace(" ", "")
    finally:
        await engine.close()


def test_dev_redis_choice(redis_url: str) -> None:
    # Nothing on the default port: an embedded Redis is started, named, and stopped by its owner.
    choice, embedded = choose_redis(None, default_url="redis://127.0.0.1:1/0")
    assert embedded is not None
    try:
        assert embedded.running
        assert choice.url == embedded.url
        assert "embedded" in choice.note
    finally:
        embedded.stop()
    # Something answers on the default port: it is used as is.
    choice, embedded = choose_redis(None, default_url=redis_url)
    assert embedded is None
    assert choice.url == redis_url
    assert "already running" in choice.note
    # An explicit URL must answer.
    with pytest.raises(StackError, match="unreachable"):
        choose_redis("redis://127.0.0.1:1/0")
