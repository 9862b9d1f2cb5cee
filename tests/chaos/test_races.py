"""Races around leases, thousands of trials each, on separate connections (and processes).

(Cancel vs complete at the store level is tests/integration/test_races.py; these are the others.)

- two workers claim the same task at once (two connections; and this process vs another): exactly
  one runs it, the other is told who holds it, and only the holder's fenced writes land;
- two workers handed the same task in turn: the first one's lease lapses, the reaper re-queues
  the task (or the lease simply lapses) and a second worker claims it, while the first, stale,
  worker keeps writing progress, heartbeats, an input request and its result: once the second
  worker holds the lease, every fenced write of the first is refused, and the task has exactly one
  outcome;
- cancel vs worker crash: the worker holding the task dies (its lease lapses), and a cancel races
  the reaper (re-queue, or fail after the last attempt) and a new worker's claim and completion.

After every race each task's terminal status, result and error are frozen: a barrage of further
changes (cancel, complete, fail, claim, reap, heartbeat, release, input request) changes nothing,
and its event stream holds exactly one terminal event (a result is written at most once).
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

from mcp_tasks_redis.engine.errors import LeaseLost
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import TaskIsTerminal
from mcp_tasks_redis.engine.record import Progress, TaskRecord, TaskStatus

pytestmark = pytest.mark.timeout(120)

TRIALS = 1000
WAVE = 100
ROOT = Path(__file__).resolve().parents[2]
LONG_LEASE = TaskLimits(lease_ms=60_000, max_attempts=3)
SHORT_LEASE_MS = 30
TERMINAL = ("completed", "failed", "cancelled")


def result_of(worker: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": f"done by {worker}"}], "by": worker}


@dataclass
class Outcome:
    ok: bool
    error: BaseException | None = None
    value: Any = None


async def attempt(change: Awaitable[Any]) -> Outcome:
    try:
        value = await change
    except Exception as e:  # kept for the assertions
        return Outcome(False, e)
    return Outcome(True, value=value)


async def jitter(rng: random.Random) -> None:
    for _ in range(rng.randrange(4)):
        await asyncio.sleep(0)


@pytest.fixture
async def engines(redis_url: str, namespace: str) -> AsyncIterator[list[TaskEngine]]:
    """Four engines, each on its own connection pool and pub/sub connection: four processes."""
    made = [TaskEngine.from_url(redis_url, namespace=namespace, limits=LONG_LEASE) for _ in range(4)]
    yield made
    for engine in made:
        await engine.close()


def short_lease(redis_url: str, namespace: str, max_attempts: int = 3) -> TaskEngine:
    return TaskEngine.from_url(
        redis_url, namespace=namespace, limits=TaskLimits(lease_ms=SHORT_LEASE_MS, max_attempts=max_attempts)
    )


async def create_wave(engine: TaskEngine, n: int, **options: Any) -> list[str]:
    records = await asyncio.gather(
        *(
            engine.tasks.create(
                ttl_ms=120_000, tool="slow_compute", arguments={"seconds": 1}, dispatch=True, **options
            )
            for _ in range(n)
        )
    )
    return [r.task_id for r in records]


async def terminal_events(engine: TaskEngine, task_id: str) -> int:
    count = 0
    for _, fields in await engine.redis.xrange(engine.keys.events(task_id)):
        event = json.loads(fields[b"e"])
        count += event.get("type") == "status" and event.get("status") in TERMINAL
    return count


def frozen_view(record: TaskRecord | None) -> tuple[Any, ...]:
    assert record is not None
    return (
        record.status,
        record.status_message,
        record.result,
        record.error,
        record.updated_at_ms,
        record.attempt,
        record.lease_owner,
    )


async def assert_frozen(engine: TaskEngine, task_id: str, workers: list[str]) -> None:
    """Nothing changes a finished task: every kind of change is refused or does nothing."""
    before = frozen_view(await engine.tasks.get(task_id))
    assert before[0] in TERMINAL
    assert await terminal_events(engine, task_id) == 1, f"{task_id}: more than one outcome"
    for change in (
        engine.tasks.cancel(task_id),
        engine.tasks.update(task_id, status=TaskStatus.COMPLETED, result=result_of("late")),
        engine.tasks.update(task_id, status=TaskStatus.FAILED, error={"code": -1, "message": "late"}),
        engine.tasks.update(task_id, status=TaskStatus.WORKING),
        engine.tasks.update(task_id, message="late"),
        *(
            engine.tasks.update(task_id, status=TaskStatus.COMPLETED, result=result_of(w), fence=w)
            for w in workers
        ),
        engine.inputs.request(task_id, "late", {"method": "elicitation/create", "params": {}}),
    ):
        with pytest.raises(TaskIsTerminal):
            await change
    for worker in workers:
        assert (await engine.leases.claim(task_id, worker)).outcome == "terminal"
        assert await engine.leases.heartbeat(task_id, worker) == before[0].value
        assert await engine.leases.release(task_id, worker) is False
    assert await engine.leases.reap(task_id) == "terminal"
    assert frozen_view(await engine.tasks.get(task_id)) == before
    assert await terminal_events(engine, task_id) == 1


# -- two workers claim the same task at once -------------------------------------------------------


async def test_two_workers_claiming_at_once_only_one_runs(engines: list[TaskEngine]) -> None:
    a, b, *_ = engines
    rng = random.Random(1)
    wins: Counter[str] = Counter()
    for _ in range(TRIALS // WAVE):
        ids = await create_wave(a, WAVE)

        async def both(task_id: str) -> tuple[Any, Any]:
            pair = [a.leases.claim(task_id, "A"), b.leases.claim(task_id, "B")]
            first = rng.random() < 0.5
            got = await asyncio.gather(*(pair if first else pair[::-1]))
            return (got[0], got[1]) if first else (got[1], got[0])

        claims = await asyncio.gather(*(both(t) for t in ids))
        finishes = []
        for task_id, (ca, cb) in zip(ids, claims, strict=True):
            outcomes = sorted([ca.outcome, cb.outcome])
            assert outcomes == ["held", "run"], f"{task_id}: {ca} / {cb}"
            winner, loser = ("A", "B") if ca.outcome == "run" else ("B", "A")
            assert (ca if winner == "B" else cb).holder == winner
            wins[winner] += 1
            engine_of = {"A": a, "B": b}
            finishes.append(
                (
                    task_id,
                    winner,
                    engine_of[loser].tasks.update(
                        task_id, status=TaskStatus.COMPLETED, result=result_of(loser), fence=loser
                    ),
                    engine_of[winner].tasks.update(
                        task_id, status=TaskStatus.COMPLETED, result=result_of(winner), fence=winner
                    ),
                )
            )
        for task_id, winner, loser_write, winner_write in finishes:
            refused, landed = await attempt(loser_write), await attempt(winner_write)
            assert not refused.ok, refused
            assert isinstance(refused.error, LeaseLost), refused
            assert landed.ok, landed.error
            record = await a.tasks.get(task_id)
            assert record is not None
            assert record.attempt == 1
            assert record.result == result_of(winner)
        for task_id in ids:
            await assert_frozen(b, task_id, ["A", "B"])
    print(f"\ndouble claim, {TRIALS} trials: {dict(wins)}")
    assert wins["A"] > 0, "the race never went both ways"
    assert wins["B"] > 0, "the race never went both ways"


CHILD = """
import asyncio, json, os, sys
from mcp_tasks_redis.engine.errors import LeaseLost
from mcp_tasks_redis.engine.limits import TaskLimits
from mcp_tasks_redis.engine.engine import TaskEngine
from mcp_tasks_redis.engine.errors import TaskIsTerminal
from mcp_tasks_redis.engine.record import TaskStatus

async def main() -> None:
    env = os.environ
    engine = TaskEngine.from_url(env["REDIS_URL"], namespace=env["NAMESPACE"],
                                 limits=TaskLimits(lease_ms=60_000))
    ids = json.loads(sys.stdin.readline())
    try:
        await engine.redis.rpush(env["GO_KEY"] + ":ready", 1)
        await engine.redis.pexpire(env["GO_KEY"] + ":ready", 60_000)
        await engine.redis.blpop([env["GO_KEY"]], timeout=30)
        outcomes = {}
        # Reverse order, one at a time: the parent claims forward, so the two meet in the middle.
        for task_id in reversed(ids):
            claim = await engine.leases.claim(task_id, "child")
            try:
                await engine.tasks.update(task_id, status=TaskStatus.COMPLETED,
                                          result={"content": [], "by": "child"}, fence="child")
                wrote = "ok"
            except LeaseLost:
                wrote = "lease-lost"
            except TaskIsTerminal:
                wrote = "terminal"
            outcomes[task_id] = [claim.outcome, wrote]
        print(json.dumps(outcomes))
    finally:
        await engine.close()

asyncio.run(main())
"""


async def test_claim_race_between_processes(
    engines: list[TaskEngine], redis_url: str, namespace: str
) -> None:
    """This process and another claim (and complete, fenced) the same 1000 tasks from both ends."""
    a = engines[0]
    ids = [t for _ in range(TRIALS // WAVE) for t in await create_wave(a, WAVE)]
    go_key = f"{namespace}:test:go"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CHILD,
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": redis_url, "NAMESPACE": namespace, "GO_KEY": go_key},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdin is not None
    process.stdin.write((json.dumps(ids) + "\n").encode())
    await process.stdin.drain()
    try:
        assert await a.redis.blpop([go_key + ":ready"], timeout=30), "child did not start"
        await a.redis.rpush(go_key, 1)
        await a.redis.pexpire(go_key, 60_000)
        mine: dict[str, tuple[str, str]] = {}
        for task_id in ids:
            claim = await a.leases.claim(task_id, "parent")
            outcome = await attempt(
                a.tasks.update(
                    task_id,
                    status=TaskStatus.COMPLETED,
                    result={"content": [], "by": "parent"},
                    fence="parent",
                )
            )
            wrote = "ok" if outcome.ok else type(outcome.error).__name__
            mine[task_id] = (claim.outcome, wrote)
        stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, stderr.decode()
    theirs: dict[str, list[str]] = json.loads(stdout)
    runs: Counter[str] = Counter()
    for task_id in ids:
        (p_claim, p_wrote), (c_claim, c_wrote) = mine[task_id], theirs[task_id]
        record = await a.tasks.get(task_id)
        assert record is not None
        assert record.status is TaskStatus.COMPLETED
        assert record.attempt == 1, f"{task_id} ran twice: {mine[task_id]} / {theirs[task_id]}"
        if p_claim == "run":
            # The child came second: held (before the parent finished) or terminal (after).
            assert c_claim in ("held", "terminal")
            assert c_wrote in ("lease-lost", "terminal")
            assert p_wrote == "ok"
            assert record.result == {"content": [], "by": "parent"}
            runs["parent"] += 1
        else:
            assert c_claim == "run", theirs[task_id]
            assert c_wrote == "ok", theirs[task_id]
            assert p_claim in ("held", "terminal")
            assert p_wrote in ("LeaseLost", "TaskIsTerminal")
            assert record.result == {"content": [], "by": "child"}
            runs["child"] += 1
        assert await terminal_events(a, task_id) == 1
    print(f"\nclaim race across processes, {len(ids)} tasks: {dict(runs)}")
    assert runs["parent"] > 0, "the race never went both ways"
    assert runs["child"] > 0, "the race never went both ways"


# -- two workers handed the same task in turn --------------------------------------------------------


async def test_stale_worker_writes_are_refused_once_another_worker_holds_the_task(
    engines: list[TaskEngine], redis_url: str, namespace: str
) -> None:
    _, new, reaper, observer = engines
    stale = short_lease(redis_url, namespace)
    rng = random.Random(2)
    tally: Counter[str] = Counter()
    try:
        for wave in range(TRIALS // WAVE):
            ids = await create_wave(observer, WAVE)
            for claim in await asyncio.gather(*(stale.leases.claim(t, "stale") for t in ids)):
                assert claim.outcome == "run"
            await asyncio.sleep(SHORT_LEASE_MS * 2 / 1000)  # every lease has lapsed
            reap_first = wave % 2 == 0  # half the waves: the reaper re-queues; half: a plain take-over

            async def trial(task_id: str) -> None:
                async def stale_side() -> list[tuple[str, Outcome]]:
                    got = []
                    for name, change in (
                        (
                            "progress",
                            stale.tasks.update(task_id, progress=Progress(progress=50), fence="stale"),
                        ),
                        ("heartbeat", stale.leases.heartbeat(task_id, "stale")),
                        (
                            "input",
                            stale.inputs.request(
                                task_id, "k", {"method": "elicitation/create"}, fence="stale"
                            ),
                        ),
                        (
                            "complete",
                            stale.tasks.update(
                                task_id, status=TaskStatus.COMPLETED, result=result_of("stale"), fence="stale"
                            ),
                        ),
                    ):
                        await jitter(rng)
                        got.append((name, await attempt(change)))
                    return got

                async def new_side() -> tuple[Any, Outcome | None]:
                    if reap_first:  # noqa: B023 (awaited within this iteration)
                        await reaper.leases.reap(task_id)
                    await jitter(rng)
                    claim = await new.leases.claim(task_id, "new")
                    if claim.outcome != "run":
                        return claim, None
                    await new.tasks.update(task_id, progress=Progress(progress=10), fence="new")
                    await jitter(rng)
                    done = await attempt(
                        new.tasks.update(
                            task_id, status=TaskStatus.COMPLETED, result=result_of("new"), fence="new"
                        )
                    )
                    return claim, done

                stale_got, (claim, new_done) = await asyncio.gather(stale_side(), new_side())
                record = await observer.tasks.get(task_id)
                assert record is not None
                assert record.status is TaskStatus.COMPLETED
                stale_completed = dict(stale_got)["complete"].ok
                if claim.outcome == "run":
                    # The new worker holds the task: it (and only it) finishes it.
                    assert new_done is not None, new_done
                    assert new_done.ok, new_done
                    assert not stale_completed
                    assert record.result == result_of("new")
                    assert record.attempt == 2
                    tally["new worker finished"] += 1
                    # Every stale write that came after the take-over was refused, never applied.
                    for name, got in stale_got:
                        if name == "heartbeat":
                            assert got.value in ("working", "input_required", "lost", "completed"), got
                        elif not got.ok:
                            assert isinstance(got.error, LeaseLost | TaskIsTerminal), (name, got.error)
                else:
                    # The stale worker was not stale after all: it finished (or renewed its lease
                    # with a heartbeat) before anyone took over. Its result stands; the new
                    # worker's claim found the task finished, or held, and did not run it.
                    assert claim.outcome in ("terminal", "held"), claim
                    assert stale_completed
                    assert record.result == result_of("stale")
                    tally["stale worker finished first"] += 1
                refused = [n for n, got in stale_got if not got.ok]
                tally["stale writes refused"] += len(refused)
                await assert_frozen(observer, task_id, ["stale", "new"])

            await asyncio.gather(*(trial(t) for t in ids))
    finally:
        await stale.close()
    print(f"\nstale vs new worker, {TRIALS} trials: {dict(tally)}")
    assert tally["new worker finished"] > TRIALS // 2
    assert tally["stale writes refused"] > 0


# -- cancel vs worker crash ----------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 3])
async def test_cancel_vs_crashed_worker_reaped(
    engines: list[TaskEngine], redis_url: str, namespace: str, max_attempts: int
) -> None:
    """The worker running the task died (its lease lapses); a cancel races the reaper, and a new
    worker's claim and completion. With attempts left the reaper re-queues, so the cancel always
    wins over the reaper (and races the new run's completion); after the last attempt the reaper
    fails the task, and exactly one of the cancel and that failure lands."""
    canceller, new, reaper, observer = engines
    crashed = short_lease(redis_url, namespace, max_attempts=max_attempts)
    rng = random.Random(3 + max_attempts)
    tally: Counter[str] = Counter()
    trials = TRIALS // 2
    try:
        for _ in range(trials // WAVE):
            ids = await create_wave(crashed, WAVE)
            for claim in await asyncio.gather(*(crashed.leases.claim(t, "crashed") for t in ids)):
                assert claim.outcome == "run"
            await asyncio.sleep(SHORT_LEASE_MS * 2 / 1000)

            async def trial(task_id: str) -> None:
                async def cancel() -> Outcome:
                    await jitter(rng)
                    return await attempt(canceller.tasks.cancel(task_id, "Cancelled by the client"))

                async def reap() -> str:
                    await jitter(rng)
                    return await reaper.leases.reap(task_id)

                async def rerun() -> tuple[str, Outcome | None]:
                    await jitter(rng)
                    claim = await new.leases.claim(task_id, "new")
                    if claim.outcome != "run":
                        return claim.outcome, None
                    await jitter(rng)
                    return "run", await attempt(
                        new.tasks.update(
                            task_id, status=TaskStatus.COMPLETED, result=result_of("new"), fence="new"
                        )
                    )

                cancelled, reaped, (claimed, completed) = await asyncio.gather(cancel(), reap(), rerun())
                record = await observer.tasks.get(task_id)
                assert record is not None
                assert record.is_terminal
                winners = [
                    name
                    for name, won in (
                        ("cancelled", cancelled.ok),
                        ("failed", reaped == "failed" or claimed == "exhausted"),
                        ("completed", completed is not None and completed.ok),
                    )
                    if won
                ]
                assert winners == [record.status.value], (task_id, cancelled, reaped, claimed, completed)
                for loser in (cancelled, completed):
                    if loser is not None and not loser.ok:
                        assert isinstance(loser.error, TaskIsTerminal), loser.error
                if record.status is TaskStatus.CANCELLED:
                    assert record.result is None
                if record.status is TaskStatus.FAILED:
                    assert max_attempts == 1
                    assert record.status_message
                    assert "Task abandoned" in record.status_message
                # The dead worker, were it to come back, could not write anything.
                late = await attempt(
                    crashed.tasks.update(
                        task_id, status=TaskStatus.COMPLETED, result=result_of("crashed"), fence="crashed"
                    )
                )
                assert not late.ok
                tally[f"{record.status.value} (reaper: {reaped}, claim: {claimed})"] += 1
                await assert_frozen(observer, task_id, ["crashed", "new"])

            await asyncio.gather(*(trial(t) for t in ids))
    finally:
        await crashed.close()
    print(f"\ncancel vs crashed worker (max_attempts={max_attempts}), {trials} trials:")
    for name, count in sorted(tally.items()):
        print(f"  {name}: {count}")
    statuses = {name.split()[0] for name in tally}
    assert "cancelled" in statuses
    assert len(tally) >= 3, "the race never went more than one way"
    if max_attempts == 1:
        assert statuses == {"cancelled", "failed"}, "cancel and the reaper's failure never both won"


# -- the same, with real worker processes: a worker frozen past its lease comes back --------------


@pytest.mark.slow
@pytest.mark.timeout(90)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_frozen_worker_that_wakes_up_cannot_touch_its_lost_tasks(
    stack: Any, engine: TaskEngine
) -> None:
    """SIGSTOP a worker mid-task for longer than its lease: another worker re-runs its tasks. On
    SIGCONT the frozen worker's tools carry on for a moment (progress, result) before its guard
    notices the lease is gone: none of those writes may land, and no task may end failed because
    of them. Every task completes once, from the second run."""
    import signal

    from tests.integration.procs import started_on, wait_for

    lease_ms = 2000
    stack.configure(lease_ms=lease_ms, poll_interval_ms=250)
    frozen = await stack.start_worker("frozen", concurrency=10)
    ids = [
        (await engine.tasks.create(tool="slow_compute", arguments={"seconds": 4}, dispatch=True)).task_id
        for _ in range(8)
    ]
    for task_id in ids:
        await started_on([frozen], task_id, attempt=1)
    other = await stack.start_worker("other", concurrency=10)
    frozen.send(signal.SIGSTOP)
    try:
        for task_id in ids:
            await started_on([other], task_id, attempt=2, timeout_s=lease_ms / 1000 + 5)
    finally:
        frozen.send(signal.SIGCONT)
    for task_id in ids:
        record = await engine.wait_until(task_id, lambda r: r is None or r.is_terminal, timeout=20)
        assert record is not None
        assert (record.status, record.attempt) == (TaskStatus.COMPLETED, 2), (
            f"{task_id}: {record.status} {record.status_message!r} (attempt {record.attempt})"
        )
        assert record.result is not None
        assert record.result["structuredContent"] == {"seconds": 4}
        assert await terminal_events(engine, task_id) == 1
    # On waking, the frozen worker let go of every task: its guard saw the lease gone, or the
    # tool's next fenced write was refused first and the run's outcome was dropped.
    for task_id in ids:
        await wait_for(
            lambda t=task_id: (
                frozen.find(f"stopping task {t}: lease lost")
                or frozen.find(f"task {t}: outcome of this run dropped")
                or frozen.find(f"task {t} finished after its lease was lost")
            ),
            timeout_s=10,
            what=f"the frozen worker to let go of {task_id}",
        )
    print(f"\nfrozen worker: {len(ids)} tasks re-run on the other worker, all completed once")


pytest_plugins = ["tests.integration.procs"]
