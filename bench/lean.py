"""The issue-11 measurements of the lean engine that the peer phases do not already give.

Phases of ``run_all.py`` (each also in its default list):

- ``trace``: a MONITOR trace of ours, through MCP (server + worker + the SDK client, ``noop`` tasks
  one at a time, then tasks reporting progress) and through the engine alone: exactly which
  commands a task's life and a progress update cost (``peers/ours_trace.py``).
- ``memory``: Redis memory per retained finished task, ours against arq and Docket, the same
  driver (``enginebench.memory``): ``used_memory`` delta and ``MEMORY USAGE`` of every key.
- ``concurrency``: 100, 1,000 and 10,000 tasks sleeping 60 s at once on 4 worker processes: Redis
  commands per second (by command) and worker CPU at steady state, so the lease cost shows as per
  worker, not per task.
- ``workers``: no-op throughput with 1, 2 and 4 worker processes on one Redis; and, where the
  engine accepts ``redis+cluster://`` URLs, on a 3-master Redis Cluster started here from
  ``redis-server`` (3 shards) against one Redis with the same 3 shards.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import redis
from common import Proc, cpu_of, log, stop_all, wait_for
from run_all import MAIN_PY, PEERS, Run, engine_argv, engine_systems

OURS_NAMESPACE = "bench"


# -- trace ---------------------------------------------------------------------------------------
def measure_trace(run: Run) -> None:
    n = 10 if run.args.quick else 30
    out: dict[str, Any] = {}
    for via in ("mcp", "engine"):
        res = run.runner(
            f"ours-trace-{via}",
            [MAIN_PY, str(PEERS / "ours_trace.py"), "--redis", run.url, "--via", via, "--n", str(n)],
            timeout=240,
        )
        if res:
            out[via] = res
            noop = res.get("noop", res)
            log(
                f"trace via {via}: {noop['commands_per_task_median']} commands per task "
                f"(min {noop['commands_per_task_min']})"
                + (
                    f"; {res['commands_per_progress_update']} per progress update"
                    if "commands_per_progress_update" in res
                    else ""
                )
            )
    run.results["trace"] = out


# -- memory --------------------------------------------------------------------------------------
def measure_memory(run: Run) -> None:
    n = 500 if run.args.quick else 2000
    out: dict[str, Any] = {}
    systems = engine_systems(run)
    for system in ("ours", "arq_10ms", "docket"):
        if system not in systems:
            continue
        res = run.runner(
            f"{system}-memory",
            engine_argv(systems[system], "memory", run.url, ["--n", str(n)]),
            timeout=300,
        )
        if res:
            out[system] = res
            log(
                f"memory {system}: used_memory {res['used_memory_bytes_per_task']} B/task, "
                f"MEMORY USAGE {res['memory_usage_bytes_per_task']} B/task"
            )
    run.results["memory"] = out


# -- many running tasks ----------------------------------------------------------------------------
def _commandstats(client: redis.Redis) -> dict[str, tuple[int, int]]:
    stats: dict[str, Any] = client.info("commandstats")  # type: ignore[assignment]
    return {
        k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
        for k, v in stats.items()
        if isinstance(v, dict)
    }


def _ours_worker(run: Run, index: int, concurrency: int, url: str, shards: int = 1) -> Proc:
    from ours import CLI, worker_env

    env = {**worker_env(url), "MCP_TASKS_SHARDS": str(shards)}
    return Proc(
        f"ours-worker-{index}",
        [CLI, "worker", "--concurrency", str(concurrency)],
        env=env,
        log_dir=run.log_dir,
    )


def _kill(procs: list[Proc]) -> None:
    """Throwaway sleeping tasks: the workers are killed (by PID), not asked to hand 10,000 back."""
    for p in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, signal.SIGKILL)
    for p in procs:
        with contextlib.suppress(Exception):
            p.popen.wait(10)
    stop_all(procs)


def measure_concurrency(run: Run) -> None:
    import asyncio

    from mcp_tasks_redis.engine.engine import TaskEngine

    quick = run.args.quick
    levels = [100, 1000, 10000]
    window_s = 12.0 if quick else 30.0
    sleep_s = 60.0
    workers = 4
    out: dict[str, Any] = {
        "workers": workers,
        "sleep_s": sleep_s,
        "window_s": window_s,
        "lease_ms": 30000,
        "levels": {},
    }
    for level in levels:
        run.flush()
        concurrency = max(10, -(-level // workers) + 10)
        procs = [_ours_worker(run, i, concurrency, run.url) for i in range(workers)]
        try:
            wait_for(
                lambda: run.client.zcard(f"{OURS_NAMESPACE}:workers") >= workers, 60, "ours workers", procs
            )
            time.sleep(1.0)
            engine = TaskEngine.from_url(run.url, namespace=OURS_NAMESPACE)
            stream = engine.keys.all_shards[0].stream  # the normal priority level's stream

            created_at = time.monotonic()
            create_s = asyncio.run(_create_sleepers(engine, level, sleep_s))
            wait_for(
                lambda: int(run.client.xpending(stream, "workers")["pending"]) >= level,  # noqa: B023
                120,
                f"{level} tasks running",
                procs,
                interval=0.25,
            )
            started_s = time.monotonic() - created_at
            time.sleep(2.0)
            pids = [p.pid for p in procs]
            rpid = int(run.client.info("server")["process_id"])
            c0, cpu0, t0 = _commandstats(run.client), cpu_of([rpid, *pids]), time.perf_counter()
            time.sleep(window_s)
            c1, cpu1, wall = _commandstats(run.client), cpu_of([rpid, *pids]), time.perf_counter() - t0
            if time.monotonic() - created_at > sleep_s:
                run.error(f"concurrency:{level}", "the window outlasted the first tasks (not steady state)")
            # The harness sends only INFO during the window (its XPENDING polls end before it).
            skip = {"info", "config|resetstat", "ping", "client|setinfo", "hello"}
            calls = {
                k: (c1[k][0] - c0.get(k, (0, 0))[0], c1[k][1] - c0.get(k, (0, 0))[1])
                for k in c1
                if k not in skip
            }
            calls = {k: v for k, v in calls.items() if v[0] > 0}
            total = sum(v[0] for v in calls.values())
            worker_cpu = [cpu1[p] - cpu0[p] for p in pids]
            res = {
                "tasks": level,
                "slots_per_worker": concurrency,
                "create_s": round(create_s, 2),
                "all_running_after_s": round(started_s, 2),
                "window_s": round(wall, 1),
                "redis_cmds_per_s": round(total / wall, 2),
                "redis_cmds_per_s_by_name": {
                    k: round(v[0] / wall, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1][0])
                },
                "redis_usec_per_s_by_name": {
                    k: round(v[1] / wall, 1) for k, v in sorted(calls.items(), key=lambda kv: -kv[1][1])
                },
                "redis_cpu_pct": round(100 * (cpu1[rpid] - cpu0[rpid]) / wall, 2),
                "worker_cpu_pct": [round(100 * c / wall, 2) for c in worker_cpu],
                "worker_cpu_pct_total": round(100 * sum(worker_cpu) / wall, 2),
                "worker_rss_mb": [_rss_mb(p) for p in pids],
                "loadavg": os.getloadavg(),
            }
            out["levels"][str(level)] = res
            log(
                f"concurrency {level}: {res['redis_cmds_per_s']} Redis cmds/s, workers "
                f"{res['worker_cpu_pct_total']} % CPU, Redis {res['redis_cpu_pct']} % CPU"
            )
        except Exception as e:
            run.error(f"concurrency:{level}", f"{type(e).__name__}: {e}")
        finally:
            _kill(procs)
    run.results["concurrency"] = out


async def _create_sleepers(engine: Any, count: int, sleep_s: float) -> float:
    """Create ``count`` sleeping tasks, 50 creates in flight; returns how long that took."""
    import asyncio

    sem = asyncio.Semaphore(50)

    async def one() -> None:
        async with sem:
            await engine.tasks.create(tool="sleep", arguments={"seconds": sleep_s}, dispatch=True)

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(count)))
    took = time.perf_counter() - t0
    await engine.close()
    return took


def _rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


# -- 1, 2, 4 workers; a 3-master cluster ------------------------------------------------------------
def cluster_supported() -> tuple[bool, str]:
    try:
        from mcp_tasks_redis.engine.connection import connect

        client: Any = connect("redis+cluster://127.0.0.1:1")
    except Exception as e:
        return False, f"the engine does not take redis+cluster:// URLs ({type(e).__name__}: {e})"
    with contextlib.suppress(Exception):
        import asyncio

        asyncio.run(client.aclose())
    return True, ""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_cluster(masters: int = 3) -> Iterator[list[int]]:
    """A throwaway Redis Cluster of ``masters`` masters (no replicas) on loopback ports."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    ports: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []

    def start_node() -> None:
        # A free port can be taken by another process before the node binds it: try another.
        for _ in range(10):
            port = free_port()
            proc = subprocess.Popen(
                [
                    shutil.which("redis-server") or "redis-server",
                    "--port", str(port),
                    "--bind", "127.0.0.1",
                    "--save", "",
                    "--appendonly", "no",
                    "--cluster-enabled", "yes",
                    "--cluster-config-file", f"nodes-{port}.conf",
                    "--dir", str(workdir),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )  # fmt: skip
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                with contextlib.suppress(redis.RedisError):
                    if redis.Redis(port=port, socket_timeout=1).ping():
                        procs.append(proc)
                        ports.append(port)
                        return
                time.sleep(0.1)
            proc.kill()
            proc.wait(5)
        raise RuntimeError("could not start a cluster node")

    try:
        for _ in range(masters):
            start_node()
        subprocess.run(
            [
                shutil.which("redis-cli") or "redis-cli",
                "--cluster", "create",
                *[f"127.0.0.1:{p}" for p in ports],
                "--cluster-replicas", "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        wait_for(
            lambda: all(redis.Redis(port=p).cluster("info")["cluster_state"] == "ok" for p in ports),
            30,
            "the cluster to be ok",
        )
        yield ports
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            with contextlib.suppress(Exception):
                p.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def measure_workers(run: Run) -> None:
    quick = run.args.quick
    n = 600 if quick else 2000
    rounds = 1 if quick else 2
    base = engine_systems(run)["ours"]
    out: dict[str, Any] = {"n": n, "in_flight": 50, "slots_per_worker": 10, "rows": {}}

    def one(key: str, url: str, workers: int, env: dict[str, str]) -> dict[str, Any] | None:
        argv = engine_argv(
            base,
            "throughput",
            url,
            ["--n", str(n), "--workers", str(workers), "--in-flight", "50", "--idle-s", "0"],
        )
        return run.runner(key, argv, timeout=300, env=env)

    configs: list[tuple[str, int, int]] = [("single", 1, 1), ("single", 2, 1), ("single", 4, 1)]
    configs += [("single", 4, 3)]
    for rnd in range(rounds):
        for where, workers, shards in configs:
            key = f"{where}-{workers}w-{shards}s"
            res = one(key, run.url, workers, {"BENCH_SHARDS": str(shards)})
            if res:
                out["rows"].setdefault(
                    key, {"where": where, "workers": workers, "shards": shards, "runs": []}
                )
                out["rows"][key]["runs"].append({**res["median"], "loadavg": os.getloadavg()})
                log(f"workers {key} round {rnd + 1}: {res['median']['tasks_per_s']} tasks/s")
    ok, why = cluster_supported()
    out["cluster"] = {"supported": ok, "why": why}
    if ok:
        try:
            with redis_cluster(3) as ports:
                url = "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)
                out["cluster"]["url"] = url
                for rnd in range(rounds):
                    for workers in (1, 4):
                        key = f"cluster-{workers}w-3s"
                        nodes = [redis.Redis(port=p) for p in ports]
                        for node in nodes:
                            node.flushall()
                        before = [_commandstats(c) for c in nodes]
                        res = one(key, url, workers, {"BENCH_SHARDS": "3"})
                        after = [_commandstats(c) for c in nodes]
                        if res:
                            calls = sum(
                                a[k][0] - b.get(k, (0, 0))[0]
                                for a, b in zip(after, before, strict=True)
                                for k in a
                                if k
                                not in ("info", "xlen", "config|resetstat", "cluster|slots", "cluster|shards")
                            )
                            row = out["rows"].setdefault(
                                key, {"where": "cluster", "workers": workers, "shards": 3, "runs": []}
                            )
                            row["runs"].append(
                                {
                                    **res["median"],
                                    "cluster_cmds_all_nodes": calls,
                                    "loadavg": os.getloadavg(),
                                }
                            )
                            log(f"workers {key} round {rnd + 1}: {res['median']['tasks_per_s']} tasks/s")
        except Exception as e:
            run.error("workers:cluster", f"{type(e).__name__}: {e}")
    for row in out["rows"].values():
        runs = row["runs"]
        row["median"] = sorted(runs, key=lambda r: r["tasks_per_s"])[len(runs) // 2]
    run.results["workers"] = out
