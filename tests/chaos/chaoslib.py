"""The chaos run shared by ``bench/chaos/driver.py`` (long, with a summary) and the CI suite.

N tasks are created through a real server replica over Streamable HTTP while worker processes are
SIGKILLed at random and replaced. Right after each kill the tasks that the dead worker held a lease
on are read from Redis (``lease_owner`` names the worker's pid); each of them must be re-started
on another worker (its ``task <id> started ... (attempt n)`` log line) or end failed after its last
attempt. At the end every task must be terminal, every completed task's result must be returned
by ``tasks/result``, and every task must carry exactly one terminal event (a result is written
once).

Figures: tasks, kills, re-runs, recoveries (kill -> re-start on another worker, from the workers'
logs), lost (gone from Redis, or no answer from tasks/result) and stuck (not terminal when the run
settled).
"""

from __future__ import annotations

import asyncio
import json
import random
import socket
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from mcp import ClientSession
from mcp.shared.exceptions import McpError
from mcp.types import CallToolResult

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.keys import GROUP, Shard
from mcp_tasks_redis.engine.outcome import first_text
from tests.integration.procs import LogRecord, ProductProcess, Stack, http_session

TERMINAL = ("completed", "failed", "cancelled")

TASK_TTL_MS = 3_600_000

# How often the reaper of each worker looks for stale leases (TaskWorker's default).
REAP_INTERVAL_S = 1.0


@dataclass
class ChaosConfig:
    tasks: int = 40
    workers: int = 3
    duration_s: float = 20.0
    kill_every_s: float = 2.0
    lease_ms: int = 2000
    max_attempts: int = 20
    concurrency: int = 10
    min_task_s: float = 0.5
    max_task_s: float = 3.0
    # A few tasks run the `fail` tool: they must end failed with the tool's message, not be lost.
    fail_ratio: float = 0.05
    settle_timeout_s: float = 60.0
    seed: int | None = None


@dataclass
class KillEvent:
    at: float
    worker: str
    pid: int
    # task id -> the attempt it was on when its worker died
    held: dict[str, int]


@dataclass
class Recovery:
    task_id: str
    killed_at: float
    # "restarted": started again on another worker; "failed": ended failed after its last attempt
    how: str
    seconds: float | None


@dataclass
class ChaosReport:
    config: ChaosConfig
    tasks: int = 0
    completed: int = 0
    failed_tool: int = 0
    failed_exhausted: int = 0
    failed_other: list[str] = field(default_factory=list[str])
    kills: int = 0
    rerun_tasks: int = 0
    reruns: int = 0
    recoveries: list[Recovery] = field(default_factory=list[Recovery])
    unrecovered: list[str] = field(default_factory=list[str])
    lost: list[str] = field(default_factory=list[str])
    stuck: list[str] = field(default_factory=list[str])
    wrong_results: list[str] = field(default_factory=list[str])
    multiple_outcomes: list[str] = field(default_factory=list[str])
    elapsed_s: float = 0.0
    settle_s: float = 0.0

    @property
    def max_recovery_s(self) -> float:
        return max((r.seconds for r in self.recoveries if r.seconds is not None), default=0.0)

    @property
    def recovery_bound_s(self) -> float:
        """Lease (the dead worker renewed it just before dying) + one reap interval + slack for
        the wake-up, the claim and a replacement's start-up."""
        return self.config.lease_ms / 1000 + REAP_INTERVAL_S + 1.5

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.stuck
            or self.failed_other
            or self.wrong_results
            or self.multiple_outcomes
            or self.unrecovered
        )

    def summary(self) -> str:
        recoveries = sorted(r.seconds for r in self.recoveries if r.seconds is not None)
        median = recoveries[len(recoveries) // 2] if recoveries else 0.0
        lines = [
            f"tasks: {self.tasks} (completed {self.completed}, failed by the tool {self.failed_tool}, "
            f"failed after max attempts {self.failed_exhausted}, failed otherwise {len(self.failed_other)})",
            f"kills: {self.kills} (SIGKILL, every ~{self.config.kill_every_s:g} s, "
            f"{self.config.workers} workers x {self.config.concurrency} slots, "
            f"lease {self.config.lease_ms} ms)",
            f"re-runs: {self.reruns} (tasks re-run: {self.rerun_tasks})",
            f"recoveries: {len(recoveries)}; max recovery time: {self.max_recovery_s:.2f} s "
            f"(median {median:.2f} s, bound {self.recovery_bound_s:.2f} s); "
            f"unrecovered: {len(self.unrecovered)}",
            f"lost: {len(self.lost)}",
            f"stuck: {len(self.stuck)}",
            f"wrong results: {len(self.wrong_results)}; tasks with more than one outcome: "
            f"{len(self.multiple_outcomes)}",
            f"elapsed: {self.elapsed_s:.1f} s (all terminal {self.settle_s:.1f} s after the killing stopped)",
        ]
        for name in ("lost", "stuck", "failed_other", "wrong_results", "multiple_outcomes", "unrecovered"):
            items = getattr(self, name)
            if items:
                lines.append(f"  {name}: {items[:10]}")
        return "\n".join(lines)


def worker_pid_prefix(pid: int) -> str:
    """How a worker's lease owner id starts (``new_worker_id``: host:pid:random)."""
    return f"{socket.gethostname()}:{pid}:"


async def lease_holders(engine: TaskEngine, task_ids: list[str]) -> dict[str, tuple[str, int]]:
    """task id -> (worker holding its job, attempt) for every unfinished task whose job is pending
    under a worker (the group's pending entries are the leases)."""
    holders: dict[str, str] = {}
    for shard in engine.keys.all_shards:
        for stream in shard.streams:
            pending = await engine.redis.xpending_range(stream, GROUP, "-", "+", 100_000)
            holders.update({_text(p["message_id"]): _text(p["consumer"]) for p in pending})
    pipe = engine.redis.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.hmget(engine.keys.task(task_id), "st", "q", "a")
    rows: list[list[bytes | None]] = await pipe.execute()
    held: dict[str, tuple[str, int]] = {}
    for task_id, (status, entry, attempt) in zip(task_ids, rows, strict=True):
        if status is None or status.decode() in TERMINAL or entry is None:
            continue
        holder = holders.get(entry.decode())
        if holder is not None:
            held[task_id] = (holder, int(attempt or 1))
    return held


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class TerminalEvents:
    """Counts each task's terminal status events on its shard's channel, as every waiter sees them."""

    SENTINEL = "~sentinel"

    def __init__(self, redis_url: str, shard: Shard) -> None:
        self.channel = shard.channel
        self.client: aioredis.Redis = aioredis.Redis.from_url(redis_url)
        self.pubsub = self.client.pubsub()
        self.counts: Counter[str] = Counter()
        self._seen: dict[str, asyncio.Event] = {}
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> TerminalEvents:
        await self.pubsub.subscribe(self.channel)
        self._reader = asyncio.create_task(self._read())
        await self.settle()  # subscribed and reading before anything happens
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._reader is not None
        self._reader.cancel()
        await asyncio.gather(self._reader, return_exceptions=True)
        await self.pubsub.aclose()
        await self.client.aclose()

    async def _read(self) -> None:
        async for message in self.pubsub.listen():
            if message["type"] != "message":
                continue
            task_id, _, body = message["data"].decode().partition(" ")
            if task_id == self.SENTINEL:
                self._seen.setdefault(body, asyncio.Event()).set()
                continue
            event = json.loads(body)
            if event.get("k") == "status" and event.get("st") in TERMINAL:
                self.counts[task_id] += 1

    async def settle(self) -> None:
        """Every event published before this call has been counted (one connection's messages
        arrive in the order Redis executed the PUBLISHes)."""
        token = uuid.uuid4().hex
        seen = self._seen.setdefault(token, asyncio.Event())
        await self.client.publish(self.channel, f"{self.SENTINEL} {token}")
        await asyncio.wait_for(seen.wait(), 30)
        del self._seen[token]


def task_starts(processes: list[ProductProcess]) -> dict[str, list[tuple[float, int, str]]]:
    """task id -> [(ts, attempt, worker name)] of every ``task <id> started`` line of every worker."""
    starts: dict[str, list[tuple[float, int, str]]] = {}
    for process in processes:
        for line in process.log_text().splitlines():
            if " started: " not in line:
                continue
            record = LogRecord.parse(line)
            task_id, attempt = record.raw.get("task_id"), record.raw.get("attempt")
            if record.ts is None or not isinstance(task_id, str) or not isinstance(attempt, int):
                continue
            starts.setdefault(task_id, []).append((record.ts, attempt, process.name))
    return starts


class ChaosRun:
    def __init__(self, stack: Stack, engine: TaskEngine, config: ChaosConfig, log: Any = print) -> None:
        self.stack = stack
        self.engine = engine
        self.config = config
        self.rng = random.Random(config.seed)
        self.log = log
        self.workers: list[ProductProcess] = []
        self.all_workers: list[ProductProcess] = []
        self.kills: list[KillEvent] = []
        self.expected: dict[str, dict[str, Any]] = {}  # task id -> {"tool": ..., "arguments": ...}
        self._starting: set[asyncio.Task[ProductProcess]] = set()
        self._counter = 0
        self.events: TerminalEvents | None = None  # while the run goes on

    async def start_worker(self) -> ProductProcess:
        self._counter += 1
        worker = await self.stack.start_worker(f"worker-{self._counter}", concurrency=self.config.concurrency)
        self.all_workers.append(worker)
        self.workers.append(worker)
        return worker

    async def run(self) -> ChaosReport:
        cfg = self.config
        self.stack.configure(lease_ms=cfg.lease_ms, max_attempts=cfg.max_attempts, poll_interval_ms=250)
        began = time.monotonic()
        server, *_ = await asyncio.gather(
            self.stack.start_server(), *(self.start_worker() for _ in range(cfg.workers))
        )
        chaos_began = time.monotonic()
        shard = self.engine.keys.all_shards[0]  # the stack runs one shard
        async with TerminalEvents(self.stack.redis_url, shard) as events, http_session(server.url) as session:
            self.events = events
            submit = asyncio.create_task(self._submit(session))
            await self._kill_loop(chaos_began + cfg.duration_s)
            await submit
            for starting in list(self._starting):
                await starting
            last_kill = time.monotonic()
            await self._settle()
            settle_s = time.monotonic() - last_kill
            await events.settle()
            report = await self._collect(session)
        report.elapsed_s = time.monotonic() - began
        report.settle_s = settle_s
        return report

    async def _submit(self, session: ClientSession) -> None:
        cfg = self.config
        # Spread the tasks over the first 70% of the run, so kills hit tasks of every age.
        spacing = cfg.duration_s * 0.7 / max(cfg.tasks, 1)
        for _ in range(cfg.tasks):
            if self.rng.random() < cfg.fail_ratio:
                tool, arguments = "fail", {"message": f"planned failure {self.rng.randrange(10**6)}"}
            else:
                seconds = round(self.rng.uniform(cfg.min_task_s, cfg.max_task_s), 2)
                tool, arguments = "slow_compute", {"seconds": seconds}
            # A TTL that outlives the run: a finished task's keys expire a TTL after it ended.
            created = await session.experimental.call_tool_as_task(tool, arguments, ttl=TASK_TTL_MS)
            self.expected[created.task.taskId] = {"tool": tool, "arguments": arguments}
            await asyncio.sleep(spacing)

    async def _kill_loop(self, until: float) -> None:
        cfg = self.config
        while True:
            await asyncio.sleep(cfg.kill_every_s * self.rng.uniform(0.75, 1.25))
            if time.monotonic() >= until:
                return
            alive = [w for w in self.workers if w.alive]
            if len(alive) < 2:
                continue  # keep at least one worker running: recovery needs somewhere to go
            victim = self.rng.choice(alive)
            victim.kill()
            killed_at = time.time()
            self.workers.remove(victim)
            prefix = worker_pid_prefix(victim.pid)
            holders = await lease_holders(self.engine, list(self.expected))
            held = {t: attempt for t, (owner, attempt) in holders.items() if owner.startswith(prefix)}
            self.kills.append(KillEvent(killed_at, victim.name, victim.pid, held))
            self.log(
                f"  kill #{len(self.kills)}: {victim.name} (pid {victim.pid}) holding {len(held)} task(s)"
            )
            starting = asyncio.create_task(self.start_worker())
            self._starting.add(starting)
            starting.add_done_callback(self._starting.discard)

    async def _settle(self) -> None:
        deadline = time.monotonic() + self.config.settle_timeout_s
        ids = list(self.expected)
        while time.monotonic() < deadline:
            pipe = self.engine.redis.pipeline(transaction=False)
            for task_id in ids:
                pipe.hget(self.engine.keys.task(task_id), "st")
            statuses = await pipe.execute()
            # (A task gone from Redis will not come back: it is counted as lost below.)
            if all(s is None or s.decode() in TERMINAL for s in statuses):
                return
            await asyncio.sleep(0.2)

    async def _collect(self, session: ClientSession) -> ChaosReport:
        report = ChaosReport(self.config, tasks=len(self.expected), kills=len(self.kills))
        starts = task_starts(self.all_workers)
        for task_id, expected in self.expected.items():
            record = await self.engine.tasks.get(task_id)
            if record is None:
                report.lost.append(task_id)
                continue
            if not record.is_terminal:
                report.stuck.append(task_id)
                continue
            report.reruns += max(record.attempt - 1, 0)
            report.rerun_tasks += record.attempt > 1
            terminal_events = await self._terminal_events(task_id)
            if terminal_events != 1:
                report.multiple_outcomes.append(f"{task_id}: {terminal_events} terminal events")
            # As the 2025-11-25 wire says it: a tool's error result is a failed task.
            status = "failed" if record.is_error_result else record.status.value
            message = record.status_message or first_text(record.result) or ""
            if status == "completed":
                report.completed += 1
                if expected["tool"] != "slow_compute":
                    report.wrong_results.append(f"{task_id}: {expected['tool']} completed")
            elif (
                status == "failed"
                and expected["tool"] == "fail"
                and expected["arguments"]["message"] in message
            ):
                report.failed_tool += 1
            elif status == "failed" and message.startswith("Task abandoned"):  # attempts ran out
                report.failed_exhausted += 1
            else:
                report.failed_other.append(f"{task_id}: {status} {message!r}")
            await self._check_result(session, task_id, expected, status, report)
        for kill in self.kills:
            for task_id, attempt in kill.held.items():
                report.recoveries.append(self._recovery(kill, task_id, attempt, starts, report))
        return report

    async def _terminal_events(self, task_id: str) -> int:
        assert self.events is not None
        return self.events.counts[task_id]

    async def _check_result(
        self, session: ClientSession, task_id: str, expected: dict[str, Any], status: str, report: ChaosReport
    ) -> None:
        """What a client gets from tasks/result: the tool's result, or the failure's error."""
        try:
            result = await asyncio.wait_for(session.experimental.get_task_result(task_id, CallToolResult), 10)
        except McpError as e:
            if status == "completed":
                report.wrong_results.append(f"{task_id}: tasks/result raised {e.error.message!r}")
            return
        except TimeoutError:
            report.lost.append(f"{task_id}: tasks/result did not answer")
            return
        if status == "completed" and result.structuredContent != expected["arguments"]:
            report.wrong_results.append(f"{task_id}: {result.structuredContent} != {expected['arguments']}")
        if status == "failed" and not result.isError:
            report.wrong_results.append(f"{task_id}: failed task returned a non-error result")

    def _recovery(
        self,
        kill: KillEvent,
        task_id: str,
        attempt: int,
        starts: dict[str, list[tuple[float, int, str]]],
        report: ChaosReport,
    ) -> Recovery:
        later = [ts for ts, a, name in starts.get(task_id, []) if a > attempt and name != kill.worker]
        if later:
            return Recovery(task_id, kill.at, "restarted", min(later) - kill.at)
        if task_id in report.stuck or task_id in report.lost:
            report.unrecovered.append(task_id)
            return Recovery(task_id, kill.at, "none", None)
        # Not started again: it ended failed after its last attempt (the reaper failed it).
        return Recovery(task_id, kill.at, "failed", None)
