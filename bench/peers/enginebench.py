"""Engine-level measurements, the same code for every job engine (ours, plain arq, Docket).

A peer supplies an ``Engine`` adapter (how to start a worker process, enqueue one of the four
bench tools, and count unfinished tasks with one cheap Redis command); this module runs the
measurements against it and returns plain dicts. It runs inside each peer's own venv, so it uses
only the standard library and redis-py.

Measurements (the issue's numbering):
1. ``pickup``: enqueue -> tool starts, one idle worker, jittered arrivals (no poll aliasing).
2. ``throughput`` (+ 4. cost): N no-op tasks through one worker process, created by a producer
   with 20 calls in flight while the worker runs; wall time from the first create until no task
   is unfinished. The same window gives Redis commands and memory per task and CPU per task;
   idle CPU is read over ``idle_s`` seconds before the load.
5. ``scaling``: 100 tasks that sleep 1 s on W workers with S slots each: makespan vs ideal.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import redis
from common import (
    Proc,
    RedisWindow,
    emit,
    idle_cpu,
    jittered_gaps,
    log,
    stop_all,
    summarize,
    wait_for,
)

PROBE_KEY = "bench:pickup"


class Engine(Protocol):
    name: str
    # The Redis command ``outstanding`` sends once per poll (subtracted from the cost figures).
    poll_command: str
    default_concurrency: int

    def worker(self, index: int, concurrency: int) -> Proc: ...
    def ready(self, client: redis.Redis, procs: list[Proc]) -> bool: ...
    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def enqueue(self, tool: str, **kwargs: Any) -> None: ...
    async def outstanding(self) -> int: ...
    def describe(self) -> dict[str, Any]: ...


def start_workers(engine: Engine, client: redis.Redis, count: int, concurrency: int) -> list[Proc]:
    procs = [engine.worker(i, concurrency) for i in range(count)]
    try:
        wait_for(lambda: engine.ready(client, procs), 60, f"{engine.name} workers", procs)
    except BaseException:
        stop_all(procs)
        raise
    time.sleep(0.5)  # let start-up work (first polls, script loads, group creation) settle
    return procs


async def wait_drained(engine: Engine, limit_s: float, interval: float = 0.005) -> tuple[float, int]:
    """Poll until no task is unfinished; returns (time it was seen, number of polls sent)."""
    deadline = time.perf_counter() + limit_s
    polls = 0
    while True:
        polls += 1
        if await engine.outstanding() == 0:
            return time.perf_counter(), polls
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{engine.name}: tasks still unfinished after {limit_s:.0f}s")
        await asyncio.sleep(interval)


# -- 1. pickup latency -----------------------------------------------------------------------
async def pickup(engine: Engine, client: redis.Redis, n: int, gap_s: float) -> dict[str, Any]:
    client.delete(PROBE_KEY)
    procs = start_workers(engine, client, 1, engine.default_concurrency)
    returned: dict[float, float] = {}  # enqueue wall time -> when the enqueue call returned
    try:
        await engine.open()
        for gap in jittered_gaps(n, gap_s):
            t = time.time()
            await engine.enqueue("probe", t=t, key=PROBE_KEY)
            returned[t] = time.time()
            await asyncio.sleep(gap)
        deadline = time.monotonic() + 30
        while client.llen(PROBE_KEY) < n and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        pairs = [tuple(float(x) for x in raw.split()) for raw in client.lrange(PROBE_KEY, 0, -1)]
    finally:
        await engine.close()
        stop_all(procs)
    if len(pairs) < n:
        raise RuntimeError(f"{engine.name}: only {len(pairs)} of {n} probes ran")
    total = [(start - t) * 1000 for t, start in pairs]
    enqueue = [(returned[t] - t) * 1000 for t, _ in pairs]
    after = [(start - returned[t]) * 1000 for t, start in pairs]
    return {
        "system": engine.name,
        "config": engine.describe(),
        "gap_ms": gap_s * 1000,
        "latency_ms": summarize(total),
        # where the time goes: the enqueue call itself, then enqueue returned -> tool started
        "enqueue_call_ms": summarize(enqueue),
        "returned_to_start_ms": summarize(after),
    }


# -- 2. throughput and 4. cost ---------------------------------------------------------------
async def _one_load(
    engine: Engine, client: redis.Redis, worker_pids: list[int], n: int, in_flight: int
) -> dict[str, Any]:
    sem = asyncio.Semaphore(in_flight)

    async def create() -> None:
        async with sem:
            await engine.enqueue("noop")

    with RedisWindow(client, worker_pids) as window:
        t0 = time.perf_counter()
        await asyncio.gather(*(create() for _ in range(n)))
        t_enqueued = time.perf_counter()
        t_done, polls = await wait_drained(engine, limit_s=max(120.0, n / 20))
        await asyncio.sleep(0.2)  # let the last replies and expiry bookkeeping land
    wall = t_done - t0
    per_poll = int(getattr(engine, "commands_per_poll", 1))
    commands = window.commands(subtract={engine.poll_command: polls * per_poll})
    total = sum(commands.values())
    return {
        "tasks_per_s": round(n / wall, 1),
        "wall_s": round(wall, 3),
        "enqueue_per_s": round(n / (t_enqueued - t0), 1),
        "redis_cmds_per_task": round(total / n, 2),
        "redis_cmds_by_name_per_task": {k: round(v / n, 2) for k, v in commands.items()},
        "redis_mem_bytes_per_task": round(window.memory_delta() / n, 1),
        "worker_cpu_ms_per_task": round(1000 * sum(window.cpu(p) for p in worker_pids) / n, 3),
        "redis_cpu_ms_per_task": round(1000 * window.redis_cpu / n, 3),
    }


async def throughput(
    engine: Engine,
    client: redis.Redis,
    n: int,
    repeats: int,
    idle_s: float,
    slots: int | None = None,
    in_flight: int = 20,
    workers: int = 1,
) -> dict[str, Any]:
    slots = slots or engine.default_concurrency
    procs = start_workers(engine, client, workers, slots)
    try:
        idle = idle_cpu([procs[0].pid], idle_s, client) if idle_s > 0 else None
        await engine.open()
        await engine.enqueue("noop")  # warm-up: scripts loaded, connections open
        await wait_drained(engine, 30)
        with profiling([p.pid for p in procs], engine.name):
            pids = [p.pid for p in procs]
            runs = [await _one_load(engine, client, pids, n, in_flight) for _ in range(repeats)]
    finally:
        await engine.close()
        stop_all(procs)
    best = sorted(runs, key=lambda r: r["tasks_per_s"])[len(runs) // 2]  # the median run
    return {
        "system": engine.name,
        "config": engine.describe(),
        "slots": slots,
        "workers": workers,
        "n": n,
        "in_flight": in_flight,
        "median": best,
        "runs": runs,
        "idle": idle,
    }


# -- 4b. memory per retained finished task ----------------------------------------------------
def _memory_usage_total(client: redis.Redis) -> tuple[int, int, dict[str, list[int]]]:
    """Sum of MEMORY USAGE over every key, the key count, and the sizes by key pattern."""
    total, count = 0, 0
    by_pattern: dict[str, list[int]] = {}
    keys = list(client.scan_iter(count=1000))
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for key in chunk:
            pipe.memory_usage(key, samples=0)
        for key, size in zip(chunk, pipe.execute(), strict=True):
            if size is None:
                continue
            total += int(size)
            count += 1
            by_pattern.setdefault(_pattern(key), []).append(int(size))
    return total, count, by_pattern


def _pattern(key: bytes) -> str:
    """A key name with ids replaced by <id> (long runs of id characters)."""
    import re

    text = key.decode(errors="replace")
    return re.sub(r"[A-Za-z0-9_\-]{16,}", "<id>", text)


def _memory_now(client: redis.Redis) -> tuple[int, int]:
    """(used_memory, the part of it that is client connection buffers)."""
    stats: Any = client.memory_stats()
    return int(client.info("memory")["used_memory"]), int(stats.get("clients.normal") or 0)


async def memory(engine: Engine, client: redis.Redis, n: int, in_flight: int = 20) -> dict[str, Any]:
    """N no-op tasks through one worker, then what Redis holds for them once all are finished:
    the ``used_memory`` delta (client buffers taken off) and ``MEMORY USAGE`` of every key, per
    task; results are kept as each system keeps them by default."""
    procs = start_workers(engine, client, 1, engine.default_concurrency)
    try:
        await engine.open()
        enqueue = getattr(engine, "enqueue_listed", engine.enqueue)
        await enqueue("noop")
        await wait_drained(engine, 30)
        await asyncio.sleep(0.5)
        mem0, clients0 = _memory_now(client)
        usage0, keys0, _ = _memory_usage_total(client)
        sem = asyncio.Semaphore(in_flight)

        async def create() -> None:
            async with sem:
                await enqueue("noop")

        await asyncio.gather(*(create() for _ in range(n)))
        await wait_drained(engine, limit_s=max(120.0, n / 20))
        await asyncio.sleep(1.0)  # batched acknowledgements, result bookkeeping
        mem1, clients1 = _memory_now(client)
        usage1, keys1, by_pattern = _memory_usage_total(client)
    finally:
        await engine.close()
        stop_all(procs)
    payload = getattr(engine, "payload_bytes", None)
    return {
        "system": engine.name,
        "config": engine.describe(),
        "n": n,
        # Client connections' buffers (MEMORY STATS clients.normal) grow by a fixed amount during a
        # burst of creates (the producer's 20 connections), whatever N: taken off.
        "used_memory_bytes_per_task": round(((mem1 - clients1) - (mem0 - clients0)) / n, 1),
        "used_memory_raw_bytes_per_task": round((mem1 - mem0) / n, 1),
        "memory_usage_bytes_per_task": round((usage1 - usage0) / n, 1),
        "keys_per_task": round((keys1 - keys0) / n, 3),
        "payload_bytes": payload,
        "by_pattern": {
            k: {"keys": len(v), "bytes_each": round(sum(v) / len(v), 1)}
            for k, v in sorted(by_pattern.items(), key=lambda kv: -sum(kv[1]))[:8]
        },
    }


# -- 5. scaling --------------------------------------------------------------------------------
STARTS_KEY = "bench:starts"


async def scaling(
    engine: Engine, client: redis.Redis, workers: int, slots: int, tasks: int, seconds: float
) -> dict[str, Any]:
    client.delete(STARTS_KEY)
    procs = start_workers(engine, client, workers, slots)
    try:
        await engine.open()
        wall0 = time.time()
        t0 = time.perf_counter()
        await asyncio.gather(
            *(engine.enqueue("sleep", seconds=seconds, key=STARTS_KEY) for _ in range(tasks))
        )
        t_enqueued = time.perf_counter()
        t_done, _ = await wait_drained(engine, limit_s=120, interval=0.005)
    finally:
        await engine.close()
        stop_all(procs)
    starts = sorted(float(x) - wall0 for x in client.lrange(STARTS_KEY, 0, -1))
    ideal = math.ceil(tasks / (workers * slots)) * seconds
    makespan = t_done - t0
    first_wave = starts[: min(len(starts), workers * slots)]
    return {
        "system": engine.name,
        "config": engine.describe(),
        "workers": workers,
        "slots": slots,
        "tasks": tasks,
        "seconds": seconds,
        "makespan_s": round(makespan, 3),
        "ideal_s": ideal,
        "vs_ideal": round(makespan / ideal, 3),
        "enqueue_s": round(t_enqueued - t0, 3),
        # where the time goes: when tasks started, relative to the first create
        "first_start_s": round(starts[0], 3) if starts else None,
        "first_wave_last_start_s": round(first_wave[-1], 3) if first_wave else None,
        "last_start_s": round(starts[-1], 3) if starts else None,
        "started": len(starts),
    }


# -- profiling (optional) ---------------------------------------------------------------------
@contextlib.contextmanager
def profiling(pids: list[int], name: str) -> Iterator[None]:
    """With BENCH_PYSPY and BENCH_PROFILE_DIR set, sample ``pids`` with py-spy while the block runs."""
    pyspy, out_dir = os.environ.get("BENCH_PYSPY"), os.environ.get("BENCH_PROFILE_DIR")
    if not pyspy or not out_dir:
        yield
        return
    spies = [
        subprocess.Popen(
            [
                pyspy,
                "record",
                "-p",
                str(pid),
                "-f",
                "raw",
                "-r",
                "200",
                "-o",
                str(Path(out_dir) / f"{name}-{i}.txt"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for i, pid in enumerate(pids)
    ]
    time.sleep(0.5)
    try:
        yield
    finally:
        for spy in spies:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
        for spy in spies:
            try:
                spy.wait(15)
            except subprocess.TimeoutExpired:
                spy.kill()


# -- command line --------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    p.add_argument("measurement", choices=["pickup", "throughput", "scaling", "memory"])
    p.add_argument("--redis", required=True)
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--gap-ms", type=float, default=100.0)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--in-flight", type=int, default=20, help="creates in flight (throughput)")
    p.add_argument("--slots", type=int, default=0, help="worker slots (0: the engine's default)")
    p.add_argument("--seconds", type=float, default=1.0)
    return p


def stats_client(url: str) -> redis.Redis:
    """The client the measurements read Redis statistics with. For a ``redis+cluster://`` URL: its
    first node (the harness adds up the nodes' statistics itself; tasks/s and CPU come from here)."""
    if url.startswith("redis+cluster://"):
        first = url.removeprefix("redis+cluster://").split("/")[0].split("?")[0].split(",")[0]
        return redis.Redis.from_url(f"redis://{first}")
    return redis.Redis.from_url(url)


def run(engine: Engine, args: argparse.Namespace) -> None:
    client = stats_client(args.redis)
    log(f"[{engine.name}] {args.measurement}")
    if args.measurement == "pickup":
        result = asyncio.run(pickup(engine, client, args.n, args.gap_ms / 1000))
    elif args.measurement == "throughput":
        result = asyncio.run(
            throughput(
                engine,
                client,
                args.n,
                args.repeats,
                args.idle_s,
                args.slots,
                in_flight=args.in_flight,
                workers=args.workers,
            )
        )
    elif args.measurement == "memory":
        result = asyncio.run(memory(engine, client, args.n))
    else:
        result = asyncio.run(scaling(engine, client, args.workers, args.slots or 50, args.n, args.seconds))
    emit(result)
