"""Fairness across owners (issue 12, item 5): how long one owner's task waits behind another
owner's backlog, with per-owner quotas and without.

Run from the repository root::

    .venv/bin/python bench/fairness.py            # N=1000 tasks of 50 ms on 4 slots: under 1 min
    .venv/bin/python bench/fairness.py --quick    # N=200: about 20 s

The claim (docs/architecture.md, Policies): "An owner with a thousand queued tasks holds at most
its limit of the slots, so another owner's task waits for at most one run per slot." Here one
worker process (``mcp-tasks-redis worker``, S slots) runs ``hold(R)`` (bench/fairness_app.py: a
sleep of R seconds, no progress). Tasks are created the way the MCP server creates them
(mcp_v1/tools.py): ``admission.admit`` for the tool, then ``engine.tasks.create(...,
owner=..., dispatch=True)`` on an engine built by ``ops.processes.engine_from(Settings)``, so the
create script applies the quota exactly as it does for a ``tools/call``. Two phases in one run, one
throwaway ``redis-server``, a fresh namespace and worker each:

- ``quota``: ``MCP_TASKS_OWNER_MAX_RUNNING=S`` (server and worker). Owner A creates N tasks at
  once: S start, the rest wait in A's owner queue and start as A's tasks end.
- ``no quota`` (the baseline): the same without a quota; A's N tasks all go into the dispatch
  stream, in front of anything created later.

In each phase, before A's burst, owner B runs K tasks one at a time on the idle worker (the
floor: pickup latency alone); then, right after A's N creates have returned, B creates one task
and waits for it (``quota`` phase: K such tasks in turn, while A's backlog is still far from
drained). B's delay is the time from its create call to its tool starting (the tool's own
clock; from the call, since the worker may start the tool before the call's reply is read); the
worker's ``usage.wait_ms`` is kept beside it in the JSON. The claim holds when B's delay
with the quota is at most R (one run per slot: B needs one slot, and the first of A's S runs ends
within R) plus the idle floor. A's throughput (N / first create -> last end) is reported for both
phases: the quota must not cost A its throughput while nobody else wants the slots.

Prints a Markdown table; writes everything to ``bench/results/fairness.json``. No timed
assertion: it is a measurement, a ratio against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from bench_runtime import Processes, product_command, workdir  # noqa: E402

from mcp_tasks_redis.engine.admission import admit  # noqa: E402
from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from mcp_tasks_redis.engine.record import TaskRecord  # noqa: E402
from mcp_tasks_redis.engine.tasks import new_task_id  # noqa: E402
from mcp_tasks_redis.ops.embedded import EmbeddedRedis  # noqa: E402
from mcp_tasks_redis.ops.processes import engine_from  # noqa: E402
from mcp_tasks_redis.settings import Settings  # noqa: E402

APP = "bench.fairness_app:app"
TOOL = "hold"
RESULTS = ROOT / "bench" / "results" / "fairness.json"
OWNER_A, OWNER_B = "owner-a", "owner-b"
CREATES_IN_FLIGHT = 32


def _spec() -> Any:
    from fairness_app import app

    spec = app.get(TOOL)
    assert spec is not None
    return spec


async def create(engine: TaskEngine, owner: str, seconds: float) -> TaskRecord:
    """One task call as the MCP server makes it (mcp_v1/tools.py `_create`), for an
    authenticated ``owner`` (the quota's key is the principal)."""
    spec = _spec()
    admission = admit(spec, engine.limits, None)
    return await engine.tasks.create(
        task_id=new_task_id(),
        fresh_id=True,
        owner=owner,
        session=f"session-{owner}",
        tool=spec.name,
        arguments={"seconds": seconds},
        meta={**admission.meta, "input": []},
        priority=admission.priority,
        dispatch=True,
    )


async def finished(engine: TaskEngine, task_id: str, timeout_s: float) -> TaskRecord:
    record = await engine.wait_until(
        task_id, lambda r: r is None or r.is_terminal, timeout=timeout_s, outage_tolerance=timeout_s
    )
    if record is None or not record.is_terminal:
        raise TimeoutError(f"task {task_id} not finished after {timeout_s:g} s: {record}")
    if record.status.value != "completed":
        raise RuntimeError(f"task {task_id} {record.status.value}: {record.status_message}")
    return record


def stamps(record: TaskRecord) -> tuple[float, float]:
    assert record.result is not None, record
    body = record.result["structuredContent"]
    return float(body["started"]), float(body["ended"])


async def b_sample(engine: TaskEngine, run_s: float, timeout_s: float) -> dict[str, Any]:
    """B creates one task and waits for it: delay = create returned -> tool started."""
    called = time.time()
    record = await create(engine, OWNER_B, run_s)
    returned = time.time()
    done = await finished(engine, record.task_id, timeout_s)
    started, ended = stamps(done)
    # The terminal event carries the outcome, not the run's usage: read the record again.
    stored = await engine.tasks.get(record.task_id)
    usage = (stored.usage if stored is not None else None) or {}
    return {
        "called": called,
        "created": returned,
        "started": started,
        "ended": ended,
        # From the call, not its return: the worker may start the tool before the reply is read.
        "delay_ms": round((started - called) * 1000, 2),
        "delay_from_return_ms": round((started - returned) * 1000, 2),
        "create_call_ms": round((returned - called) * 1000, 2),
        "wait_ms": usage.get("wait_ms"),
    }


def max_concurrent(spans: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    best = current = 0
    for _, step in events:
        current += step
        best = max(best, current)
    return best


async def cleanup(engine: TaskEngine, namespace: str) -> int:
    deleted = 0
    async for key in engine.redis.scan_iter(match=f"{namespace}:*", count=1000):
        deleted += int(await engine.redis.delete(key))
    return deleted


async def phase(
    procs: Processes, name: str, quota: bool, n: int, run_s: float, slots: int, samples: int
) -> dict[str, Any]:
    namespace = f"bench-fairness-{uuid.uuid4().hex[:8]}"
    quota_settings = {"owner_max_running": str(slots if quota else 0), "owner_max_queued": str(n + 100)}
    env = procs.env(namespace, app=APP, concurrency=str(slots), **quota_settings)
    worker = procs.start(f"worker-{name}", [*product_command(), "worker"], env)
    settings = Settings(
        redis_url=procs.redis_url,
        namespace=namespace,
        owner_max_running=slots if quota else 0,
        owner_max_queued=n + 100,
    )
    engine = engine_from(settings)
    backlog_s = n * run_s / slots
    timeout_s = 3 * backlog_s + 30
    try:
        assert engine.limits.quotas == quota
        await engine.events.ready()
        # The worker is up once a first task has run.
        await finished(engine, (await create(engine, "warm-up", 0)).task_id, 30)
        worker.check_alive()

        idle: list[dict[str, Any]] = []
        for _ in range(samples):
            idle.append(await b_sample(engine, run_s, 30))
            await asyncio.sleep(random.uniform(0, run_s))

        gate = asyncio.Semaphore(CREATES_IN_FLIGHT)

        async def create_a(index: int) -> tuple[int, str]:
            async with gate:
                return index, (await create(engine, OWNER_A, run_s)).task_id

        a_began = time.time()
        created = await asyncio.gather(*(create_a(i) for i in range(n)))
        a_created = time.time()
        a_ids = [task_id for _, task_id in sorted(created)]

        loaded: list[dict[str, Any]] = []
        for _ in range(samples if quota else 1):  # without a quota the first B drains A's backlog
            loaded.append(await b_sample(engine, run_s, timeout_s))
            await asyncio.sleep(random.uniform(0, run_s))
        worker.check_alive()

        a_spans: list[tuple[float, float]] = []
        a_waits: list[float] = []
        for task_id in a_ids:
            record = await finished(engine, task_id, timeout_s)
            a_spans.append(stamps(record))
            a_waits.append(float((record.usage or {}).get("wait_ms", 0)))
        a_end = max(e for _, e in a_spans)
        a_starts = [s for s, _ in a_spans]
        for sample in loaded:
            # A's tasks not yet started when B's create returned, and those of them that started
            # before B did (in front of it in the line).
            sample["a_backlog"] = sum(1 for s in a_starts if s > sample["called"])
            sample["a_ahead"] = sum(1 for s in a_starts if sample["called"] < s < sample["started"])
        span = a_end - a_began
        first = loaded[0]
        result: dict[str, Any] = {
            "phase": name,
            "namespace": namespace,
            "owner_max_running": slots if quota else 0,
            "n": n,
            "run_ms": run_s * 1000,
            "slots": slots,
            "idle": _summary([s["delay_ms"] for s in idle]),
            "idle_samples": idle,
            "b_first_delay_ms": first["delay_ms"],
            "b_first_wait_ms": first["wait_ms"],
            "b_first_a_backlog": first["a_backlog"],
            "b_first_a_ahead": first["a_ahead"],
            "b_loaded": _summary([s["delay_ms"] for s in loaded]),
            "b_loaded_max_a_ahead": max(s["a_ahead"] for s in loaded),
            "b_loaded_min_a_backlog": min(s["a_backlog"] for s in loaded),
            "b_samples": loaded,
            "a_create_s": round(a_created - a_began, 3),
            "a_span_s": round(span, 3),
            "a_tasks_per_s": round(n / span, 1),
            # A slot's time per A task, turnover included (finish, quota release/admit, pickup).
            "a_slot_ms": round(slots * span / n * 1000, 1),
            "a_ideal_tasks_per_s": round(slots / run_s, 1),
            "a_max_running": max_concurrent(a_spans),
            "a_wait_ms_p50": round(statistics.median(a_waits), 1),
        }
        result["keys_deleted"] = await cleanup(engine, namespace)
        return result
    except Exception:
        print(f"--- {worker.name} ---\n{worker.tail()}", file=sys.stderr)
        raise
    finally:
        worker.stop()
        with contextlib.suppress(Exception):
            await cleanup(engine, namespace)
        await engine.close()


def _summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered), 2),
        "max": round(ordered[-1], 2),
        "min": round(ordered[0], 2),
    }


def markdown(results: dict[str, Any]) -> str:
    p = results["parameters"]
    r = p["run_ms"]
    rows = [
        f"N = {p['n']} tasks of owner A, each `hold({r / 1000:g})` (R = {r:g} ms), one worker with "
        f"S = {p['slots']} slots. B's delay: its create call -> its tool started. T: a slot's time "
        "per A task in the phase (S x A's span / N: R plus the slot's turnover).",
        "",
        "| Phase | A's running limit | B idle floor p50 / max (ms) | B behind A's backlog: first (ms) "
        "| first / R | B's K samples p50 / max (ms) | max / R | T (ms) | max / T "
        "| A tasks ahead of B (max) | A backlog at B's create (min) | A tasks/s (ideal S/R) "
        "| A running at once (max) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ph in results["phases"]:
        loaded = ph["b_loaded"]
        limit = ph["owner_max_running"] or "none"
        rows.append(
            f"| {ph['phase']} | {limit} | {ph['idle']['p50']:g} / {ph['idle']['max']:g} "
            f"| {ph['b_first_delay_ms']:g} | {ph['b_first_delay_ms'] / r:.2f} "
            f"| {loaded['p50']:g} / {loaded['max']:g} (K={loaded['n']}) | {loaded['max'] / r:.2f} "
            f"| {ph['a_slot_ms']:g} | {loaded['max'] / ph['a_slot_ms']:.2f} "
            f"| {ph['b_loaded_max_a_ahead']} | {ph['b_loaded_min_a_backlog']} "
            f"| {ph['a_tasks_per_s']:g} ({ph['a_ideal_tasks_per_s']:g}) | {ph['a_max_running']} |"
        )
    s = results["summary"]
    rows += [
        "",
        f"B's delay behind {p['n']} queued tasks of A: {s['quota_delay_ms']:g} ms with the quota "
        f"({s['quota_delay_over_r']:.2f} R; worst of K: {s['quota_worst_over_r']:.2f} R, "
        f"{s['quota_worst_over_t']:.2f} T), {s['baseline_delay_ms']:g} ms without "
        f"({s['baseline_delay_over_r']:.1f} R; backlog x R / S = {s['expected_baseline_ms']:g} ms): "
        f"the quota cuts it {s['improvement']:.0f}x. Worst <= R + idle floor: {s['within_r']}; "
        f"worst <= T: {s['within_t']}. A's throughput with the quota: "
        f"{s['a_throughput_ratio']:.2f} of without.",
    ]
    return "\n".join(rows)


async def run(args: argparse.Namespace, redis_url: str, redis_desc: str, logs: Path) -> dict[str, Any]:
    procs = Processes(logs, redis_url)
    try:
        phases = []
        for name, quota in (("quota", True), ("no quota", False)):
            print(f"phase {name} ...", file=sys.stderr)
            phases.append(
                await phase(procs, name, quota, args.n, args.run_ms / 1000, args.slots, args.samples)
            )
        with_quota, without = phases
        r = args.run_ms
        worst = with_quota["b_loaded"]["max"]
        return {
            "environment": {
                "redis": redis_desc,
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "loadavg_at_start": os.getloadavg(),
            },
            "parameters": {
                "n": args.n,
                "run_ms": r,
                "slots": args.slots,
                "samples": args.samples,
                "quick": args.quick,
            },
            "phases": phases,
            "summary": {
                "quota_delay_ms": with_quota["b_first_delay_ms"],
                "quota_delay_over_r": with_quota["b_first_delay_ms"] / r,
                "quota_worst_ms": worst,
                "quota_worst_over_r": worst / r,
                "quota_worst_over_t": worst / with_quota["a_slot_ms"],
                "baseline_delay_ms": without["b_first_delay_ms"],
                "baseline_delay_over_r": without["b_first_delay_ms"] / r,
                "expected_baseline_ms": round(without["b_first_a_backlog"] * r / args.slots, 1),
                "improvement": without["b_first_delay_ms"] / max(with_quota["b_first_delay_ms"], 0.001),
                "a_throughput_ratio": with_quota["a_tasks_per_s"] / without["a_tasks_per_s"],
                "within_r": worst <= r + with_quota["idle"]["max"],
                "within_t": worst <= with_quota["a_slot_ms"],
            },
        }
    finally:
        procs.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="N=200 instead of 1000")
    parser.add_argument(
        "--n", type=int, default=None, help="owner A's tasks (default 1000; 200 with --quick)"
    )
    parser.add_argument("--run-ms", type=float, default=50.0, help="R: each task's run time")
    parser.add_argument("--slots", type=int, default=4, help="S: the worker's slots (and A's running limit)")
    parser.add_argument("--samples", type=int, default=20, help="K: B's tasks per measurement")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.n is None:
        args.n = 200 if args.quick else 1000
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
