"""Benchmarks against the peers, side by side in one run (issue 6).

    .venv/bin/python bench/run_all.py            # full run, < 15 min
    .venv/bin/python bench/run_all.py --quick    # smaller N, < 3 min

One throwaway ``redis-server`` on a free port serves every system in turn (FLUSHALL between
runs). Peers whose dependencies cannot share our venv get their own virtual environments,
created once under ``bench/.venvs/`` from PyPI (never committed, no peer code in the repo):
``arq`` (plain arq; pins redis<6), ``docket`` (pydocket; needs redis>=6), ``fastmcp3`` (FastMCP 3 +
Docket; pins its own mcp) and ``tools`` (matplotlib for the plot, py-spy for profiles). Each peer is
driven by a small runner under ``bench/peers/`` executed with that peer's python, printing one JSON line.

Systems: ours; plain arq (default 0.5 s poll, and 10 ms); Docket with its defaults; FastMCP 3 +
Docket (same no-op tool, ``task=True``); the ``mcp`` SDK's in-memory task store, in-process.
Phase ``sep2663`` (``bench/sep2663.py``, also runnable alone): the SEP-2663 wire, FastMCP 4 +
fastmcp-tasks and ours on ``mcp`` 2.x, driven by one ``mcp`` 2.x client (venvs ``mcp2``,
``fastmcp4``, ``ours2``).

Writes ``bench/results/latest.json``, ``latest.md`` and ``latency.png`` (plus the logs of every
process, and py-spy profiles of ours when a target is missed, under ``bench/results/``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
VENVS = BENCH / ".venvs"
RESULTS = BENCH / "results"
sys.path.insert(0, str(PEERS))
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import report  # noqa: E402
import report_lean  # noqa: E402
from common import Proc, RedisWindow, idle_cpu, log, stop_all, summarize, wait_for  # noqa: E402

from tests import venvs  # noqa: E402

MAIN_PY = sys.executable
CLI = str(Path(sys.executable).parent / "mcp-tasks-redis")
NAMESPACE = "bench"

# Exact versions, so that a rerun measures the same peers. fastmcp 3.4.10 is the newest 3.x that
# installs here (3.4.11 needs certifi>=2026.10.19, which the index does not have); the `tasks` extra
# brings pydocket. pydocket 0.27.0 is the version FastMCP 3.4.10 resolves to.
VENV_SPECS: dict[str, list[str]] = {
    # The project no longer depends on arq (it pins redis-py < 6); plain arq gets a venv of its own.
    "arq": [os.environ.get("BENCH_ARQ_SPEC", "arq==0.28.0")],
    "docket": [os.environ.get("BENCH_PYDOCKET_SPEC", "pydocket==0.27.0")],
    "fastmcp3": [os.environ.get("BENCH_FASTMCP_SPEC", "fastmcp[tasks]==3.4.10")],
    "tools": ["matplotlib==3.11.2", "py-spy==0.4.3"],
}


# -- sizes -----------------------------------------------------------------------------------------
def sizes(quick: bool) -> dict[str, Any]:
    if quick:
        return dict(
            pickup_n=30,
            pickup_rounds=1,
            pickup_gap_ms=40,
            tp_n=200,
            tp_rounds=1,
            idle_s=3.0,
            scale_runs=1,
            e2e_idle_n=20,
            e2e_load_n=150,
            light_load_n=300,
            e2e_rounds=1,
            e2e_in_flight=20,
            progress_tasks=1,
            progress_steps=50,
            progress_interval=0.02,
            deploy_idle_s=3.0,
        )
    return dict(
        pickup_n=100,
        pickup_rounds=2,
        pickup_gap_ms=40,
        tp_n=1000,
        tp_rounds=3,
        idle_s=10.0,
        scale_runs=3,
        e2e_idle_n=100,
        e2e_load_n=500,
        light_load_n=1000,
        e2e_rounds=3,
        e2e_in_flight=20,
        progress_tasks=4,
        progress_steps=50,
        progress_interval=0.02,
        deploy_idle_s=10.0,
    )


# -- virtual environments -------------------------------------------------------------------------
def venv_python(name: str) -> Path:
    return venvs.venv_python(VENVS, name)


def ensure_venv(
    name: str, requirements: list[str], stamp_extra: list[str] | None = None
) -> tuple[Path | None, str | None]:
    """Create (once) bench/.venvs/NAME with ``requirements`` from PyPI; (python, None) or (None, error).

    ``stamp_extra`` goes into the stamp only (e.g. a digest of pyproject.toml for a venv that holds
    the project), so the venv is rebuilt when it changes. The builder is shared with the tests'
    real-client venvs (``tests/venvs.py``).
    """
    return venvs.ensure_venv(VENVS, name, requirements, stamp_extra, log=log)


def packages(python: Path | str, names: list[str]) -> dict[str, str]:
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out = {}\n"
        "for n in sys.argv[1:]:\n"
        "    try: out[n] = m.version(n)\n"
        "    except m.PackageNotFoundError: pass\n"
        "print(json.dumps(out))"
    )
    proc = subprocess.run([str(python), "-c", code, *names], capture_output=True, text=True)
    return json.loads(proc.stdout) if proc.returncode == 0 else {}


# -- the run context -------------------------------------------------------------------------------
class Run:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.size = sizes(args.quick)
        self.url = ""
        self.client: redis.Redis = None  # type: ignore[assignment]
        self.results: dict[str, Any] = {
            "pickup": {},
            "throughput": {},
            "scaling": {},
            "e2e": {},
            "progress": {},
            "deploy_idle": {},
            "trace": {},
            "memory": {},
            "workers": {},
            "concurrency": {},
            "errors": {},
            "profiles": {},
        }
        self.pythons: dict[str, Path | None] = {}
        self.log_dir = RESULTS / "logs"
        self.profile_dir = RESULTS / "profiles"

    def flush(self) -> None:
        self.client.flushall()
        self.client.config_resetstat()

    def error(self, where: str, message: str) -> None:
        log(f"!! {where}: {message[:2000]}")
        self.results["errors"][where] = message[-4000:]

    def runner(
        self,
        system: str,
        argv: list[str],
        timeout: float,
        env: dict[str, str] | None = None,
    ) -> dict[str, Any] | None:
        """Run one peer runner; its last stdout line is its JSON result."""
        self.flush()
        full_env = {**os.environ, "BENCH_LOG_DIR": str(self.log_dir), "PYTHONUNBUFFERED": "1", **(env or {})}
        stderr_path = self.log_dir / f"runner-{system}.log"
        with stderr_path.open("a") as err:
            err.write(f"\n$ {' '.join(argv)}\n")
            err.flush()
            try:
                proc = subprocess.run(
                    argv,
                    stdout=subprocess.PIPE,
                    stderr=err,
                    text=True,
                    cwd=str(PEERS),
                    env=full_env,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                self.error(system, f"timed out after {timeout:.0f}s: {' '.join(argv)}")
                return None
        lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = "\n".join(stderr_path.read_text(errors="replace").splitlines()[-25:])
            self.error(system, f"exit {proc.returncode}: {' '.join(argv)}\n{tail}")
            return None
        return json.loads(lines[-1])


# -- engine-level measurements (1, 2, 4, 5) --------------------------------------------------------
def engine_systems(run: Run) -> dict[str, list[str]]:
    systems = {"ours": [MAIN_PY, str(PEERS / "ours.py")]}
    if run.pythons.get("arq"):
        arq_py = str(run.pythons["arq"])
        systems["arq_default"] = [arq_py, str(PEERS / "arq_plain.py"), "--poll", "0.5"]
        systems["arq_10ms"] = [arq_py, str(PEERS / "arq_plain.py"), "--poll", "0.01"]
    if run.pythons.get("docket"):
        systems["docket"] = [str(run.pythons["docket"]), str(PEERS / "docket_peer.py")]
    return systems


def engine_argv(base: list[str], measurement: str, url: str, extra: list[str]) -> list[str]:
    # The script path comes first, then the measurement, then options (the peer's own ones too).
    return [base[0], base[1], measurement, "--redis", url, *base[2:], *extra]


def measure_pickup(run: Run) -> None:
    """Rounds interleave the systems; their samples are pooled. The bare XADD -> XREADGROUP
    hand-off (``raw_streams``) is measured too: the floor of this machine."""
    s = run.size
    collected: dict[str, list[dict[str, Any]]] = {}
    systems = dict(engine_systems(run))
    systems["raw_streams"] = [MAIN_PY, str(PEERS / "raw_streams.py")]
    for _ in range(s["pickup_rounds"]):
        for system, base in systems.items():
            argv = engine_argv(
                base, "pickup", run.url, ["--n", str(s["pickup_n"]), "--gap-ms", str(s["pickup_gap_ms"])]
            )
            res = run.runner(system, argv, timeout=120 + s["pickup_n"] * s["pickup_gap_ms"] / 1000 * 2)
            if res:
                collected.setdefault(system, []).append(res)
    for system, results in collected.items():
        merged = dict(results[0])
        for field in ("latency_ms", "enqueue_call_ms", "returned_to_start_ms"):
            samples = [x for r in results for x in r[field]["samples"]]
            merged[field] = summarize(samples, keep=field == "latency_ms")
        merged["rounds"] = len(results)
        run.results["pickup"][system] = merged
        lat = merged["latency_ms"]
        log(f"pickup {system}: p50 {lat['p50']:.2f} ms p99 {lat['p99']:.2f} ms (n={lat['n']})")


def measure_throughput(run: Run) -> None:
    """Rounds interleave the systems, so load drift on a shared machine hits them alike."""
    s = run.size
    configs: list[tuple[str, str, int]] = []  # (key, system, slots; 0 = the engine's default)
    for system in engine_systems(run):
        configs.append((system, system, 0))
    for system in ("ours", "docket"):
        if system in engine_systems(run):
            configs.append((f"{system}@50", system, 50))
    collected: dict[str, list[dict[str, Any]]] = {key: [] for key, _, _ in configs}
    for rnd in range(s["tp_rounds"]):
        for key, system, slots in configs:
            idle_s = s["idle_s"] if rnd == 0 and slots == 0 else 0
            base = engine_systems(run)[system]
            res = run.runner(
                key,
                engine_argv(
                    base,
                    "throughput",
                    run.url,
                    ["--n", str(s["tp_n"]), "--slots", str(slots), "--idle-s", str(idle_s)],
                ),
                timeout=300,
            )
            if res:
                collected[key].append(res)
                log(
                    f"throughput {key} round {rnd + 1}: {res['median']['tasks_per_s']} tasks/s, "
                    f"{res['median']['redis_cmds_per_task']} cmds/task"
                )
    for key, results in collected.items():
        if not results:
            continue
        runs = [r["median"] for r in results]
        best = sorted(runs, key=lambda r: r["tasks_per_s"])[len(runs) // 2]
        idle = next((r["idle"] for r in results if r.get("idle")), None)
        run.results["throughput"][key] = {
            "system": results[0]["system"],
            "slots": results[0]["slots"],
            "config": results[0]["config"],
            "n": results[0]["n"],
            "median": best,
            "runs": runs,
            "idle": idle,
        }


def measure_scaling(run: Run) -> None:
    s = run.size
    for system, base in engine_systems(run).items():
        for workers in (1, 2):
            runs = []
            for _ in range(s["scale_runs"]):
                res = run.runner(
                    system,
                    engine_argv(
                        base,
                        "scaling",
                        run.url,
                        ["--n", "100", "--workers", str(workers), "--slots", "50", "--seconds", "1"],
                    ),
                    timeout=180,
                )
                if res:
                    runs.append(res)
            if runs:
                best = sorted(runs, key=lambda r: r["makespan_s"])[len(runs) // 2]
                run.results["scaling"].setdefault(system, {})[str(workers)] = {
                    **best,
                    "runs_makespan_s": [r["makespan_s"] for r in runs],
                }
                log(f"scaling {system} x{workers}: makespan {best['makespan_s']} s (ideal {best['ideal_s']})")


# -- cross-check with bench/bench_runtime.py (ours and plain arq only) ---------------------------------
def measure_crosscheck(run: Run) -> None:
    """Re-measure ours and plain arq with bench_runtime.py's own functions, when that module is there.

    The comparison tables come from the peers' runners, because one driver must measure every engine
    (Docket included) the same way; bench_runtime's functions cover ours and arq only. Calling them in
    the same run shows whether both methods agree (its pickup starts the clock when the create call
    has returned; the runners' ``returned -> start`` column is the same quantity).
    """
    try:
        import bench_runtime as br
    except Exception as e:
        run.results["crosscheck"] = {"available": False, "why": f"{type(e).__name__}: {e}"}
        return
    needed = ("Processes", "pickup_ours", "pickup_arq", "throughput")
    if not all(hasattr(br, name) for name in needed):
        run.results["crosscheck"] = {"available": False, "why": f"bench_runtime lacks one of {needed}"}
        return
    s = run.size
    out: dict[str, Any] = {"available": True}
    work = run.log_dir / "bench_runtime"
    work.mkdir(exist_ok=True)

    async def go() -> None:
        procs = br.Processes(work, run.url)
        try:
            out["pickup_ours"] = await br.pickup_ours(procs, s["pickup_n"])
            procs.close()
            out["pickup_arq_default"] = await br.pickup_arq(procs, s["pickup_n"], 0.5)
            procs.close()
            out["pickup_arq_10ms"] = await br.pickup_arq(procs, s["pickup_n"], 0.01)
            procs.close()
            out["throughput_ours"] = await br.throughput(procs, s["tp_n"], 10, in_flight=20)
        finally:
            procs.close()

    run.flush()
    try:
        asyncio.run(go())
    except Exception as e:
        out["error"] = f"{type(e).__name__}: {e}"
        run.error("crosscheck", out["error"])
    run.results["crosscheck"] = out


# -- MCP deployments (3, 6) -------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except Exception:
        return False


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Deployment:
    """One MCP server (plus its workers) started for the end-to-end and progress measurements."""

    def __init__(
        self,
        key: str,
        label: str,
        result_modes: list[str],
        progress_token: bool,
        progress_channel: str,
        light_modes: list[str] | None = None,
    ) -> None:
        self.key = key
        self.label = label
        self.result_modes = result_modes
        self.light_modes = light_modes or []
        self.progress_token = progress_token
        self.progress_channel = progress_channel
        self.procs: list[Proc] = []
        self.url = ""
        self.check: Callable[[], bool] = lambda: False

    def start(self, run: Run) -> None:
        """Spawn the processes and set ``self.check`` (are they ready?); ``wait_ready`` waits for it."""
        raise NotImplementedError

    def wait_ready(self) -> None:
        wait_for(self.check, 90, f"{self.label} to be ready", self.procs)


class OursDeployment(Deployment):
    def start(self, run: Run) -> None:
        port = free_port()
        env = {
            "REDIS_URL": run.url,
            "MCP_TASKS_NAMESPACE": NAMESPACE,
            "MCP_TASKS_LOG_LEVEL": "WARNING",
            "MCP_TASKS_APP": "ours_app:app",
            "PYTHONPATH": str(PEERS),
        }
        self.procs.append(
            Proc(
                "ours-server",
                [CLI, "serve", "--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port)],
                env=env,
                log_dir=run.log_dir,
            )
        )
        for i in range(2):
            self.procs.append(Proc(f"ours-worker-{i}", [CLI, "worker"], env=env, log_dir=run.log_dir))
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.check = lambda: (
            http_ok(f"http://127.0.0.1:{port}/health") and run.client.zcard(f"{NAMESPACE}:workers") >= 2
        )


class FastMCPDeployment(Deployment):
    def start(self, run: Run) -> None:
        python = run.pythons["fastmcp3"]
        assert python is not None
        port = free_port()
        env = {"FASTMCP_DOCKET_URL": run.url, "BENCH_PORT": str(port)}
        self.procs.append(
            Proc(
                "fastmcp3-server",
                [str(python), "fastmcp3_server.py"],
                env=env,
                cwd=PEERS,
                log_dir=run.log_dir,
            )
        )
        # The server runs Docket's embedded worker; one more via FastMCP's own CLI makes two.
        self.procs.append(
            Proc(
                "fastmcp3-worker",
                [str(python.parent / "fastmcp"), "tasks", "worker", "fastmcp3_server.py"],
                env=env,
                cwd=PEERS,
                log_dir=run.log_dir,
            )
        )
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.check = lambda: port_open(port) and run.client.zcard("fastmcp:workers") >= 2


class SDKDeployment(Deployment):
    def start(self, run: Run) -> None:
        port = free_port()
        self.procs.append(
            Proc("sdk-server", [MAIN_PY, "sdk_server.py", str(port)], cwd=PEERS, log_dir=run.log_dir)
        )
        self.url = f"http://127.0.0.1:{port}/mcp"
        self.check = lambda: http_ok(f"http://127.0.0.1:{port}/health")


def deployments(run: Run) -> list[Deployment]:
    out: list[Deployment] = [
        OursDeployment(
            "ours",
            "ours (1 server + 2 workers)",
            ["block", "after-push"],
            True,
            "notifications/progress",
            ["block", "after-push"],
        ),
    ]
    if run.pythons.get("fastmcp3"):
        out.append(
            FastMCPDeployment(
                "fastmcp3_docket",
                "FastMCP 3 + Docket (embedded + 1 CLI worker)",
                ["after-push"],
                False,
                "notifications/tasks/status statusMessage",
                ["after-push"],
            )
        )
    out.append(
        SDKDeployment(
            "sdk_inmemory",
            "mcp SDK in-memory store, in-process",
            ["block"],
            False,
            "notifications/tasks/status statusMessage",
        )
    )
    return out


CLIENTS = {
    # The mcp 1.30 SDK ClientSession (the same client for every server).
    "sdk": "mcp_client.py",
    # Raw JSON-RPC over one HTTP/1.1 keep-alive connection per in-flight slot, no SDK: the
    # server's ceiling where the SDK client's own CPU caps tasks/s on 2 shared cores.
    "light": "light_client.py",
}


def client(
    run: Run, dep: Deployment, mode: str, extra: list[str], timeout: float = 300, kind: str = "sdk"
) -> dict[str, Any] | None:
    argv = [MAIN_PY, str(PEERS / CLIENTS[kind]), dep.url, mode, *extra]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=str(PEERS), timeout=timeout)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    with (run.log_dir / f"client-{dep.key}.log").open("a") as f:
        f.write(f"\n$ {' '.join(argv)}\n{proc.stderr[-5000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        run.error(
            f"e2e:{dep.key}:{kind}:{mode}", f"exit {proc.returncode}: {' '.join(argv)}\n{proc.stderr[-3000:]}"
        )
        return None
    out: dict[str, Any] = json.loads(lines[-1])
    # The client process's own CPU (warm-up included), not server-side.
    out["client_cpu_s"] = round((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), 3)
    return out


@contextlib.contextmanager
def deployed(run: Run, dep: Deployment) -> Iterator[Deployment]:
    run.flush()
    try:
        dep.start(run)
        dep.wait_ready()
        time.sleep(1.0)
        yield dep
    finally:
        stop_all(dep.procs)


def load_run(
    run: Run, dep: Deployment, mode: str, background_per_s: float, kind: str = "sdk"
) -> dict[str, Any] | None:
    """One load run, with Redis commands and CPU per task of this deployment's processes."""
    s = run.size
    pids = [p.pid for p in dep.procs]
    names = [p.name for p in dep.procs]
    n = s["e2e_load_n"] if kind == "sdk" else s["light_load_n"]
    args = ["--n", str(n), "--in-flight", str(s["e2e_in_flight"]), "--result-mode", mode]
    with RedisWindow(run.client, pids) as window:
        res = client(run, dep, "load", args, kind=kind)
    if res is None:
        return None
    tasks = res["n"] + 5  # five warm-up tasks run inside the same window
    cmds = window.commands()
    # The other deployments are up (idle) meanwhile: take their measured idle traffic off.
    own = max(0.0, sum(cmds.values()) - background_per_s * window.wall)
    res["redis_cmds_per_task"] = round(own / tasks, 2)
    res["redis_cmds_by_name_per_task"] = {k: round(v / tasks, 2) for k, v in list(cmds.items())[:12]}
    res["cpu_ms_per_task"] = {
        n: round(1000 * window.cpu(p) / tasks, 3) for n, p in zip(names, pids, strict=True)
    }
    res["redis_cpu_ms_per_task"] = round(1000 * window.redis_cpu / tasks, 3)
    res["server_side_cpu_ms_per_task"] = round(
        sum(res["cpu_ms_per_task"].values()) + res["redis_cpu_ms_per_task"], 3
    )
    res["client_cpu_ms_per_task"] = round(1000 * res.get("client_cpu_s", 0.0) / tasks, 3)
    res["loadavg"] = os.getloadavg()
    log(
        f"e2e {dep.key} [{kind} {mode}] load: {res['tasks_per_s']} tasks/s, "
        f"p50 {res['e2e_ms']['p50']:.1f} ms, {res['redis_cmds_per_task']} cmds/task, "
        f"server-side {res['server_side_cpu_ms_per_task']} ms/task, load average {res['loadavg'][0]:.2f}"
    )
    return res


def measure_e2e(run: Run) -> None:
    """All deployments up at once; load rounds interleave them (rotating the order), so a noisy
    neighbour on the shared machine hits every system alike."""
    s = run.size
    run.flush()
    deps: list[Deployment] = []
    try:
        for dep in deployments(run):  # start all at once, then wait for each
            try:
                dep.start(run)
                deps.append(dep)
            except Exception as e:
                stop_all(dep.procs)
                run.error(f"e2e:{dep.key}", f"{type(e).__name__}: {e}")
        for dep in list(deps):
            try:
                dep.wait_ready()
            except Exception as e:  # a peer that fails to start must not sink the whole run
                stop_all(dep.procs)
                deps.remove(dep)
                run.error(f"e2e:{dep.key}", f"{type(e).__name__}: {e}")
        time.sleep(1.0)
        all_pids = [p.pid for d in deps for p in d.procs]
        idle = idle_cpu(all_pids, s["deploy_idle_s"], run.client)
        background = float(idle.get("redis_cmds_per_s") or 0.0)
        i = 0
        for dep in deps:
            n = len(dep.procs)
            run.results["deploy_idle"][dep.key] = {
                "processes": [p.name for p in dep.procs],
                "cpu_s": idle["cpu_s"][i : i + n],
                "cpu_pct": idle["cpu_pct"][i : i + n],
            }
            i += n
        run.results["deploy_idle"]["_all"] = {
            "redis_cmds_per_s": background,
            "redis_cmds": idle.get("redis_cmds"),
        }
        out: dict[str, dict[str, Any]] = {d.key: {"label": d.label} for d in deps}
        for dep in deps:
            for mode in dep.result_modes:
                out[dep.key][mode] = {
                    "idle": client(run, dep, "idle", ["--n", str(s["e2e_idle_n"]), "--result-mode", mode]),
                    "loads": [],
                }
        for rnd in range(s["e2e_rounds"]):
            order = deps[rnd % len(deps) :] + deps[: rnd % len(deps)]
            for dep in order:
                for mode in dep.result_modes:
                    if mode != dep.result_modes[0] and rnd > 0:
                        continue  # the second client path of ours: one round is enough
                    res = load_run(run, dep, mode, background)
                    if res is not None:
                        out[dep.key][mode]["loads"].append(res)
        # The light load generator: the same requests without the SDK client's CPU.
        light: dict[str, dict[str, Any]] = {}
        light_deps = [d for d in deps if d.light_modes]
        for dep in light_deps:
            for mode in dep.light_modes:
                light.setdefault(dep.key, {})[mode] = {
                    "idle": client(
                        run, dep, "idle", ["--n", str(s["e2e_idle_n"]), "--result-mode", mode], kind="light"
                    ),
                    "loads": [],
                }
        for rnd in range(s["e2e_rounds"]):
            order = light_deps[rnd % max(1, len(light_deps)) :] + light_deps[: rnd % max(1, len(light_deps))]
            for dep in order:
                for mode in dep.light_modes:
                    if mode != dep.light_modes[0] and rnd > 0:
                        continue
                    res = load_run(run, dep, mode, background, kind="light")
                    if res is not None:
                        light[dep.key][mode]["loads"].append(res)
        for key, modes in light.items():
            for mode, entry in modes.items():
                loads = entry.pop("loads")
                entry["load"] = (
                    sorted(loads, key=lambda r: r["tasks_per_s"])[len(loads) // 2] if loads else None
                )
                entry["load_runs_tasks_per_s"] = [r["tasks_per_s"] for r in loads]
                out[key].setdefault("light", {})[mode] = entry
        for dep in deps:
            for mode in dep.result_modes:
                loads = out[dep.key][mode].pop("loads")
                out[dep.key][mode]["load"] = (
                    sorted(loads, key=lambda r: r["tasks_per_s"])[len(loads) // 2] if loads else None
                )
                out[dep.key][mode]["load_runs_tasks_per_s"] = [r["tasks_per_s"] for r in loads]
        for dep in deps:
            prog_args = [
                "--tasks",
                str(s["progress_tasks"]),
                "--steps",
                str(s["progress_steps"]),
                "--interval",
                str(s["progress_interval"]),
                "--result-mode",
                dep.result_modes[-1],
            ]
            if dep.progress_token:
                prog_args.append("--progress-token")
            prog = client(run, dep, "progress", prog_args)
            if prog:
                run.results["progress"][dep.key] = {
                    "label": dep.label,
                    "channel": dep.progress_channel,
                    **prog,
                }
                log(
                    f"progress {dep.key}: p50 {prog['progress_ms'].get('p50')} ms "
                    f"over {prog['progress_ms']['n']}"
                )
        run.results["e2e"] = out
    finally:
        for dep in deps:
            stop_all(dep.procs)


def measure_trace(run: Run) -> None:
    import lean

    lean.measure_trace(run)


def measure_memory(run: Run) -> None:
    import lean

    lean.measure_memory(run)


def measure_concurrency(run: Run) -> None:
    import lean

    lean.measure_concurrency(run)


def measure_workers(run: Run) -> None:
    import lean

    lean.measure_workers(run)


def measure_sep2663(run: Run) -> None:
    """The SEP-2663 wire (FastMCP 4 + fastmcp-tasks, ours on mcp 2.x): see bench/sep2663.py."""
    import sep2663

    sep2663.measure(run)


# -- profiles of ours where a target is missed ------------------------------------------------------
def profile_summary(paths: list[Path], top: int = 25) -> dict[str, Any]:
    """Inclusive and self share of samples per function, from py-spy raw (collapsed) stacks."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            stack, _, count_s = line.rpartition(" ")
            if not stack or not count_s.isdigit():
                continue
            count = int(count_s)
            total += count
            frames = [_frame(f) for f in stack.split(";")]
            for frame in set(frames):
                inclusive[frame] = inclusive.get(frame, 0) + count
            own[frames[-1]] = own.get(frames[-1], 0) + count

    def ranked(table: dict[str, int]) -> list[list[Any]]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])[:top]
        return [[name, round(100 * n / total, 1)] for name, n in rows]

    return {"samples": total, "inclusive_pct": ranked(inclusive), "self_pct": ranked(own)}


def _frame(raw: str) -> str:
    # "func (path/to/module.py:123)" -> "func (module.py)", keeping the package for our code
    name, _, where = raw.partition(" (")
    where = where.rstrip(")")
    path = where.rsplit(":", 1)[0]
    parts = Path(path).parts
    if "mcp_tasks_redis" in parts:
        short = "/".join(parts[parts.index("mcp_tasks_redis") :])
    elif "site-packages" in parts:
        short = "/".join(parts[parts.index("site-packages") + 1 :][:2])
    else:
        short = Path(path).name
    return f"{name} ({short})"


def pyspy() -> Path | None:
    path = VENVS / "tools" / "bin" / "py-spy"
    return path if path.exists() else None


def profile_ours(run: Run, missed: set[str]) -> None:
    spy = pyspy()
    if spy is None:
        run.error("profile", "py-spy is not available (tools venv missing)")
        return
    run.profile_dir.mkdir(parents=True, exist_ok=True)
    for old in run.profile_dir.glob("*.txt"):
        old.unlink()
    if missed & {"pickup", "commands"}:
        trace = run.runner(
            "ours-trace",
            [MAIN_PY, str(PEERS / "ours_trace.py"), "--redis", run.url, "--n", "30"],
            timeout=120,
        )
        if trace:
            run.results["profiles"]["lifecycle_trace"] = {
                "what": "MONITOR trace of 30 sequential probe tasks through one worker (medians per task)",
                **trace,
            }
    if missed & {"pickup", "throughput", "commands"}:
        env = {"BENCH_PYSPY": str(spy), "BENCH_PROFILE_DIR": str(run.profile_dir)}
        run.runner(
            "ours-profile",
            engine_argv(engine_systems(run)["ours"], "throughput", run.url, ["--n", "1000", "--idle-s", "0"]),
            timeout=300,
            env=env,
        )
        paths = sorted(run.profile_dir.glob("ours-*.txt"))
        run.results["profiles"]["worker_throughput"] = {
            "what": "our worker during 1000 no-op tasks (py-spy, CPU)",
            "files": [str(p.relative_to(BENCH)) for p in paths],
            **profile_summary(paths),
        }
    if missed & {"e2e"}:
        dep = OursDeployment("ours", "ours", ["block"], True, "")
        s = run.size

        def spy_load(pids: list[int]) -> None:
            spies = [
                subprocess.Popen(
                    [
                        str(spy),
                        "record",
                        "-p",
                        str(pid),
                        "-f",
                        "raw",
                        "-r",
                        "200",
                        "--nonblocking",
                        "-o",
                        str(run.profile_dir / f"e2e-{name}.txt"),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for pid, name in zip(pids, ["server", "worker0", "worker1"], strict=False)
            ]
            time.sleep(0.5)
            client(run, dep, "load", ["--n", str(s["e2e_load_n"]), "--in-flight", str(s["e2e_in_flight"])])
            for sp in spies:
                sp.send_signal(2)
            for sp in spies:
                sp.wait(20)

        with deployed(run, dep):
            spy_load([p.pid for p in dep.procs])
        for role in ("server", "worker0"):
            paths = [run.profile_dir / f"e2e-{role}.txt"]
            run.results["profiles"][f"e2e_{role}"] = {
                "what": f"our {role} during an end-to-end load run (py-spy, CPU)",
                "files": [str(p.relative_to(BENCH)) for p in paths],
                **profile_summary(paths),
            }


def update_readme(markdown: str) -> None:
    """A full run replaces the table between the markers at the end of bench/README.md."""
    readme = BENCH / "README.md"
    begin, end = "<!-- latest:begin -->", "<!-- latest:end -->"
    if not readme.exists():
        return
    text = readme.read_text()
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(
        f"{head}{begin}\n{markdown}\n![latency distributions](results/latency.png)\n{end}{tail}"
    )


# -- main ----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N: a run of under 3 minutes")
    parser.add_argument(
        "--profile",
        choices=["auto", "always", "never"],
        default=None,
        help="py-spy profiles of ours: auto = when a target is missed (default for a full "
        "run), never (default with --quick)",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma list of phases: pickup,throughput,scaling,crosscheck,e2e,trace,memory,workers,"
        "concurrency,sep2663",
    )
    parser.add_argument(
        "--out",
        default="latest",
        help="results name: bench/results/NAME.json and NAME.md (only 'latest' rewrites the README)",
    )
    parser.add_argument(
        "--skip", default="", help="comma list of phases to leave out of the default list (e.g. sep2663)"
    )
    args = parser.parse_args()
    profile_mode = args.profile or ("never" if args.quick else "auto")
    phases = [p for p in args.only.split(",") if p] or [
        "pickup",
        "throughput",
        "scaling",
        *([] if args.quick else ["crosscheck"]),
        "e2e",
        "trace",
        "memory",
        "workers",
        "concurrency",
        "sep2663",
    ]
    phases = [p for p in phases if p not in args.skip.split(",")]

    started = time.time()
    RESULTS.mkdir(parents=True, exist_ok=True)
    run = Run(args)
    if run.log_dir.exists():
        shutil.rmtree(run.log_dir)
    run.log_dir.mkdir(parents=True)

    for name, reqs in VENV_SPECS.items():
        python, err = ensure_venv(name, reqs)
        run.pythons[name] = python
        if err:
            run.error(f"venv:{name}", err)

    from mcp_tasks_redis.ops.embedded import EmbeddedRedis

    with EmbeddedRedis(prefer="redis-server") as embedded:
        run.url = embedded.url
        run.client = redis.Redis.from_url(run.url)
        info = run.client.info("server")
        meta: dict[str, Any] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "sizes": run.size,
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "loadavg_start": os.getloadavg(),
            },
            "redis": {"version": info["redis_version"], "url": run.url, "kind": embedded.kind},
            "versions": {
                "ours": packages(MAIN_PY, ["mcp-tasks-redis", "mcp", "arq", "redis", "hiredis"]),
                **{
                    name: packages(py, ["arq", "pydocket", "fastmcp", "mcp", "redis", "matplotlib", "py-spy"])
                    for name, py in run.pythons.items()
                    if py
                },
            },
        }
        run.results["meta"] = meta
        log(f"redis {info['redis_version']} at {run.url}; load average {os.getloadavg()}")
        for phase, fn in (
            ("pickup", measure_pickup),
            ("throughput", measure_throughput),
            ("scaling", measure_scaling),
            ("crosscheck", measure_crosscheck),
            ("e2e", measure_e2e),
            ("trace", measure_trace),
            ("memory", measure_memory),
            ("workers", measure_workers),
            ("concurrency", measure_concurrency),
            ("sep2663", measure_sep2663),
        ):
            if phase in phases:
                t0 = time.time()
                fn(run)
                meta.setdefault("phase_s", {})[phase] = round(time.time() - t0, 1)
                meta["machine"].setdefault("loadavg_after", {})[phase] = os.getloadavg()

        run.results["targets"] = report.judge(run.results)
        run.results["targets_issue11"] = report_lean.judge_issue11(run.results)
        missed = {t["key"] for t in run.results["targets"] if t["met"] is False}
        # Issue 11: commands and CPU through MCP, pickup -> profile the engine and the MCP path.
        lean_missed = {t["key"] for t in run.results["targets_issue11"] if t["met"] is False}
        if lean_missed & {"commands", "cpu", "e2e_tps", "e2e_tps_light", "e2e_idle"}:
            missed.add("e2e")
        if lean_missed & {"pickup_p50", "pickup_p99"}:
            missed.add("pickup")
        if profile_mode == "always":
            missed |= {"throughput", "e2e"}
        if missed and profile_mode != "never":
            t0 = time.time()
            try:
                profile_ours(run, missed)
            except Exception as e:
                run.error("profile", f"{type(e).__name__}: {e}")
            meta.setdefault("phase_s", {})["profile"] = round(time.time() - t0, 1)
        meta["wall_s"] = round(time.time() - started, 1)

    (RESULTS / f"{args.out}.json").write_text(json.dumps(run.results, indent=1))
    (RESULTS / f"{args.out}.md").write_text(report.render_markdown(run.results))
    tools = run.pythons.get("tools")
    if tools:
        proc = subprocess.run(
            [
                str(tools),
                str(BENCH / "report.py"),
                "--plot",
                str(RESULTS / f"{args.out}.json"),
                str(RESULTS / ("latency.png" if args.out == "latest" else f"{args.out}-latency.png")),
            ],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            log(f"plot failed: {proc.stderr[-2000:]}")
    markdown = report.render_markdown(run.results)
    if not args.quick and not args.only and args.out == "latest":
        update_readme(markdown)
    print(markdown)
    log(f"done in {time.time() - started:.0f} s; results in {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
