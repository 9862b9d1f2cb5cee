"""Runtime benchmarks: pickup latency, no-op throughput, progress relay latency.

Run from the repository root::

    .venv/bin/python bench/bench_runtime.py

It starts a throwaway ``redis-server`` on a free port (so the numbers and Redis INFO are this
run's alone), runs real worker / server processes against it, prints a Markdown table and writes
everything to ``bench/results/runtime.json``. Three measurements:

(a) enqueue -> start latency at low load: ``TaskEngine.tasks.create(..., dispatch=True)`` returning
    -> the tool starting on a worker process (``bench_tools.stamp_start`` returns ``time.time()``),
    one task every 20-60 ms; against plain arq with its default 0.5 s poll and with a 10 ms poll, in
    the same run (``bench/peers/arq_plain.py`` in arq's own venv, ``bench/.venvs/arq``). Our worker
    blocks on ``XREADGROUP``: Redis hands it the job as the create script adds it.
(b) no-op tasks per second through one worker process: N tasks created (up to 64 in flight) while
    the worker runs them, timed until every job is acknowledged (the dispatch streams are empty:
    create, delivery, run, outcome, acknowledgement), plus Redis commands per task from INFO.
(c) progress event -> client notification: a tool reports progress whose message is the wall
    clock at the report; an MCP client over Streamable HTTP subtracts it from the arrival time.
    The path is worker -> Redis (stored, stream, pub/sub) -> server relay -> SSE -> client.

All processes share the machine's clock; the numbers are wall-clock differences between them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import logging  # noqa: E402

import redis.asyncio as aioredis  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.ops.embedded import EmbeddedRedis  # noqa: E402

APP = "bench.bench_tools:app"
RESULTS = ROOT / "bench" / "results" / "runtime.json"
PICKUP_GAP_S = (0.020, 0.060)
WARMUP = 5


# -- statistics --------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) with linear interpolation between closest ranks."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(seconds: list[float]) -> dict[str, float]:
    """p50 / p90 / p99 / mean / max of durations given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "p50_ms": round(percentile(ms, 50), 3),
        "p90_ms": round(percentile(ms, 90), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "mean_ms": round(sum(ms) / len(ms), 3) if ms else float("nan"),
        "max_ms": round(max(ms), 3) if ms else float("nan"),
    }


# -- processes ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def product_command() -> list[str]:
    script = Path(sys.executable).parent / "mcp-tasks-redis"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from mcp_tasks_redis.ops.cli import main; main()"]


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{self.tail()}")

    def stop(self) -> None:
        try:
            if self.popen.poll() is None:
                self.popen.send_signal(signal.SIGTERM)
                try:
                    self.popen.wait(5)
                except subprocess.TimeoutExpired:
                    self.popen.kill()
                    self.popen.wait(5)
        finally:
            self.log.close()


class Processes:
    """Every process the benchmark started; all stopped on close, whatever happened."""

    def __init__(self, workdir: Path, redis_url: str) -> None:
        self.workdir = workdir
        self.redis_url = redis_url
        self.procs: list[Proc] = []

    def env(self, namespace: str, **settings: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TASKS_") and k != "REDIS_URL"}
        env.update(
            {
                "REDIS_URL": self.redis_url,
                "MCP_TASKS_NAMESPACE": namespace,
                "MCP_TASKS_APP": APP,
                "MCP_TASKS_LOG_LEVEL": "WARNING",
                "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update({f"MCP_TASKS_{k.upper()}": v for k, v in settings.items()})
        return env

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> Proc:
        log_path = self.workdir / f"{len(self.procs):02d}-{name}.log"
        log = log_path.open("ab")
        popen = subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        proc = Proc(name, popen, log_path, log)
        self.procs.append(proc)
        return proc

    def worker(self, namespace: str, concurrency: int = 10) -> Proc:
        return self.start(
            f"worker-{namespace}",
            [*product_command(), "worker", "--concurrency", str(concurrency)],
            self.env(namespace),
        )

    def server(self, namespace: str, port: int) -> Proc:
        argv = [
            *product_command(),
            "serve",
            "--transport",
            "streamable-http",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ]
        return self.start(f"server-{namespace}", argv, self.env(namespace))

    def close(self) -> None:
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.popen.send_signal(signal.SIGTERM)
        for proc in self.procs:
            proc.stop()
        self.procs.clear()


async def poll_until(
    check: Callable[[], Awaitable[bool]],
    timeout_s: float,
    what: str,
    watch: list[Proc] | None = None,
    interval: float = 0.01,
) -> None:
    """Await ``check()`` until true; fail after ``timeout_s`` or as soon as a watched process dies."""
    deadline = time.monotonic() + timeout_s
    while not await check():
        for proc in watch or []:
            proc.check_alive()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        await asyncio.sleep(interval)


# -- (a) enqueue -> start ----------------------------------------------------------------------


async def pickup_ours(procs: Processes, tasks: int) -> dict[str, Any]:
    namespace = f"bench-pickup-{uuid.uuid4().hex[:8]}"
    worker = procs.worker(namespace)
    engine = TaskEngine.from_url(procs.redis_url, namespace=namespace)
    try:

        async def run_one(record_latency: bool) -> tuple[str, float]:
            record = await engine.tasks.create(tool="stamp_start", arguments={}, dispatch=True)
            created = time.time()
            return record.task_id, created if record_latency else 0.0

        for _ in range(WARMUP):  # the first also waits for the worker to come up
            task_id, _ = await run_one(False)
            done = await wait_terminal(engine, task_id, 30, [worker])
            assert done["status"] == "completed", done
        sent: list[tuple[str, float]] = []
        for _ in range(tasks):
            sent.append(await run_one(True))
            await asyncio.sleep(random.uniform(*PICKUP_GAP_S))
        await poll_until(lambda: active_empty(engine), 30, "the pickup tasks to finish", [worker])
        latencies: list[float] = []
        for task_id, created in sent:
            record = await engine.tasks.get(task_id)
            assert record is not None, task_id
            assert record.result is not None, record
            latencies.append(float(record.result["structuredContent"]["started"]) - created)
        return {"system": "ours (XREADGROUP BLOCK)", **summary_ms(latencies)}
    finally:
        await engine.close()


async def pickup_arq(procs: Processes, tasks: int, poll_s: float) -> dict[str, Any]:
    """Plain arq, run by the harness's arq runner (``bench/peers/arq_plain.py``) in arq's own venv
    (``bench/.venvs/arq``: the project no longer depends on arq, and arq pins redis-py < 6).

    The runner's ``returned_to_start_ms`` is this module's definition of pickup: from the enqueue
    call having returned to the job starting.
    """
    sys.path.insert(0, str(ROOT / "bench"))
    from run_all import VENV_SPECS, ensure_venv

    python, err = ensure_venv("arq", VENV_SPECS["arq"])
    if python is None:
        raise RuntimeError(f"the arq venv could not be built: {err}")
    argv = [
        str(python),
        str(ROOT / "bench" / "peers" / "arq_plain.py"),
        "pickup",
        "--redis",
        procs.redis_url,
        "--poll",
        str(poll_s),
        "--n",
        str(tasks),
        "--gap-ms",
        str(sum(PICKUP_GAP_S) / 2 * 1000),
    ]
    env = {**os.environ, "BENCH_LOG_DIR": str(procs.workdir)}
    proc = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, env=env, cwd=str(ROOT / "bench" / "peers")
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"plain arq pickup failed: {proc.stderr[-2000:]}")
    samples = json.loads(lines[-1])["returned_to_start_ms"]["samples"]
    return {"system": f"plain arq, poll {poll_s * 1000:g} ms", **summary_ms([x / 1000 for x in samples])}


# -- (b) throughput ----------------------------------------------------------------------------


async def active_empty(engine: TaskEngine) -> bool:
    """No job left in any shard's dispatch stream: every task finished and was acknowledged."""
    for shard in engine.keys.all_shards:
        for stream in shard.streams:  # one per priority level
            if int(await engine.redis.xlen(stream)) > 0:
                return False
    return True


async def wait_terminal(
    engine: TaskEngine, task_id: str, timeout_s: float, watch: list[Proc]
) -> dict[str, Any]:
    async def terminal() -> bool:
        record = await engine.tasks.get(task_id)
        return record is not None and record.is_terminal

    await poll_until(terminal, timeout_s, f"task {task_id}", watch)
    record = await engine.tasks.get(task_id)
    assert record is not None
    return {"status": record.status.value, "message": record.status_message}


async def command_calls(client: aioredis.Redis) -> dict[str, int]:
    """Calls per command so far (INFO commandstats; commands run inside Lua scripts included)."""
    stats: dict[str, Any] = await cast(Any, client).info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


def calls_delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    return dict(sorted(((k, v) for k, v in delta.items() if v > 0), key=lambda kv: -kv[1]))


async def throughput(procs: Processes, tasks: int, concurrency: int, in_flight: int = 64) -> dict[str, Any]:
    namespace = f"bench-tput-{uuid.uuid4().hex[:8]}"
    worker = procs.worker(namespace, concurrency)
    engine = TaskEngine.from_url(procs.redis_url, namespace=namespace)
    try:
        for _ in range(WARMUP):
            record = await engine.tasks.create(tool="noop", arguments={}, dispatch=True)
            await wait_terminal(engine, record.task_id, 30, [worker])
        gate = asyncio.Semaphore(in_flight)
        ids: list[str] = []

        async def create() -> None:
            async with gate:
                record = await engine.tasks.create(tool="noop", arguments={}, dispatch=True)
                ids.append(record.task_id)

        commands_before = await command_calls(engine.redis)
        began = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(tasks)))
        created = time.perf_counter() - began
        await poll_until(
            lambda: active_empty(engine), 120, "the no-op tasks to finish", [worker], interval=0.005
        )
        elapsed = time.perf_counter() - began
        commands = calls_delta(commands_before, await command_calls(engine.redis))
        pipe = engine.redis.pipeline(transaction=False)
        for task_id in ids:
            pipe.hget(engine.keys.task(task_id), "st")
        statuses = [s.decode() if s else None for s in await pipe.execute()]
        completed = statuses.count("completed")
        if completed != tasks:
            raise RuntimeError(f"only {completed} of {tasks} no-op tasks completed: {set(statuses)}")
        return {
            "tasks": tasks,
            "worker_concurrency": concurrency,
            "seconds": round(elapsed, 3),
            "tasks_per_s": round(tasks / elapsed, 1),
            "creates_per_s": round(tasks / created, 1),
            "redis_commands_per_task": round(sum(commands.values()) / tasks, 1),
            "redis_commands_per_task_by_name": {
                k: round(v / tasks, 2) for k, v in list(commands.items())[:15]
            },
        }
    finally:
        await engine.close()


# -- (c) progress -> notification ----------------------------------------------------------------


async def progress_latency(procs: Processes, tasks: int, steps: int, interval: float) -> dict[str, Any]:
    import httpx
    from mcp import ClientSession
    from mcp.client.streamable_http import streamablehttp_client
    from mcp.types import CallToolResult, ProgressNotification, ServerNotification

    namespace = f"bench-progress-{uuid.uuid4().hex[:8]}"
    port = free_port()
    server = procs.server(namespace, port)
    worker = procs.worker(namespace)

    async def healthy() -> bool:
        with contextlib.suppress(httpx.HTTPError):
            async with httpx.AsyncClient(timeout=1) as client:
                return (await client.get(f"http://127.0.0.1:{port}/health")).status_code == 200
        return False

    await poll_until(healthy, 30, "the server's /health", [server, worker], interval=0.05)
    samples: dict[str, list[float]] = {}

    async def on_message(message: Any) -> None:
        if isinstance(message, ServerNotification) and isinstance(message.root, ProgressNotification):
            arrived = time.time()
            params = message.root.params
            samples.setdefault(str(params.progressToken), []).append(arrived - float(params.message or "nan"))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        transport = streamablehttp_client(f"http://127.0.0.1:{port}/mcp")
        async with (
            transport as (read, write, _),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            await session.initialize()
            runs = [("warmup", 5)] + [(f"run-{i}", steps) for i in range(tasks)]
            for token, count in runs:
                created = await session.experimental.call_tool_as_task(
                    "stamped_progress", {"steps": count, "interval": interval}, meta={"progressToken": token}
                )
                await session.experimental.get_task_result(created.task.taskId, CallToolResult)

                async def all_arrived(token: str = token, count: int = count) -> bool:
                    return len(samples.get(token, [])) >= count

                await poll_until(all_arrived, 10, f"the progress notifications of {token}", [server, worker])
    latencies = [lat for token, values in samples.items() if token != "warmup" for lat in values]
    return {"path": "worker -> Redis -> server relay -> Streamable HTTP -> client", **summary_ms(latencies)}


# -- report ------------------------------------------------------------------------------------


def fmt(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def markdown(results: dict[str, Any]) -> str:
    pickup = results["pickup"]
    lines = [
        f"Runtime benchmark ({results['environment']['redis']}, {results['environment']['cpus']} CPUs, "
        f"Python {results['environment']['python']})",
        "",
        f"(a) enqueue -> start at low load ({results['parameters']['pickup_tasks']} tasks, "
        f"{PICKUP_GAP_S[0] * 1000:g}-{PICKUP_GAP_S[1] * 1000:g} ms apart)",
        "",
        "| system | p50 ms | p90 ms | p99 ms | mean ms | max ms |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in pickup.values():
        lines.append(
            f"| {row['system']} | {fmt(row['p50_ms'])} | {fmt(row['p90_ms'])} | {fmt(row['p99_ms'])} | "
            f"{fmt(row['mean_ms'])} | {fmt(row['max_ms'])} |"
        )
    lines += [
        "",
        "(b) no-op tasks through one worker process (full lifecycle)",
        "",
        "| worker slots | tasks | seconds | tasks/s | creates/s | Redis commands/task (incl. in Lua) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["throughput"]:
        lines.append(
            f"| {row['worker_concurrency']} | {row['tasks']} | {row['seconds']} | {row['tasks_per_s']} | "
            f"{row['creates_per_s']} | {row['redis_commands_per_task']} |"
        )
    progress = results["progress"]
    lines += [
        "",
        "(c) progress event -> client notification (Streamable HTTP)",
        "",
        "| samples | p50 ms | p90 ms | p99 ms | mean ms | max ms |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {progress['n']} | {fmt(progress['p50_ms'])} | {fmt(progress['p90_ms'])} | "
        f"{fmt(progress['p99_ms'])} | {fmt(progress['mean_ms'])} | {fmt(progress['max_ms'])} |",
    ]
    return "\n".join(lines)


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="bench-runtime-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


async def run(args: argparse.Namespace, redis_url: str, redis_desc: str, logs: Path) -> dict[str, Any]:
    procs = Processes(logs, redis_url)
    try:
        results: dict[str, Any] = {
            "environment": {
                "redis": redis_desc,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            "parameters": {
                "pickup_tasks": args.tasks,
                "pickup_gap_ms": [g * 1000 for g in PICKUP_GAP_S],
                "throughput_tasks": args.throughput_tasks,
                "progress_tasks": args.progress_tasks,
                "progress_steps": 100,
                "progress_interval_s": 0.02,
            },
        }
        print("(a) enqueue -> start ...", file=sys.stderr)
        results["pickup"] = {
            "ours": await pickup_ours(procs, args.tasks),
            "arq_poll_500ms": await pickup_arq(procs, args.tasks, 0.5),
            "arq_poll_10ms": await pickup_arq(procs, args.tasks, 0.01),
        }
        procs.close()
        print("(b) throughput ...", file=sys.stderr)
        results["throughput"] = [await throughput(procs, args.throughput_tasks, c) for c in (10, 50)]
        procs.close()
        print("(c) progress -> notification ...", file=sys.stderr)
        results["progress"] = await progress_latency(procs, args.progress_tasks, 100, 0.02)
        return results
    except Exception:
        for proc in procs.procs:
            print(f"--- {proc.name} ---\n{proc.tail()}", file=sys.stderr)
        raise
    finally:
        procs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--tasks", type=int, default=200, help="tasks per system for (a)")
    parser.add_argument("--throughput-tasks", type=int, default=1000, help="no-op tasks for (b)")
    parser.add_argument("--progress-tasks", type=int, default=3, help="tasks of 100 progress steps for (c)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    # The SDK client logs a harmless traceback when its SSE stream is cut at session close.
    logging.getLogger("mcp.client.streamable_http").setLevel(logging.CRITICAL)
    began = time.monotonic()
    with EmbeddedRedis(prefer="redis-server") as embedded, workdir() as logs:
        results = asyncio.run(run(args, embedded.url, embedded.description, logs))
    results["environment"]["bench_seconds"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"\n(written to {args.out}, {results['environment']['bench_seconds']} s)")


if __name__ == "__main__":
    main()
