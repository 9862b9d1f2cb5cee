"""Races around job delivery, thousands of trials each, on separate connections (and processes).

Jobs reach workers through each shard's Redis Stream and its consumer group (engine/streams.py):
``XREADGROUP`` hands a job to one consumer and records it as pending for it (the pending entry is
the lease); an entry left idle is taken over with ``XAUTOCLAIM`` and the task delivered again from
a new entry (``requeue``), which bumps the task's run number `r`; the `finish` script refuses an
outcome from any run but the task's current one. (Cancel vs complete at the store level is
tests/integration/test_races.py; these are the others.)

- two workers read the same stream at once (two connections; and this process vs another): each
  job is delivered to exactly one of them, the other does not hold its entry, and each task runs
  (and finishes) once, in its first run;
- a stale worker: its entry is taken over (XAUTOCLAIM) and the task delivered again (requeue,
  mode ``dead``), racing the stale worker's progress, lease renewal, input request and outcome:
  once the run number moved on, every fenced write of the old run is refused, its renewal reports
  the entry lost, and the new run's outcome stands; the task has exactly one outcome;
- cancel vs a crashed worker's recovery: a cancel races the take-over, the requeue (or the failure
  after the last attempt) and the new run's outcome: exactly one terminal state wins, a cancelled
  task has no result;
- a real worker process frozen (SIGSTOP) past its lease: another worker re-runs its tasks, and on
  waking it cannot touch them, and keeps serving.

After every race each task is frozen: a barrage of late changes (cancel, store updates, fenced
writes, outcomes of every run, requeues in every mode, progress, renewals of old entries, and a
late delivery: its entry taken over again) changes nothing a reader sees, no job of it is left to
deliver, and its shard's channel carried exactly one terminal event for it (the outcome was
written once).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import LeaseLost, TaskIsTerminal
from mcp_tasks_redis.engine.keys import GROUP, Shard
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import Outcome
from mcp_tasks_redis.engine.record import Progress, TaskRecord, TaskStatus
from mcp_tasks_redis.engine.runtime.execution import RunningTask, write_outcome
from mcp_tasks_redis.engine.streams import Delivery, RequeueMode, StreamDispatch
from tests.chaos.chaoslib import TerminalEvents

# Thousands of trials each, meaningful only against a real Redis server (the in-process fakeredis
# serializes every client, so nothing races there): slow, left out of the no-Redis pass.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

TRIALS = 1000
WAVE = 100
ROOT = Path(__file__).resolve().parents[2]
# Leases never lapse on their own here: a take-over is an explicit XAUTOCLAIM with no idle bound,
# the moment a worker's lease would have lapsed, so each trial decides its interleaving itself.
LIMITS = TaskLimits(lease_ms=60_000, max_attempts=3)
TERMINAL = ("completed", "failed", "cancelled")
INPUT = {"method": "elicitation/create", "params": {}}


def result_of(worker: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": f"done by {worker}"}], "by": worker}


@dataclass
class Attempt:
    ok: bool
    error: BaseException | None = None
    value: Any = None


async def attempt(change: Awaitable[Any]) -> Attempt:
    try:
        value = await change
    except Exception as e:  # kept for the assertions
        return Attempt(False, e)
    return Attempt(True, value=value)


async def jitter(rng: random.Random, most: int = 4) -> None:
    for _ in range(rng.randrange(most)):
        await asyncio.sleep(0)


@pytest.fixture
async def engines(redis_url: str, namespace: str) -> AsyncIterator[list[TaskEngine]]:
    """Four engines, each on its own connection pool and pub/sub connection: four processes."""
    made = [TaskEngine.from_url(redis_url, namespace=namespace, limits=LIMITS) for _ in range(4)]
    await StreamDispatch(made[0].conn, "setup").ensure_groups()
    yield made
    for engine in made:
        await engine.close()


def shard_of(engine: TaskEngine) -> Shard:
    [shard] = engine.keys.all_shards
    return shard


async def create_wave(engine: TaskEngine, n: int) -> list[str]:
    records = await asyncio.gather(
        *(
            engine.tasks.create(ttl_ms=120_000, tool="slow_compute", arguments={"seconds": 1}, dispatch=True)
            for _ in range(n)
        )
    )
    return [r.task_id for r in records]


@dataclass
class Consumer:
    """One worker's side of dispatch: a consumer of the group on its engine's connection."""

    engine: TaskEngine
    name: str

    def __post_init__(self) -> None:
        self.dispatch = StreamDispatch(self.engine.conn, self.name)
        self.shard = shard_of(self.engine)

    async def read(self, count: int, block_ms: int | None = None) -> list[Delivery]:
        return await self.dispatch.read(self.shard, count, block_ms)

    async def take(self, n: int) -> list[Delivery]:
        """Read until ``n`` jobs were delivered to this consumer (they were all added already)."""
        got: list[Delivery] = []
        while len(got) < n:
            batch = await self.read(n - len(got))
            assert batch, f"{self.name}: {n - len(got)} job(s) never delivered"
            got += batch
        return got

    async def reclaim_all(self) -> list[Delivery]:
        """Take over every pending entry of the shard, whatever its idle time (XAUTOCLAIM)."""
        # One call scans every stream to its end (XAUTOCLAIM looks at up to 10 x COUNT entries, far
        # more than a wave leaves); a second one would take the same entries over again.
        taken = await self.dispatch.reclaim(self.shard, min_idle_ms=0, count=10 * WAVE)
        assert len({d.entry_id for d in taken}) == len(taken)
        return taken

    async def finish(self, delivery: Delivery, by: str | None = None) -> str:
        """This worker's outcome of a delivery's run, written as a worker writes it (fenced)."""
        running = RunningTask(delivery, expires_ms=delivery.deadline_ms + self.engine.limits.grace_ms)
        return await write_outcome(self.engine, running, Outcome(result=result_of(by or self.name)))


def frozen_view(record: TaskRecord | None) -> tuple[Any, ...]:
    """What a reader sees of a finished task, and its delivery state."""
    assert record is not None
    return (
        record.status,
        record.status_message,
        record.result,
        record.error,
        record.last_updated_ms,
        record.run,
        record.attempt,
        record.entry_id,
        record.input_requests,
    )


async def assert_frozen(
    engine: TaskEngine, task_id: str, late: list[tuple[Consumer, Delivery]]
) -> tuple[Any, ...]:
    """Nothing changes a finished task: every late change is refused or does nothing.

    ``late``: each delivery of the task with the consumer it went to; their runs are over.
    """
    before = frozen_view(await engine.tasks.get(task_id))
    status = before[0]
    assert status.value in TERMINAL
    for change in (
        engine.tasks.cancel(task_id),
        engine.tasks.update(task_id, status=TaskStatus.COMPLETED, result=result_of("late")),
        engine.tasks.update(task_id, status=TaskStatus.FAILED, error={"code": -1, "message": "late"}),
        engine.tasks.update(task_id, status=TaskStatus.WORKING),
        engine.tasks.update(task_id, message="late"),
        *(
            engine.tasks.update(task_id, status=TaskStatus.COMPLETED, result=result_of("late"), fence=d.run)
            for _, d in late
        ),
        *(engine.tasks.request_input(task_id, "late", INPUT, fence=d.run) for _, d in late),
        engine.tasks.request_input(task_id, "late", INPUT),
    ):
        with pytest.raises(TaskIsTerminal):
            await change
    # Progress is stored without a status check; of a finished task a reader sees none of it.
    assert await engine.tasks.report_progress(task_id, Progress(progress=99, message="late"))
    modes: tuple[RequeueMode, ...] = ("dead", "back", "retry")
    for consumer, d in late:
        # A late outcome of any run is refused with the status that won.
        assert await consumer.finish(d, "late") == status.value
        # A late requeue of any run, in any mode: nothing is delivered again.
        for mode in modes:
            assert await consumer.dispatch.requeue(d, mode) == "terminal", (task_id, mode)
    assert frozen_view(await engine.tasks.get(task_id)) == before
    return before


async def late_delivery(janitor: Consumer) -> int:
    """A late delivery of finished tasks does nothing: every entry still pending (finished, not
    acknowledged: its worker died in between) is taken over and requeued as if its worker had
    died, and the requeue drops it. Returns how many there were."""
    taken = await janitor.reclaim_all()
    for d in taken:
        assert await janitor.dispatch.requeue(d, "dead") == "terminal", d
    return len(taken)


async def assert_nothing_left(
    observer: TaskEngine,
    janitor: Consumer,
    deliveries: list[tuple[Consumer, Delivery]],
    views: dict[str, tuple[Any, ...]],
    events: TerminalEvents,
) -> None:
    """No job of a finished task is left to read or pending, renewing an old entry reports it
    lost, no record changed, and each task had exactly one terminal event."""
    assert await janitor.read(WAVE) == []
    for stream in janitor.shard.streams:
        assert await observer.redis.xlen(stream) == 0, stream
        assert (await observer.redis.xpending(stream, GROUP))["pending"] == 0, stream
    for consumer, d in deliveries:
        assert await consumer.dispatch.renew(d.stream, [d.entry_id]) == {d.entry_id}
    for task_id, view in views.items():
        assert frozen_view(await observer.tasks.get(task_id)) == view, task_id
    await events.settle()
    for task_id in views:
        assert events.counts[task_id] == 1, f"{task_id}: {events.counts[task_id]} terminal events"


# -- two workers read at once --------------------------------------------------------------------


async def test_two_workers_reading_at_once_each_job_is_delivered_to_one(
    engines: list[TaskEngine], redis_url: str
) -> None:
    """Two consumers on two connections read the stream while the jobs are being added (blocking
    and non-blocking reads of 1-3 jobs): every job goes to exactly one of them, the other never
    holds its entry (its renewal reports it lost), and each task runs once: one outcome, in run 1."""
    a, b, janitor_engine, observer = engines
    readers = {"A": Consumer(a, "A"), "B": Consumer(b, "B")}
    janitor = Consumer(janitor_engine, "janitor")
    rng = random.Random(1)
    wins: Counter[str] = Counter()
    async with TerminalEvents(redis_url, shard_of(observer)) as events:
        for _ in range(TRIALS // WAVE):
            delivered: list[tuple[Consumer, Delivery]] = []

            async def read_until_all(reader: Consumer) -> None:
                while len(delivered) < WAVE:  # noqa: B023 (awaited within this iteration)
                    for d in await reader.read(rng.randint(1, 3), rng.choice([None, 20])):
                        delivered.append((reader, d))  # noqa: B023

            created, *_ = await asyncio.wait_for(
                asyncio.gather(create_wave(observer, WAVE), *(read_until_all(r) for r in readers.values())),
                60,
            )
            assert len(delivered) == WAVE, f"{len(delivered)} deliveries of {WAVE} jobs"
            assert sorted(d.task_id for _, d in delivered) == sorted(created)
            for reader in readers.values():
                pending = await observer.redis.xpending_range(
                    reader.shard.stream, GROUP, min="-", max="+", count=10 * WAVE, consumername=reader.name
                )
                mine = {d.entry_id for r, d in delivered if r is reader}
                assert {p["message_id"].decode() for p in pending} == mine
            for reader, d in delivered:
                other = readers["B" if reader.name == "A" else "A"]
                assert await reader.dispatch.renew(d.stream, [d.entry_id]) == set()
                assert await other.dispatch.renew(d.stream, [d.entry_id]) == {d.entry_id}
            outcomes = await asyncio.gather(*(reader.finish(d) for reader, d in delivered))
            assert outcomes == ["ok"] * WAVE
            # Half the waves acknowledge as a worker does; in the others each worker "died" between
            # its outcome and its acknowledgement, and the entries are delivered late.
            acked = rng.random() < 0.5
            if acked:
                for reader in readers.values():
                    await reader.dispatch.ack(
                        reader.shard.stream, [d.entry_id for r, d in delivered if r is reader]
                    )
            assert await late_delivery(janitor) == (0 if acked else WAVE)
            views = {}
            for reader, d in delivered:
                record = await observer.tasks.get(d.task_id)
                assert record is not None
                assert (record.status, record.run, record.attempt) == (TaskStatus.COMPLETED, 1, 1)
                assert record.result == result_of(reader.name)
                wins[reader.name] += 1
                views[d.task_id] = await assert_frozen(observer, d.task_id, [(reader, d)])
            await assert_nothing_left(observer, janitor, delivered, views, events)
    print(f"\ntwo readers, {TRIALS} jobs: {dict(wins)}")
    assert wins["A"] > 0, "the race never went both ways"
    assert wins["B"] > 0, "the race never went both ways"


CHILD = """
import asyncio, json, os
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.outcome import Outcome
from mcp_tasks_redis.engine.runtime.execution import RunningTask, write_outcome
from mcp_tasks_redis.engine.streams import StreamDispatch

async def main() -> None:
    env = os.environ
    engine = TaskEngine.from_url(env["REDIS_URL"], namespace=env["NAMESPACE"],
                                 limits=TaskLimits(lease_ms=60_000))
    dispatch = StreamDispatch(engine.conn, "child")
    [shard] = engine.keys.all_shards
    got = {}
    try:
        await engine.redis.rpush(env["GO_KEY"] + ":ready", 1)
        await engine.redis.pexpire(env["GO_KEY"] + ":ready", 60_000)
        assert await engine.redis.blpop([env["GO_KEY"]], timeout=30)
        # Every job was added before "go": an empty read means all were delivered to someone.
        while batch := await dispatch.read(shard, 1, None):
            for d in batch:
                running = RunningTask(d, expires_ms=d.deadline_ms + engine.limits.grace_ms)
                outcome = Outcome(result={"content": [], "by": "child"})
                wrote = await write_outcome(engine, running, outcome)
                await dispatch.ack(d.stream, [d.entry_id])
                got[d.task_id] = [d.entry_id, d.run, wrote]
        print(json.dumps(got))
    finally:
        await engine.close()

asyncio.run(main())
"""


async def test_two_processes_reading_at_once_each_job_is_delivered_to_one(
    engines: list[TaskEngine], redis_url: str, namespace: str
) -> None:
    """This process and another interpreter read (one job at a time) and finish the same 1000
    jobs: each job goes to exactly one of them, and each task has one outcome, from run 1."""
    a, janitor_engine, _, observer = engines
    parent, janitor = Consumer(a, "parent"), Consumer(janitor_engine, "janitor")
    go_key = f"{namespace}:test:go"
    async with TerminalEvents(redis_url, shard_of(observer)) as events:
        ids = [t for _ in range(TRIALS // WAVE) for t in await create_wave(observer, WAVE)]
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            CHILD,
            cwd=ROOT,
            env={**os.environ, "REDIS_URL": redis_url, "NAMESPACE": namespace, "GO_KEY": go_key},
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        mine: dict[str, tuple[Delivery, str]] = {}
        try:
            assert await a.redis.blpop([go_key + ":ready"], timeout=30), "child did not start"
            await a.redis.rpush(go_key, 1)
            await a.redis.pexpire(go_key, 60_000)
            while batch := await parent.read(1):
                for d in batch:
                    mine[d.task_id] = (d, await parent.finish(d))
                    await parent.dispatch.ack(d.stream, [d.entry_id])
            stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        assert process.returncode == 0, stderr.decode()
        theirs: dict[str, list[Any]] = json.loads(stdout)
        assert not mine.keys() & theirs.keys(), "a job was delivered to both processes"
        assert sorted([*mine, *theirs]) == sorted(ids), "a job was delivered to neither process"
        assert await late_delivery(janitor) == 0
        runs: Counter[str] = Counter()
        views = {}
        for task_id in ids:
            record = await observer.tasks.get(task_id)
            assert record is not None
            assert (record.status, record.run, record.attempt) == (TaskStatus.COMPLETED, 1, 1)
            if task_id in mine:
                delivery, wrote = mine[task_id]
                assert (delivery.run, wrote) == (1, "ok")
                assert record.result == result_of("parent")
                runs["parent"] += 1
                late = [(parent, delivery)]
            else:
                _, run, wrote = theirs[task_id]
                assert (run, wrote) == (1, "ok"), theirs[task_id]
                assert record.result == {"content": [], "by": "child"}
                runs["child"] += 1
                late = []
            views[task_id] = await assert_frozen(observer, task_id, late)
        await assert_nothing_left(observer, janitor, [(parent, d) for d, _ in mine.values()], views, events)
    print(f"\ntwo processes reading, {len(ids)} jobs: {dict(runs)}")
    assert runs["parent"] > 0, "the race never went both ways"
    assert runs["child"] > 0, "the race never went both ways"


# -- a stale worker ---------------------------------------------------------------------------------


async def test_a_stale_worker_cannot_write_once_its_task_was_delivered_again(
    engines: list[TaskEngine], redis_url: str
) -> None:
    """The stale worker took a wave of jobs; its leases lapse. Another worker takes its entries
    over (XAUTOCLAIM), requeues them (mode dead: run 2) and a third runs them, while the stale
    worker, unaware, writes progress, renews, asks for input and writes its outcome, with jitter.
    Per task: the stale outcome lands only if it came before the requeue (which then finds the
    task finished and delivers nothing); otherwise it is refused ('lost', or 'completed' once the
    new run finished) and the new run's
    outcome stands. The fence only moves forward: once a fenced write of the stale run was
    refused, its outcome is refused too."""
    stale_engine, new_engine, reaper_engine, observer = engines
    stale, new = Consumer(stale_engine, "stale"), Consumer(new_engine, "new")
    reaper = Consumer(reaper_engine, "reaper")
    rng = random.Random(2)
    tally: Counter[str] = Counter()
    async with TerminalEvents(redis_url, shard_of(observer)) as events:
        for wave in range(TRIALS // WAVE):
            await create_wave(observer, WAVE)
            first = {d.task_id: d for d in await stale.take(WAVE)}
            # Odd waves give the take-over a head start, even waves the stale worker.
            stale_lag = 40 if wave % 2 else 1

            async def stale_side(d: Delivery) -> dict[str, Any]:
                got: dict[str, Any] = {}
                await jitter(rng, stale_lag)  # noqa: B023 (awaited within this iteration)
                got["progress"] = await stale_engine.tasks.report_progress(
                    d.task_id, Progress(progress=50, message="stale run")
                )
                await jitter(rng)
                got["renew lost"] = d.entry_id in await stale.dispatch.renew(d.stream, [d.entry_id])
                await jitter(rng)
                got["input"] = await attempt(
                    stale_engine.tasks.request_input(d.task_id, "k", INPUT, fence=d.run)
                )
                await jitter(rng)
                got["finish"] = await stale.finish(d)
                return got

            async def takeover() -> tuple[dict[str, str], dict[str, tuple[Delivery, str, TaskRecord]]]:
                taken = await reaper.reclaim_all()
                assert {d.entry_id for d in taken} == {d.entry_id for d in first.values()}  # noqa: B023

                async def requeue(d: Delivery) -> str:
                    await jitter(rng)
                    return await reaper.dispatch.requeue(d, "dead")

                outcomes = await asyncio.gather(*(requeue(d) for d in taken))
                requeued = dict(zip([d.task_id for d in taken], outcomes, strict=True))
                again = await new.take(sum(o == "requeued" for o in outcomes))

                async def rerun(d: Delivery) -> tuple[Delivery, str, TaskRecord]:
                    started = await observer.tasks.get(d.task_id)
                    assert started is not None
                    await new_engine.tasks.report_progress(d.task_id, Progress(progress=10))
                    await jitter(rng)
                    return d, await new.finish(d), started

                reruns = await asyncio.gather(*(rerun(d) for d in again))
                return requeued, {d.task_id: (d, wrote, started) for d, wrote, started in reruns}

            (requeued, reruns), *stale_got = await asyncio.gather(
                takeover(), *(stale_side(d) for d in first.values())
            )
            # Entries of the new runs are left pending (their worker died before acknowledging).
            assert await late_delivery(reaper) == len(reruns)
            views = {}
            late_all: list[tuple[Consumer, Delivery]] = []
            for d, got in zip(first.values(), stale_got, strict=True):
                record = await observer.tasks.get(d.task_id)
                assert record is not None
                assert record.status is TaskStatus.COMPLETED, (record.status, got, requeued[d.task_id])
                # Refused: 'lost' (superseded) or the status of a task the new run finished.
                assert got["finish"] in ("ok", "lost", "completed"), got
                late = [(stale, d)]
                if got["finish"] == "ok":
                    # The stale worker was not stale yet: its outcome came before the requeue,
                    # which found the task finished and delivered nothing.
                    assert requeued[d.task_id] == "terminal"
                    assert d.task_id not in reruns
                    assert (record.run, record.attempt, record.result) == (1, 1, result_of("stale"))
                    tally["stale run finished first"] += 1
                else:
                    # Delivered again: the new run, and only it, finishes the task.
                    assert requeued[d.task_id] == "requeued"
                    second, wrote, started = reruns[d.task_id]
                    assert (second.run, second.attempt, wrote) == (2, 2, "ok")
                    assert (record.run, record.attempt, record.result) == (2, 2, result_of("new"))
                    tally["new run finished"] += 1
                    # Seen by clients while the new run ran: the stale run's input request.
                    if started.status is TaskStatus.INPUT_REQUIRED:
                        tally["new run started input_required (stale request)"] += 1
                    late.append((new, second))
                if not got["input"].ok:
                    # Superseded, or finished by the new run already.
                    assert isinstance(got["input"].error, LeaseLost | TaskIsTerminal), got["input"]
                    assert got["finish"] != "ok"
                    tally["stale input request refused"] += 1
                if got["renew lost"]:
                    tally["stale renewal lost"] += 1
                if got["finish"] != "ok":
                    tally[f"stale outcome refused ({got['finish']})"] += 1
                views[d.task_id] = await assert_frozen(observer, d.task_id, late)
                late_all += late
            await assert_nothing_left(observer, reaper, late_all, views, events)
    print(f"\nstale vs new worker, {TRIALS} trials: {dict(tally)}")
    assert tally["new run finished"] > 0, "the take-over never won"
    assert tally["stale run finished first"] > 0, "the stale worker never won"
    assert tally["stale input request refused"] > 0


# -- cancel vs a crashed worker's recovery ------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_cancel_vs_a_crashed_workers_recovery(
    engines: list[TaskEngine], redis_url: str, max_attempts: int
) -> None:
    """The worker running the task died (it never renews nor finishes). A cancel races its
    recovery: the take-over (XAUTOCLAIM), the requeue (mode dead) and a new worker's run and
    outcome. With attempts left the requeue delivers the task again, and the cancel races the new
    run's outcome; after the last attempt the requeue fails the task, and exactly one of that
    failure and the cancel lands. A cancelled task has no result; the dead worker's outcome is
    refused whenever it comes."""
    crashed_engine, canceller, reaper_engine, observer = engines
    crashed, reaper, new = (
        Consumer(crashed_engine, "crashed"),
        Consumer(reaper_engine, "reaper"),
        Consumer(observer, "new"),
    )
    rng = random.Random(3 + max_attempts)
    tally: Counter[str] = Counter()
    trials = TRIALS // 2
    async with TerminalEvents(redis_url, shard_of(observer)) as events:
        for wave in range(trials // WAVE):
            await create_wave(observer, WAVE)
            dead = {d.task_id: d for d in await crashed.take(WAVE)}
            # Odd waves give the recovery a head start, even waves the cancel.
            cancel_lag = 60 if wave % 2 else 4

            async def cancel(task_id: str) -> Attempt:
                await jitter(rng, cancel_lag)  # noqa: B023 (awaited within this iteration)
                return await attempt(canceller.tasks.cancel(task_id, "Cancelled by the client"))

            async def recover() -> tuple[dict[str, str], dict[str, tuple[Delivery, str]]]:
                taken = await reaper.reclaim_all()

                async def requeue(d: Delivery) -> str:
                    await jitter(rng)
                    return await reaper.dispatch.requeue(d, "dead", max_attempts=max_attempts)

                outcomes = await asyncio.gather(*(requeue(d) for d in taken))
                requeued = dict(zip([d.task_id for d in taken], outcomes, strict=True))
                again: list[Delivery] = []
                while batch := await new.read(WAVE):
                    again += batch

                async def rerun(d: Delivery) -> tuple[Delivery, str]:
                    await jitter(rng)
                    return d, await new.finish(d)

                return requeued, {
                    d.task_id: (d, r) for d, r in await asyncio.gather(*(rerun(d) for d in again))
                }

            (requeued, reruns), *cancels = await asyncio.gather(recover(), *(cancel(t) for t in dead))
            await late_delivery(reaper)
            views = {}
            late_all: list[tuple[Consumer, Delivery]] = []
            for (task_id, first), cancelled in zip(dead.items(), cancels, strict=True):
                record = await observer.tasks.get(task_id)
                assert record is not None
                # A cancel that came before the take-over dropped the entry: nothing to take over.
                reaped = requeued.get(task_id, "none")
                second, wrote = reruns.get(task_id, (None, None))
                winners = [
                    name
                    for name, won in (
                        ("cancelled", cancelled.ok),
                        ("failed", reaped == "failed"),
                        ("completed", wrote == "ok"),
                    )
                    if won
                ]
                assert winners == [record.status.value], (task_id, cancelled, reaped, wrote)
                assert reaped in ("requeued", "failed", "terminal", "none"), reaped
                if reaped == "none":
                    assert cancelled.ok
                if not cancelled.ok:
                    assert isinstance(cancelled.error, TaskIsTerminal), cancelled.error
                if wrote is not None and wrote != "ok":
                    assert wrote == "cancelled", wrote
                if record.status is TaskStatus.CANCELLED:
                    assert (record.result, record.error) == (None, None)
                if record.status is TaskStatus.FAILED:
                    assert max_attempts == 1
                    assert "Task abandoned" in (record.status_message or "")
                    assert record.error is not None
                    assert record.result is None
                if record.status is TaskStatus.COMPLETED:
                    assert (record.run, record.result) == (2, result_of("new"))
                # The dead worker, were it to come back, could not write its outcome.
                assert await crashed.finish(first) == record.status.value
                late = [(crashed, first)] + ([(new, second)] if second is not None else [])
                views[task_id] = await assert_frozen(observer, task_id, late)
                late_all += late
                delivered = "delivered again" if second is not None else "not delivered again"
                tally[f"{record.status.value} (requeue: {reaped}, {delivered})"] += 1
            await assert_nothing_left(observer, reaper, late_all, views, events)
    print(f"\ncancel vs crashed worker (max_attempts={max_attempts}), {trials} trials:")
    for name, count in sorted(tally.items()):
        print(f"  {name}: {count}")
    statuses = {name.split()[0] for name in tally}
    assert len(tally) >= 3, "the race never went more than one way"
    if max_attempts == 1:
        assert statuses == {"cancelled", "failed"}, "cancel and the requeue's failure never both won"
    else:
        assert statuses == {"cancelled", "completed"}, "cancel and the new run never both won"


# -- the same, with real worker processes: a worker frozen past its lease comes back --------------


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_frozen_worker_that_wakes_up_cannot_touch_its_lost_tasks(
    stack: Any, engine: TaskEngine, redis_url: str
) -> None:
    """SIGSTOP a worker mid-task for longer than its lease: another worker's reaper takes its
    entries over and re-runs its tasks (attempt 2). On SIGCONT the frozen worker's tools carry on
    for a moment before it notices (the `requeued` events it slept through, or its next renewal):
    its outcomes are refused, and every task completes once, with the second run's outcome."""
    import signal

    from tests.integration.procs import started_on, wait_for

    lease_ms = 2000
    stack.configure(lease_ms=lease_ms)
    tasks = 8
    async with TerminalEvents(redis_url, shard_of(engine)) as events:
        # Every slot of the frozen worker busy: its reader is not blocked in XREADGROUP while it is
        # frozen. (With a slot free, Redis hands that frozen, blocked read the first job requeued
        # from it, which then waits out another lease and runs a third time: a stalled worker
        # swallows new jobs, which is not the property checked here.)
        frozen = await stack.start_worker("frozen", concurrency=tasks)
        ids = [
            (await engine.tasks.create(tool="slow_compute", arguments={"seconds": 4}, dispatch=True)).task_id
            for _ in range(tasks)
        ]
        for task_id in ids:
            await started_on([frozen], task_id, attempt=1)
        frozen.send(signal.SIGSTOP)
        try:
            other = await stack.start_worker("other", concurrency=10)
            for task_id in ids:
                await started_on([other], task_id, attempt=2, timeout_s=lease_ms / 1000 + 5)
        finally:
            frozen.send(signal.SIGCONT)
        for task_id in ids:
            record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=20)
            assert record is not None
            assert (record.status, record.run, record.attempt) == (TaskStatus.COMPLETED, 2, 2), (
                f"{task_id}: {record.status} {record.status_message!r} (run {record.run})"
            )
            assert record.result is not None
            assert record.result["structuredContent"] == {"seconds": 4}
            # The outcome that stands is the second run's: the other worker wrote it.
            await other.wait_for_log(f"task {task_id} finished", timeout_s=5)
            assert [r.msg for r in other.find_all(f"task {task_id} finished")] == [f"task {task_id} finished"]
        # On waking, the frozen worker let go of every task: it heard of the new delivery or its
        # renewal found the entry gone, or its outcome was refused by the run fence.
        for task_id in ids:
            await wait_for(
                lambda t=task_id: (
                    frozen.find(f"stopping task {t}: lease lost")
                    or frozen.find(f"task {t} finished; outcome dropped (lost)")
                ),
                timeout_s=10,
                what=f"the frozen worker to let go of {task_id}",
            )
            assert not [r for r in frozen.records() if r.msg == f"task {task_id} finished"]
        await events.settle()
        assert {t: events.counts[t] for t in ids} == dict.fromkeys(ids, 1)
        for task_id in ids:
            record = await engine.tasks.get(task_id)
            assert record is not None
            assert (record.status, record.run, record.attempt) == (TaskStatus.COMPLETED, 2, 2)
    # Stopping its stale tools must not stop the worker: it keeps serving. (Fails today: a tool
    # that ends with TaskCancelled before anyio delivered the run's cancel scope re-raises a bare
    # CancelledError (runtime/execution.py, ToolRunner._run), which escapes `with running.scope`
    # (runtime/worker.py, Worker._run) and cancels the worker's whole task group: the process
    # exits with status 0.)
    alive = frozen.alive  # (polls the process: its exit status is known after this)
    assert alive, f"the frozen worker exited ({frozen.popen.returncode}) after waking:\n{frozen.tail()}"
    assert other.alive, other.tail()
    print(f"\nfrozen worker: {len(ids)} tasks re-run on the other worker, all completed once")


pytest_plugins = ["tests.integration.procs"]
