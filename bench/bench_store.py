"""Benchmark: RedisTaskStore against the SDK's InMemoryTaskStore, in the same run.

For each of create, get, update (status message) and list (one page of 50, walking the cursor)
it measures operations per second, one call at a time (latency-bound) and, for Redis, with many
calls in flight; and from Redis it reads how much work each call costs: client round trips
(counted at the client) and Redis commands (``INFO commandstats`` deltas, which include the
commands our Lua scripts run inside Redis).

    .venv/bin/python bench/bench_store.py [--n 2000] [--concurrency 64] [--url redis://...]

Without ``--url`` it starts a throwaway ``redis-server`` on a free port (so no other client adds
noise to the command counts), or falls back to redis://127.0.0.1:6379/0 with its own namespace.
Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from mcp.shared.experimental.tasks.in_memory_task_store import InMemoryTaskStore
from mcp.shared.experimental.tasks.store import TaskStore
from mcp.types import TaskMetadata

from mcp_tasks_redis.mcp_v1.store import RedisTaskStore

PAGE = 50
OPS = ("create", "get", "update", "list")


@dataclass
class Phase:
    seconds: float
    count: int
    round_trips: int = 0
    commands: int = 0

    @property
    def rate(self) -> float:
        return self.count / self.seconds


class RoundTrips:
    """Counts commands the client sends (each is one round trip; no pipelines on these paths)."""

    def __init__(self) -> None:
        self.count = 0
        self._original: Any = cast(Any, aioredis.Redis).execute_command

    def install(self) -> None:
        original = self._original
        counter = self

        async def counted(client: aioredis.Redis, *args: Any, **options: Any) -> Any:
            counter.count += 1
            return await original(client, *args, **options)

        aioredis.Redis.execute_command = counted  # type: ignore[method-assign]

    def uninstall(self) -> None:
        aioredis.Redis.execute_command = self._original  # type: ignore[method-assign]


async def command_total(stats: aioredis.Redis) -> int:
    info: dict[str, Any] = await cast(Any, stats).info("commandstats")
    return sum(int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_"))


async def run_ops(store: TaskStore, op: str, ids: list[str], n: int, concurrency: int) -> int:
    """Run ``n`` calls of ``op``; ``ids`` are existing tasks (create appends to it)."""
    meta = TaskMetadata(ttl=600_000)
    cursor: list[str | None] = [None]

    async def one(i: int) -> None:
        if op == "create":
            ids.append((await store.create_task(meta)).taskId)
        elif op == "get":
            await store.get_task(ids[i % len(ids)])
        elif op == "update":
            await store.update_task(ids[i % len(ids)], status_message=f"step {i}")
        else:
            _, cursor[0] = await store.list_tasks(cursor[0])

    if concurrency <= 1:
        for i in range(n):
            await one(i)
        return n
    gate = asyncio.Semaphore(concurrency)

    async def gated(i: int) -> None:
        async with gate:
            await one(i)

    await asyncio.gather(*(gated(i) for i in range(n)))
    return n


async def measure(
    store: TaskStore,
    op: str,
    ids: list[str],
    n: int,
    concurrency: int,
    stats: aioredis.Redis | None = None,
    trips: RoundTrips | None = None,
) -> Phase:
    before = await command_total(stats) if stats is not None else 0
    if trips is not None:
        trips.count = 0
    started = time.perf_counter()
    count = await run_ops(store, op, ids, n, concurrency)
    phase = Phase(time.perf_counter() - started, count)
    if trips is not None:
        phase.round_trips = trips.count
    if stats is not None:
        phase.commands = await command_total(stats) - before - 1  # minus the INFO itself
    return phase


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def throwaway_redis() -> Generator[str | None, None, None]:
    """A private redis-server for the run, or None if there is no redis-server on PATH."""
    if shutil.which("redis-server") is None:
        yield None
        return
    port = free_port()
    process = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:  # ready once it accepts connections
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


async def bench(url: str, n: int, concurrency: int) -> dict[str, dict[str, Phase]]:
    namespace = f"bench-{uuid.uuid4().hex[:8]}"
    results: dict[str, dict[str, Phase]] = {op: {} for op in OPS}

    memory = InMemoryTaskStore(page_size=PAGE)
    memory_ids: list[str] = []
    for op in OPS:
        results[op]["memory"] = await measure(memory, op, memory_ids, n, 1)

    store = RedisTaskStore.from_url(url, namespace=namespace, list_page_size=PAGE)
    stats: Any = cast(Any, aioredis.Redis).from_url(url)
    trips = RoundTrips()
    redis_ids: list[str] = []
    try:
        await store.get_task("warm-up")  # connect and load nothing: no first-call cost in the numbers
        trips.install()
        for op in OPS:
            results[op]["redis"] = await measure(store, op, redis_ids, n, 1, stats, trips)
        trips.uninstall()
        for op in OPS:
            results[op]["redis-concurrent"] = await measure(store, op, redis_ids, n, concurrency)
    finally:
        trips.uninstall()
        keys: list[bytes] = [k async for k in stats.scan_iter(match=f"{namespace}:*", count=1000)]
        for start in range(0, len(keys), 500):
            await stats.delete(*keys[start : start + 500])
        await stats.aclose()
        await store.aclose()
    return results


def table(results: dict[str, dict[str, Phase]], n: int, concurrency: int) -> str:
    lines = [
        f"N = {n} calls per operation; list = one page of {PAGE}. The in-memory store scans every task"
        " for expiry on each create, get and list, so its rates fall as N grows.",
        "",
        "| operation | in-memory ops/s | Redis ops/s (1 in flight) | in-memory / Redis | "
        f"Redis ops/s ({concurrency} in flight) | round trips / op | Redis commands / op |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for op in OPS:
        mem, red, conc = results[op]["memory"], results[op]["redis"], results[op]["redis-concurrent"]
        lines.append(
            f"| {op} | {mem.rate:,.0f} | {red.rate:,.0f} | {mem.rate / red.rate:,.2f} | {conc.rate:,.0f} | "
            f"{red.round_trips / red.count:.2f} | {red.commands / red.count:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=2000, help="calls per operation (default 2000)")
    parser.add_argument("--concurrency", type=int, default=64, help="calls in flight for the concurrent run")
    parser.add_argument("--url", help="Redis to use (default: a throwaway redis-server, else 127.0.0.1:6379)")
    args = parser.parse_args(argv)
    runner: Callable[[str], Awaitable[dict[str, dict[str, Phase]]]] = lambda url: bench(  # noqa: E731
        url, args.n, args.concurrency
    )
    with throwaway_redis() if args.url is None else contextlib.nullcontext(args.url) as url:
        target = url or "redis://127.0.0.1:6379/0"
        print(f"Redis: {target}{' (throwaway redis-server)' if args.url is None and url else ''}\n")
        print(table(asyncio.run(runner(target)), args.n, args.concurrency))


if __name__ == "__main__":
    main()
