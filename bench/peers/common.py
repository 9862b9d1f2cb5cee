"""Helpers shared by every peer runner and by the harness (stdlib only, plus an optional redis client).

Each runner script is executed with its own peer's virtual environment, so this module may use
nothing beyond the standard library; functions that talk to Redis take a *sync* redis-py client
from the caller (redis-py 5 in our venv, 8 in the Docket/FastMCP venvs: the calls used here are
the same in both).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent.parent
ROOT = BENCH_DIR.parent
PEERS_DIR = BENCH_DIR / "peers"
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Commands the harness itself sends to read statistics; never counted as a system's cost.
STAT_COMMANDS = frozenset(
    {
        "info",
        "config|resetstat",
        "config|get",
        "config",
        "client|setname",
        "client|list",
        "ping",
        "hello",
        "select",
        "client|setinfo",
    }
)


def log(*parts: Any) -> None:
    print(*parts, file=sys.stderr, flush=True)


def emit(result: dict[str, Any]) -> None:
    """A runner's one output: a single JSON line on stdout."""
    sys.stdout.write(json.dumps(result, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# -- statistics ---------------------------------------------------------------------------------
def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (p99 of 50 samples is the maximum)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(len(ordered) * q / 100))
    return ordered[min(len(ordered), rank) - 1]


def summarize(values_ms: Sequence[float], *, keep: bool = True) -> dict[str, Any]:
    vals = [float(v) for v in values_ms]
    out: dict[str, Any] = {"n": len(vals)}
    if vals:
        out.update(
            p50=round(pct(vals, 50), 3),
            p90=round(pct(vals, 90), 3),
            p99=round(pct(vals, 99), 3),
            mean=round(statistics.fmean(vals), 3),
            min=round(min(vals), 3),
            max=round(max(vals), 3),
        )
    if keep:
        out["samples"] = [round(v, 3) for v in vals]
    return out


def median(values: Iterable[float]) -> float:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(vals) if vals else math.nan


# -- processes ----------------------------------------------------------------------------------
def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, from /proc (psutil is not a dependency)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return math.nan
    # After the ")" the fields start at state (field 3): utime is field 14, stime 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def cpu_of(pids: Iterable[int]) -> dict[int, float]:
    return {pid: cpu_seconds(pid) for pid in pids}


def _die_with_parent() -> Callable[[], None] | None:
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    try:
        prctl: Any = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def preexec() -> None:
        prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG: our children never outlive us

    return preexec


class Proc:
    """One child process started by a runner or by the harness, stopped by its own PID."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        log_dir: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        log_dir = log_dir or Path(os.environ.get("BENCH_LOG_DIR", "/tmp"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        full_env = dict(os.environ)
        full_env.update(env or {})
        self.popen = subprocess.Popen(
            argv,
            env=full_env,
            cwd=str(cwd or ROOT),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(),
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        self._log.close()


def stop_all(procs: Iterable[Proc]) -> None:
    for proc in list(procs):
        with contextlib.suppress(Exception):
            proc.stop()


def wait_for(
    predicate: Callable[[], bool],
    timeout: float,
    what: str,
    procs: Sequence[Proc] = (),
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in procs:
            if not proc.alive():
                raise RuntimeError(
                    f"{proc.name} exited with {proc.popen.returncode} while waiting for "
                    f"{what}:\n{proc.log_tail()}"
                )
        with contextlib.suppress(Exception):
            if predicate():
                return
        time.sleep(interval)
    tails = "\n".join(f"--- {p.name}\n{p.log_tail()}" for p in procs)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}\n{tails}")


# -- Redis statistics ---------------------------------------------------------------------------
def command_calls(client: Any) -> dict[str, int]:
    """Calls per command from INFO commandstats (commands run inside Lua and MULTI count too)."""
    stats: dict[str, Any] = client.info("commandstats")
    out: dict[str, int] = {}
    for key, value in stats.items():
        name = key[len("cmdstat_") :] if key.startswith("cmdstat_") else key
        calls = value.get("calls") if isinstance(value, dict) else None
        if calls is not None:
            out[name] = int(calls)
    return out


def command_delta(
    before: dict[str, int], after: dict[str, int], *, subtract: dict[str, int] | None = None
) -> dict[str, int]:
    """Commands issued between two snapshots, without the harness's own statistics reads."""
    delta: dict[str, int] = {}
    for name, calls in after.items():
        if name in STAT_COMMANDS:
            continue
        d = calls - before.get(name, 0) - (subtract or {}).get(name, 0)
        if d > 0:
            delta[name] = d
    return dict(sorted(delta.items(), key=lambda kv: -kv[1]))


def used_memory(client: Any) -> int:
    return int(client.info("memory")["used_memory"])


def redis_pid(client: Any) -> int:
    return int(client.info("server")["process_id"])


class RedisWindow:
    """Commands, memory and CPU (Redis and the given processes) over one measured window."""

    def __init__(self, client: Any, pids: Iterable[int] = ()) -> None:
        self.client = client
        self.pids = list(pids)
        self.rpid = redis_pid(client)

    def __enter__(self) -> RedisWindow:
        self.cmd0 = command_calls(self.client)
        self.mem0 = used_memory(self.client)
        self.cpu0 = cpu_of([self.rpid, *self.pids])
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu1 = cpu_of([self.rpid, *self.pids])
        self.cmd1 = command_calls(self.client)

    def commands(self, subtract: dict[str, int] | None = None) -> dict[str, int]:
        return command_delta(self.cmd0, self.cmd1, subtract=subtract)

    def memory_delta(self) -> int:
        return used_memory(self.client) - self.mem0

    def cpu(self, pid: int) -> float:
        return self.cpu1[pid] - self.cpu0[pid]

    @property
    def redis_cpu(self) -> float:
        return self.cpu(self.rpid)


def idle_cpu(pids: Sequence[int], seconds: float, client: Any | None = None) -> dict[str, Any]:
    """CPU used by ``pids`` (and Redis commands received) over ``seconds`` of idleness."""
    before = cpu_of(pids)
    cmd0 = command_calls(client) if client is not None else {}
    time.sleep(seconds)
    after = cpu_of(pids)
    out: dict[str, Any] = {
        "seconds": seconds,
        "cpu_s": [round(after[p] - before[p], 3) for p in pids],
        "cpu_pct": [round(100 * (after[p] - before[p]) / seconds, 2) for p in pids],
    }
    if client is not None:
        cmds = command_delta(cmd0, command_calls(client))
        out["redis_cmds_per_s"] = round(sum(cmds.values()) / seconds, 1)
        out["redis_cmds"] = cmds
    return out


def jittered_gaps(n: int, mean_s: float, seed: int = 7) -> list[float]:
    """Gaps uniform on [0.5, 1.5] x mean: keeps arrivals from aliasing with a poll period."""
    import random

    rnd = random.Random(seed)
    return [rnd.uniform(0.5 * mean_s, 1.5 * mean_s) for _ in range(n)]
