"""End to end on the SEP-2663 wire (issue 10): MCP servers that serve ``io.modelcontextprotocol/tasks``.

    .venv/bin/python bench/sep2663.py              # full: 100 idle tasks, 3 rounds of 500 at 20 in flight
    .venv/bin/python bench/sep2663.py --quick      # smaller N, one round (about a minute per system)
    .venv/bin/python bench/sep2663.py --systems fastmcp4
    .venv/bin/python bench/run_all.py --only sep2663   # the same phase inside the main harness

A sibling of ``run_all.py`` rather than more code inside it: every system here speaks the
2026-07-28 wire, so it needs its own client (``mcp`` 2.x, which cannot share a venv with the
project's ``mcp`` 1.x), its own venvs (FastMCP 4 pins ``mcp`` 2.x too) and its own result shape
(no ``tasks/result``: the client polls ``tasks/get``). ``run_all.py`` runs it as the ``sep2663``
phase and its report renders the section; run alone, it writes ``bench/results/sep2663.json``
and ``sep2663.md`` and leaves ``latest.*`` alone.

Systems are data (``SYSTEMS``): a venv, the argv of the server and of each worker, environment,
the MCP URL and a Redis database of their own. Adding one is one entry. Every system is driven
by the same process, ``peers/sep2663_client.py`` in the ``mcp2`` venv (see its docstring for the
client path). All systems are up at once, started one after the other with an idle window after
each (so each one's idle Redis traffic and CPU are known and taken off the others' load
windows); load rounds interleave them, rotating the order.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
RESULTS = BENCH / "results"
for _p in (str(PEERS), str(BENCH)):
    if _p not in sys.path:
        sys.path.insert(0, _p)

import redis  # noqa: E402
import report  # noqa: E402
import run_all as harness  # noqa: E402
from common import Proc, RedisWindow, cpu_seconds, log, stop_all, wait_for  # noqa: E402

# Exact versions. fastmcp 4.1.6 is the newest fastmcp, but the newest fastmcp-tasks (4.1.4) pins
# fastmcp-slim==4.1.4, so 4.1.4 is the newest pair that resolves. Both pull mcp 2.3.0 and
# pydocket 0.27.0. The driver's venv holds mcp alone, the same version.
MCP2_SPEC = os.environ.get("BENCH_MCP2_SPEC", "mcp==2.3.0")
VENV_SPECS: dict[str, list[str]] = {
    "mcp2": [MCP2_SPEC],
    "fastmcp4": [
        os.environ.get("BENCH_FASTMCP4_SPEC", "fastmcp==4.1.4"),
        os.environ.get("BENCH_FASTMCP_TASKS_SPEC", "fastmcp-tasks==4.1.4"),
    ],
    # The project itself (editable) beside mcp 2.x. Until the package allows mcp 2 (issue 10), pip
    # cannot resolve this and the system is skipped with pip's message.
    "ours2": [MCP2_SPEC, "-e", str(ROOT)],
}
# venvs holding the project: rebuilt when its dependency list changes, not only when the spec does.
TRACKS_PYPROJECT = {"ours2"}
VERSION_PACKAGES = {
    "mcp2": ["mcp", "mcp-types", "httpx2", "pydantic"],
    "fastmcp4": ["fastmcp", "fastmcp-slim", "fastmcp-tasks", "pydocket", "mcp", "redis", "uvicorn"],
    "ours2": ["mcp-tasks-redis", "mcp", "redis", "hiredis"],
}
OURS2_NAMESPACE = "bench2663"


# -- systems --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class System:
    """One deployment: a server and its workers, started from argv templates.

    Placeholders in ``server``, ``workers`` and ``env`` values: ``{python}`` and ``{bin}`` (the
    venv's interpreter and its bin directory), ``{port}`` (a free loopback port), ``{redis}`` (the
    harness's Redis URL with this system's ``db``), ``{root}`` and ``{peers}``.
    """

    key: str
    label: str
    venv: str
    server: list[str]
    workers: list[list[str]]
    env: dict[str, str]
    db: int
    cwd: str = "{peers}"
    url: str = "http://127.0.0.1:{port}/mcp"
    # Redis says the workers are up: a sorted set and the count it must reach (soft: after the
    # timeout the run goes on with a warning, since a key layout may change under us).
    workers_zset: tuple[str, int] | None = None
    # The knobs this deployment was given, for the report (every other setting is a default).
    knobs: list[str] = field(default_factory=list)


FASTMCP4 = System(
    key="fastmcp4",
    label="FastMCP 4 + fastmcp-tasks (Docket), embedded + 1 CLI worker",
    venv="fastmcp4",
    server=["{python}", "fastmcp4_server.py"],
    workers=[["{python}", "-m", "fastmcp_tasks.worker_cli", "worker", "fastmcp4_server.py"]],
    env={"FASTMCP_DOCKET_URL": "{redis}", "BENCH_PORT": "{port}", "BENCH_FM4_POLL_MS": "50"},
    db=1,
    workers_zset=("fastmcp:workers", 2),
    knobs=[
        "TaskConfig(mode='optional', poll_interval=50 ms): pollIntervalMs 50 (FastMCP's default 5 s)",
        "Docket defaults through FastMCP: 10 slots per worker, minimum_check_interval 50 ms, "
        "execution_ttl 15 min",
        "two workers: the server's embedded one + `python -m fastmcp_tasks.worker_cli worker`",
    ],
)

# Ours on mcp 2.x (issue 10). It cannot run until the package installs beside mcp 2.x and the
# 2.x adapter serves the extension; until then its venv fails to build and it is skipped.
OURS2 = System(
    key="ours2",
    label="mcp-tasks-redis on mcp 2.x, 1 server + 2 workers",
    venv="ours2",
    server=[
        "{bin}/mcp-tasks-redis",
        "serve",
        "--app",
        "workers.demo:app",
        "--transport",
        "streamable-http",
        "--host",
        "127.0.0.1",
        "--port",
        "{port}",
    ],
    workers=[["{bin}/mcp-tasks-redis", "worker", "--app", "workers.demo:app"]] * 2,
    env={
        "REDIS_URL": "{redis}",
        "MCP_TASKS_NAMESPACE": OURS2_NAMESPACE,
        "MCP_TASKS_LOG_LEVEL": "WARNING",
    },
    cwd="{root}",
    db=2,
    workers_zset=(f"{OURS2_NAMESPACE}:workers", 2),
    knobs=["defaults (REDIS_URL, MCP_TASKS_NAMESPACE only)"],
)

# Opt-in (``--systems fastmcp4,fastmcp4_b``): the same FastMCP 4 deployment a second time, under its
# own Docket name and database. An A/A check: the ratios between the two show the harness's noise.
FASTMCP4_B = dataclasses.replace(
    FASTMCP4,
    key="fastmcp4_b",
    label="FastMCP 4 + fastmcp-tasks again (A/A check: Docket name fmb)",
    env={**FASTMCP4.env, "FASTMCP_DOCKET_NAME": "fmb"},
    db=3,
    workers_zset=("fmb:workers", 2),
)

SYSTEMS: list[System] = [FASTMCP4, OURS2]  # the default run
OPT_IN: list[System] = [FASTMCP4_B]
REFERENCE = "fastmcp4"  # ratios in the report are against this system


def sizes(quick: bool) -> dict[str, Any]:
    return dict(
        idle_n=30 if quick else 100,
        load_n=150 if quick else 500,
        in_flight=20,
        rounds=1 if quick else 3,
        idle_window_s=3.0 if quick else 10.0,
        # Fixed tasks/get intervals for every system (the driver's --poll-ms). Idle: short, so the
        # latency is not the poll period; load: FastMCP 4's advertised pollIntervalMs as tuned here
        # and its worker's check interval.
        poll_idle_ms=os.environ.get("BENCH_2663_POLL_IDLE_MS", "5"),
        poll_load_ms=os.environ.get("BENCH_2663_POLL_LOAD_MS", "50"),
    )


# -- processes --------------------------------------------------------------------------------------
def tree(pids: list[int]) -> list[int]:
    """``pids`` and every live descendant (a server may fork helpers; their CPU counts too)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry.name))
    out: list[int] = []
    todo = list(pids)
    while todo:
        pid = todo.pop()
        if pid not in out:
            out.append(pid)
            todo.extend(children.get(pid, []))
    return out


def db_url(url: str, db: int) -> str:
    return f"{url.rsplit('/', 1)[0]}/{db}"


class Deployment:
    def __init__(self, system: System, python: Path, redis_url: str, log_dir: Path) -> None:
        self.system = system
        self.python = python
        self.redis_url = db_url(redis_url, system.db)
        self.log_dir = log_dir
        self.port = harness.free_port()
        self.url = self._fill(system.url)
        self.procs: list[Proc] = []

    def _fill(self, template: str) -> str:
        return template.format(
            python=self.python,
            bin=self.python.parent,
            port=self.port,
            redis=self.redis_url,
            root=ROOT,
            peers=PEERS,
        )

    def start(self) -> None:
        s = self.system
        env = {k: self._fill(v) for k, v in s.env.items()}
        cwd = Path(self._fill(s.cwd))
        self.procs.append(
            Proc(
                f"{s.key}-server",
                [self._fill(a) for a in s.server],
                env=env,
                cwd=cwd,
                log_dir=self.log_dir,
            )
        )
        for i, argv in enumerate(s.workers):
            self.procs.append(
                Proc(
                    f"{s.key}-worker-{i}",
                    [self._fill(a) for a in argv],
                    env=env,
                    cwd=cwd,
                    log_dir=self.log_dir,
                )
            )

    def wait_ready(self, driver: Path) -> None:
        """Port open, then one task through the real client path, then (softly) the workers."""
        wait_for(
            lambda: harness.port_open(self.port), 90, f"{self.system.label}: port {self.port}", self.procs
        )

        def probe() -> bool:
            proc = subprocess.run(
                [str(driver), str(PEERS / "sep2663_client.py"), self.url, "probe"],
                capture_output=True,
                text=True,
                cwd=str(PEERS),
                timeout=60,
            )
            if proc.returncode != 0:
                self.last_probe_error = (proc.stderr or proc.stdout)[-1500:]
            return proc.returncode == 0

        self.last_probe_error = ""
        try:
            wait_for(probe, 90, f"{self.system.label}: a probe task to complete", self.procs, interval=1.0)
        except TimeoutError as e:
            raise TimeoutError(f"{e}\nlast probe error:\n{self.last_probe_error}") from None
        if self.system.workers_zset:
            key, count = self.system.workers_zset
            db = redis.Redis.from_url(self.redis_url)
            try:
                wait_for(lambda: db.zcard(key) >= count, 30, f"{count} workers in {key}", self.procs)
            except TimeoutError:
                log(f"!! {self.system.key}: {key} did not reach {count} members; going on")
            finally:
                db.close()

    def pids(self) -> list[int]:
        return tree([p.pid for p in self.procs])

    def names(self, pids: list[int]) -> dict[int, str]:
        out = {p.pid: p.name for p in self.procs}
        return {pid: out.get(pid, f"child-{pid}") for pid in pids}


# -- one client run -------------------------------------------------------------------------------
Hook = Callable[[int], None]


def drive(
    ctx: harness.Run,
    driver: Path,
    dep: Deployment,
    mode: str,
    args: list[str],
    *,
    on_start: Hook | None = None,
    on_end: Hook | None = None,
    timeout: float = 600,
) -> dict[str, Any] | None:
    """Run the driver once and return its JSON line.

    With hooks, the driver runs with ``--sync``: ``on_start(pid)`` is called once its warm-up is
    done and just before it starts the measured tasks, ``on_end(pid)`` as soon as its result line
    arrives, so a window opened and closed by them holds the measured tasks and nothing else.
    """
    sync = on_start is not None or on_end is not None
    argv = [
        str(driver),
        str(PEERS / "sep2663_client.py"),
        dep.url,
        mode,
        *args,
        *(["--sync"] if sync else []),
    ]
    log_path = ctx.log_dir / f"client-{dep.system.key}.log"
    where = f"sep2663:{dep.system.key}:{mode}"
    deadline = time.monotonic() + timeout
    with log_path.open("a") as err:
        err.write(f"\n$ {' '.join(argv)}\n")
        err.flush()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            bufsize=1,
            cwd=str(PEERS),
        )
        lines: queue.Queue[str | None] = queue.Queue()

        def pump() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.put(line.rstrip("\n"))
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()

        def next_line() -> str | None:
            try:
                return lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError from None

        result: str | None = None
        try:
            while (line := next_line()) is not None:
                if line == "READY":
                    if on_start:
                        on_start(proc.pid)
                    assert proc.stdin is not None
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                elif line.startswith("{"):
                    if on_end:
                        on_end(proc.pid)
                    result = line
            proc.wait(max(1.0, deadline - time.monotonic()))
        except (TimeoutError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
            ctx.error(where, f"timed out after {timeout:.0f} s: {' '.join(argv)}")
            return None
    if proc.returncode != 0 or result is None:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        ctx.error(where, f"exit {proc.returncode}: {' '.join(argv)}\n{tail}")
        return None
    out: dict[str, Any] = json.loads(result)
    if out.get("n_errors"):
        log(f"!! {dep.system.key} {mode}: {out['n_errors']} failed tasks, e.g. {out['errors'][:2]}")
    return out


@dataclass
class Background:
    """Idle Redis traffic and CPU per second of each system, from the windows after each start."""

    cmds_per_s: dict[str, float] = field(default_factory=dict)
    redis_cpu_per_s: dict[str, float] = field(default_factory=dict)
    cmds: dict[str, dict[str, float]] = field(default_factory=dict)

    def others(self, key: str) -> tuple[float, float]:
        """Commands/s and Redis CPU s/s of every system but ``key`` (idle while ``key`` is measured)."""
        return (
            sum(v for k, v in self.cmds_per_s.items() if k != key),
            sum(v for k, v in self.redis_cpu_per_s.items() if k != key),
        )


def idle_window(ctx: harness.Run, deps: list[Deployment], seconds: float) -> dict[str, Any]:
    """CPU of every process up so far, Redis commands and Redis CPU, over ``seconds`` of idleness."""
    names = {pid: name for d in deps for pid, name in d.names(d.pids()).items()}
    with RedisWindow(ctx.client, list(names)) as w:
        time.sleep(seconds)
    cmds = w.commands()
    return {
        "seconds": round(w.wall, 2),
        "cpu_pct": {name: round(100 * w.cpu(pid) / w.wall, 2) for pid, name in names.items()},
        "redis_cmds_per_s": round(sum(cmds.values()) / w.wall, 1),
        "redis_cmds": {k: round(v / w.wall, 1) for k, v in list(cmds.items())[:10]},
        "redis_cpu_pct": round(100 * w.redis_cpu / w.wall, 2),
        "_raw_cmds": sum(cmds.values()) / w.wall,
        "_raw_redis_cpu": w.redis_cpu / w.wall,
    }


def windowed(
    ctx: harness.Run,
    driver: Path,
    dep: Deployment,
    bg: Background,
    mode: str,
    args: list[str],
) -> dict[str, Any] | None:
    """One driver run; cost per task of this deployment over the measured tasks alone."""
    pids = dep.pids()
    names = dep.names(pids)
    db = redis.Redis.from_url(dep.redis_url)
    window = RedisWindow(ctx.client, pids)
    marks: dict[str, float] = {}

    def start(pid: int) -> None:
        marks["keys0"] = int(db.dbsize())
        marks["client0"] = cpu_seconds(pid)
        window.__enter__()

    def end(pid: int) -> None:
        window.__exit__(None, None, None)
        marks["client1"] = cpu_seconds(pid)
        marks["keys1"] = int(db.dbsize())
        marks["memory"] = window.memory_delta()

    try:
        res = drive(ctx, driver, dep, mode, args, on_start=start, on_end=end)
    finally:
        db.close()
    if res is None or "keys1" not in marks or not res.get("n"):
        return None
    tasks = res["n"]
    w = window
    other_cmds_per_s, other_redis_cpu_per_s = bg.others(dep.system.key)
    cmds = w.commands()
    own_cmds = max(0.0, sum(cmds.values()) - other_cmds_per_s * w.wall)
    redis_cpu = max(0.0, w.redis_cpu - other_redis_cpu_per_s * w.wall)
    cpu_ms = {names[pid]: round(1000 * w.cpu(pid) / tasks, 3) for pid in pids}
    res.update(
        window_s=round(w.wall, 3),
        redis_cmds_per_task=round(own_cmds / tasks, 2),
        redis_cmds_by_name_per_task={k: round(v / tasks, 2) for k, v in list(cmds.items())[:14]},
        cpu_ms_per_task=cpu_ms,
        redis_cpu_ms_per_task=round(1000 * redis_cpu / tasks, 3),
        server_side_cpu_ms_per_task=round(sum(cpu_ms.values()) + 1000 * redis_cpu / tasks, 3),
        client_cpu_ms_per_task=round(1000 * (marks["client1"] - marks["client0"]) / tasks, 3),
        redis_memory_bytes_per_task=round(marks["memory"] / tasks, 1),
        redis_keys_per_task=round((marks["keys1"] - marks["keys0"]) / tasks, 2),
        loadavg=os.getloadavg()[0],
    )
    return res


ID_RUN = re.compile(r"[A-Za-z0-9_-]{20,}")  # a task id inside a key (>= 120 random bits)


def retained_scan(url: str, tasks: int) -> dict[str, Any]:
    """``MEMORY USAGE`` of every key in a system's database, grouped by key pattern (ids replaced).

    Complements the ``used_memory`` delta: it counts only the keys (no connection buffers or
    allocator slack), and shows which keys a retained task keeps. ``per_task`` sums the patterns
    that carry a task id, over every task the driver created for this system.
    """
    db = redis.Redis.from_url(url)
    try:
        names = list(db.scan_iter(count=1000))
        pipe = db.pipeline(transaction=False)
        for name in names:
            pipe.execute_command("MEMORY", "USAGE", name, "SAMPLES", "0")
        sizes = pipe.execute()
    finally:
        db.close()
    patterns: dict[str, list[int]] = {}
    for name, size in zip(names, sizes, strict=True):
        pattern = ID_RUN.sub("<id>", name.decode(errors="replace"))
        entry = patterns.setdefault(pattern, [0, 0])
        entry[0] += 1
        entry[1] += int(size or 0)
    per_task = {k: v for k, v in patterns.items() if "<id>" in k}
    shared = {k: v for k, v in patterns.items() if "<id>" not in k}
    return {
        "tasks": tasks,
        "keys": len(names),
        "bytes": sum(v[1] for v in patterns.values()),
        "per_task_keys": round(sum(v[0] for v in per_task.values()) / tasks, 2) if tasks else None,
        "per_task_bytes": round(sum(v[1] for v in per_task.values()) / tasks, 1) if tasks else None,
        "per_task_patterns": {
            k: {"keys_per_task": round(v[0] / tasks, 2), "bytes_per_task": round(v[1] / tasks, 1)}
            for k, v in sorted(per_task.items(), key=lambda kv: -kv[1][1])
        },
        "shared": {
            k: {"keys": v[0], "bytes": v[1]} for k, v in sorted(shared.items(), key=lambda kv: -kv[1][1])
        },
    }


# -- the phase ------------------------------------------------------------------------------------
def ensure_venvs(ctx: harness.Run, wanted: set[str]) -> tuple[dict[str, Path | None], dict[str, str]]:
    """The venvs ``wanted``, built once; (pythons, the first error line of each that failed)."""
    pythons: dict[str, Path | None] = {}
    failed: dict[str, str] = {}
    for name, reqs in VENV_SPECS.items():
        if name not in wanted:
            continue
        extra: list[str] = []
        if name in TRACKS_PYPROJECT:
            digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
            extra = [f"pyproject:{digest}"]
        python, err = harness.ensure_venv(name, reqs, stamp_extra=extra)
        pythons[name] = python
        if err:
            ctx.error(f"sep2663:venv:{name}", err)
            errors = [line[line.index("ERROR:") :] for line in err.splitlines() if "ERROR:" in line] or [err]
            failed[name] = errors[0][:300]
    return pythons, failed


def measure(ctx: harness.Run, systems: list[str] | None = None) -> dict[str, Any]:
    """Run the SEP-2663 comparison against ``ctx``'s Redis; returns (and stores) the results."""
    s = sizes(ctx.args.quick)
    every = {sy.key: sy for sy in [*SYSTEMS, *OPT_IN]}
    unknown = [k for k in systems or [] if k not in every]
    if unknown:
        raise SystemExit(f"unknown system(s) {unknown}; known: {sorted(every)}")
    chosen = SYSTEMS if systems is None else [every[k] for k in systems]
    pythons, failed = ensure_venvs(ctx, {"mcp2", *(sy.venv for sy in chosen)})
    out: dict[str, Any] = {
        "sizes": s,
        "reference": REFERENCE,
        "versions": {n: harness.packages(p, VERSION_PACKAGES[n]) for n, p in pythons.items() if p},
        "systems": {},
        "skipped": {},
        "idle": {},
        "loadavg_start": os.getloadavg(),
    }
    ctx.results["sep2663"] = out
    driver = pythons.get("mcp2")
    if driver is None:
        ctx.error("sep2663", "no mcp 2.x driver venv; nothing measured")
        return out
    for sy in chosen:
        if pythons.get(sy.venv) is None:
            out["skipped"][sy.key] = f"venv `{sy.venv}` could not be built: {failed.get(sy.venv, '?')}"
    ctx.flush()
    deps: list[Deployment] = []
    bg = Background()
    try:
        for sy in chosen:
            python = pythons.get(sy.venv)
            if python is None:
                continue
            dep = Deployment(sy, python, ctx.url, ctx.log_dir)
            try:
                dep.start()
                dep.wait_ready(driver)
            except Exception as e:  # a system that fails to start must not sink the run
                stop_all(dep.procs)
                out["skipped"][sy.key] = f"did not start: {type(e).__name__}: {str(e)[:300]}"
                ctx.error(f"sep2663:{sy.key}", f"{type(e).__name__}: {e}")
                continue
            deps.append(dep)
            time.sleep(1.0)
            # Idle window with this system newly up: its own idle traffic is the increase.
            idle = idle_window(ctx, deps, s["idle_window_s"])
            before_cmds = sum(bg.cmds_per_s.values())
            before_cpu = sum(bg.redis_cpu_per_s.values())
            bg.cmds_per_s[sy.key] = max(0.0, idle.pop("_raw_cmds") - before_cmds)
            bg.redis_cpu_per_s[sy.key] = max(0.0, idle.pop("_raw_redis_cpu") - before_cpu)
            out["idle"][sy.key] = {
                "processes": {n: idle["cpu_pct"].get(n) for n in dep.names(dep.pids()).values()},
                "redis_cmds_per_s": round(bg.cmds_per_s[sy.key], 1),
                "redis_cpu_pct": round(100 * bg.redis_cpu_per_s[sy.key], 2),
                "window": idle,
            }
            log(
                f"sep2663 {sy.key} up at {dep.url}; idle: {bg.cmds_per_s[sy.key]:.1f} Redis cmds/s, "
                f"CPU % {out['idle'][sy.key]['processes']}"
            )
        results: dict[str, dict[str, Any]] = {
            d.system.key: {"label": d.system.label, "knobs": d.system.knobs, "loads": []} for d in deps
        }
        for dep in deps:
            res = windowed(
                ctx, driver, dep, bg, "idle", ["--n", str(s["idle_n"]), "--poll-ms", s["poll_idle_ms"]]
            )
            results[dep.system.key]["idle"] = res
            if res:
                log(
                    f"sep2663 {dep.system.key} idle: e2e p50 {res['e2e_ms']['p50']:.1f} ms, "
                    f"{res['redis_memory_bytes_per_task']:.0f} B/task retained"
                )
        for rnd in range(s["rounds"]):
            order = deps[rnd % len(deps) :] + deps[: rnd % len(deps)] if deps else []
            for dep in order:
                res = windowed(
                    ctx,
                    driver,
                    dep,
                    bg,
                    "load",
                    [
                        "--n",
                        str(s["load_n"]),
                        "--in-flight",
                        str(s["in_flight"]),
                        "--poll-ms",
                        s["poll_load_ms"],
                    ],
                )
                if res:
                    results[dep.system.key]["loads"].append(res)
                    log(
                        f"sep2663 {dep.system.key} load round {rnd + 1}: {res['tasks_per_s']} tasks/s, "
                        f"{res['server_side_cpu_ms_per_task']:.2f} ms CPU/task, "
                        f"{res['redis_cmds_per_task']} cmds/task (load average {res['loadavg']:.2f})"
                    )
        for dep in deps:  # every task the driver created (probe, warm-ups, measured) is retained
            r = results[dep.system.key]
            created = 1 + sum(x["n"] + 5 for x in [r.get("idle"), *r["loads"]] if x)
            r["retained"] = retained_scan(dep.redis_url, created)
        for key, r in results.items():
            loads = r.pop("loads")
            r["load"] = sorted(loads, key=lambda x: x["tasks_per_s"])[len(loads) // 2] if loads else None
            r["load_runs"] = [
                {
                    k: x[k]
                    for k in ("tasks_per_s", "server_side_cpu_ms_per_task", "redis_cmds_per_task", "loadavg")
                }
                for x in loads
            ]
            out["systems"][key] = r
    finally:
        for dep in deps:
            stop_all(dep.procs)
    out["loadavg_end"] = os.getloadavg()
    return out


# -- standalone ---------------------------------------------------------------------------------------
def update_readme(markdown: str) -> None:
    """A full standalone run replaces the block between the sep2663 markers in bench/README.md."""
    readme = BENCH / "README.md"
    begin, end = "<!-- sep2663:begin -->", "<!-- sep2663:end -->"
    text = readme.read_text() if readme.exists() else ""
    if begin not in text or end not in text:
        return
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{markdown}\n{end}{tail}")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller N, one load round")
    parser.add_argument(
        "--systems",
        default="",
        help=f"comma list of {', '.join(s.key for s in [*SYSTEMS, *OPT_IN])} "
        f"(default: {', '.join(s.key for s in SYSTEMS)})",
    )
    args = parser.parse_args()
    systems = [x for x in args.systems.split(",") if x] or None
    started = time.time()
    RESULTS.mkdir(parents=True, exist_ok=True)
    ctx = harness.Run(args)
    ctx.log_dir = RESULTS / "logs" / "sep2663"
    if ctx.log_dir.exists():
        shutil.rmtree(ctx.log_dir)
    ctx.log_dir.mkdir(parents=True)

    from mcp_tasks_redis.ops.embedded import EmbeddedRedis

    with EmbeddedRedis(prefer="redis-server") as embedded:
        ctx.url = embedded.url
        ctx.client = redis.Redis.from_url(ctx.url)
        info = ctx.client.info("server")
        log(f"redis {info['redis_version']} at {ctx.url}; load average {os.getloadavg()}")
        ctx.results["meta"] = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "machine": {
                "cpus": os.cpu_count(),
                "python": sys.version.split()[0],
                "loadavg_start": os.getloadavg(),
            },
            "redis": {"version": info["redis_version"], "url": ctx.url, "kind": embedded.kind},
        }
        measure(ctx, systems)
        ctx.results["meta"]["wall_s"] = round(time.time() - started, 1)
    ctx.results.pop("pickup", None)
    slim = {k: v for k, v in ctx.results.items() if v or k in ("meta", "sep2663")}
    (RESULTS / "sep2663.json").write_text(json.dumps(slim, indent=1))
    markdown = report.render_sep2663_standalone(slim)
    (RESULTS / "sep2663.md").write_text(markdown + "\n")
    if not args.quick and systems is None:
        update_readme(markdown)
    print(markdown)
    log(f"done in {time.time() - started:.0f} s; results in {RESULTS / 'sep2663.json'} and sep2663.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
