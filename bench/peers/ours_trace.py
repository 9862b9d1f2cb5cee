"""Where one task's life goes, for ours: every Redis command it causes, as MONITOR sees it.

  python ours_trace.py --redis URL --via engine [--n 30]
  python ours_trace.py --redis URL --via mcp [--n 30] [--progress-tasks 3 --progress-steps 10]

``--via engine``: one worker (``mcp-tasks-redis worker``); ``--n`` probe tasks created one at a
time with ``TaskEngine.tasks.create(..., dispatch=True)``, each waiting for the previous one to be
finished and acknowledged.

``--via mcp``: one server (``mcp-tasks-redis serve``, Streamable HTTP) and one worker; the mcp
1.30 SDK client makes ``--n`` task-augmented ``tools/call``s of ``noop`` one at a time and fetches
each result with ``tasks/result`` (which blocks until the task is terminal), so a task's life is
create, pickup, finish, result. Then ``--progress-tasks`` tasks of ``progress_probe`` with
``--progress-steps`` progress updates each (with a progressToken, so the server relays
``notifications/progress``): the commands per progress update are the difference from a noop
task, divided by the updates.

A MONITOR connection records every command with Redis' own clock, which client connection sent
it and whether it ran inside a Lua script. Each task's slice of the stream runs from its create
script to the next one (the worker's batched acknowledgement, 50 ms after the outcome, falls in
it). Connections are attributed to the process that holds them (server, worker, client), from
/proc. Reported: medians per task (client round trips by command and script; commands inside
each script), the exact command sequence of the first ``--show`` tasks, and a Redis-clock
timeline (create -> tool started -> outcome written -> acknowledged). Background work that lands
inside a slice (a worker's health report every 5 s, the reaper, a re-issued XREADGROUP block) is
listed under its origin and is the reason the medians, not the means, are the figures.
MONITOR slows Redis a little: the counts are exact, the times indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import redis
from common import PEERS_DIR, Proc, emit, stop_all, wait_for
from enginebench import start_workers
from ours import CLI, NAMESPACE, Ours, worker_env

from mcp_tasks_redis.engine.lua import scripts

PROBE_KEY = "bench:trace"


def monitor(url: str, out: list[dict[str, Any]], stop: threading.Event, ready: threading.Event) -> None:
    client = redis.Redis.from_url(url)
    with client.monitor() as m:
        ready.set()
        while not stop.is_set():
            out.append(m.next_command())


def _socket_inodes(pid: int) -> set[str]:
    out: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        for fd in fd_dir.iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith("socket:["):
                out.add(target[8:-1])
    except OSError:
        pass
    return out


def ports_of(pids: dict[str, int], redis_port: int) -> dict[str, str]:
    """Local port (as MONITOR shows it) -> role, for every connection a process holds to Redis."""
    inode_role: dict[str, str] = {}
    for role, pid in pids.items():
        for inode in _socket_inodes(pid):
            inode_role[inode] = role
    out: dict[str, str] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            local, remote, inode = parts[1], parts[2], parts[9]
            if int(remote.rsplit(":", 1)[1], 16) != redis_port:
                continue
            role = inode_role.get(inode)
            if role:
                out[str(int(local.rsplit(":", 1)[1], 16))] = role
    return out


def med(values: list[float]) -> float:
    return round(statistics.median(values), 3) if values else float("nan")


def analyse(
    entries: list[dict[str, Any]],
    port_role: dict[str, str],
    skip_ports: set[str],
    show: int,
    tool_start_marker: str,
) -> list[dict[str, Any]]:
    """Slice the MONITOR stream into tasks (one per create script) and describe each."""
    sha_names = {s.sha: s.name for s in vars(scripts()).values()}
    create_sha = scripts().create.sha
    starts = [
        i
        for i, e in enumerate(entries)
        if e["command"].startswith("EVALSHA " + create_sha) and e.get("client_type") != "lua"
    ]
    tasks: list[dict[str, Any]] = []
    for k, begin in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(entries)
        by_origin: dict[str, int] = {}
        client_cmds: dict[str, int] = {}
        lua_cmds: dict[str, int] = {}
        sequence: list[str] = []
        script = "?"
        marks: dict[str, float] = {"create": float(entries[begin]["time"])}
        for e in entries[begin:end]:
            port = str(e.get("client_port"))
            if port in skip_ports:
                continue
            words = e["command"].split()
            name = words[0].lower() if words else "?"
            t = float(e["time"])
            if e.get("client_type") == "lua":
                lua_cmds[script] = lua_cmds.get(script, 0) + 1
                if len(sequence) < 400:
                    sequence.append(f"    {name.upper()} (in {script})")
                continue
            role = port_role.get(port, "?")
            if name in ("hello", "client") or (tool_start_marker and tool_start_marker in e["command"]):
                # The probe tool's own write (its start time) and connection set-up: not the engine's.
                if tool_start_marker and name == "rpush":
                    marks.setdefault("tool started", t)
                if len(sequence) < 400:
                    sequence.append(f"({role}: {name.upper()}, the probe tool's own, not counted)")
                continue
            if name in ("evalsha", "eval"):
                script = sha_names.get(words[1], "?") if name == "evalsha" and len(words) > 1 else "eval"
                key = f"evalsha({script})"
                if script == "finish":
                    marks.setdefault("outcome written", t)
            else:
                key = name
                if name == "xack":
                    marks.setdefault("acknowledged", t)
                if name == "hgetall" and role == "server" and "outcome written" in marks:
                    marks.setdefault("result read", t)
            client_cmds[key] = client_cmds.get(key, 0) + 1
            by_origin[role] = by_origin.get(role, 0) + 1
            if len(sequence) < 400:
                sequence.append(f"{role}: {key.upper() if key == name else key}")
        tasks.append(
            {
                "client": client_cmds,
                "lua": lua_cmds,
                "by_origin": by_origin,
                "marks": marks,
                "sequence": sequence if k < show else None,
            }
        )
    return tasks


def summarise(tasks: list[dict[str, Any]], steps: list[str]) -> dict[str, Any]:
    names = sorted({k for t in tasks for k in t["client"]})
    scripts_seen = sorted({k for t in tasks for k in t["lua"]})
    origins = sorted({k for t in tasks for k in t["by_origin"]})
    totals = [sum(t["client"].values()) + sum(t["lua"].values()) for t in tasks]
    gaps: dict[str, float] = {}
    for x, y in itertools.pairwise(steps):
        gaps[f"{x} -> {y}"] = med(
            [(t["marks"][y] - t["marks"][x]) * 1000 for t in tasks if x in t["marks"] and y in t["marks"]]
        )
    return {
        "tasks": len(tasks),
        "commands_per_task_median": med([float(x) for x in totals]),
        "commands_per_task_min": min(totals) if totals else None,
        "commands_per_task_max": max(totals) if totals else None,
        "client_commands_per_task": med([sum(t["client"].values()) for t in tasks]),
        "lua_commands_per_task": med([sum(t["lua"].values()) for t in tasks]),
        "client_commands_by_name": {
            n: v for n in names if (v := med([t["client"].get(n, 0) for t in tasks]))
        },
        "lua_commands_by_script": {
            s: v for s in scripts_seen if (v := med([t["lua"].get(s, 0) for t in tasks]))
        },
        "round_trips_by_origin": {
            o: v for o in origins if (v := med([t["by_origin"].get(o, 0) for t in tasks]))
        },
        "timeline_ms_median": gaps,
        "sequences": [t["sequence"] for t in tasks if t["sequence"] is not None],
    }


# -- engine only ---------------------------------------------------------------------------------
def via_engine(a: argparse.Namespace) -> dict[str, Any]:
    client = redis.Redis.from_url(a.redis)
    client.delete(PROBE_KEY)
    engine = Ours(a.redis)
    procs = start_workers(engine, client, 1, engine.default_concurrency)
    poller = redis.Redis.from_url(a.redis)
    poller.ping()
    skip_ports = {
        str(poller.client_info()["addr"]).rsplit(":", 1)[1],
        str(client.client_info()["addr"]).rsplit(":", 1)[1],
    }
    entries: list[dict[str, Any]] = []
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=monitor, args=(a.redis, entries, stop, ready), daemon=True)
    thread.start()
    ready.wait(10)
    time.sleep(0.2)
    port_role = ports_of(
        {"worker": procs[0].pid, "producer": os.getpid()}, client.connection_pool.connection_kwargs["port"]
    )

    async def produce() -> None:
        nonlocal port_role
        await engine.open()
        try:
            for i in range(a.n):
                await engine.enqueue("probe", t=time.time(), key=PROBE_KEY)
                if i == 0:
                    port_role = ports_of(
                        {"worker": procs[0].pid, "producer": os.getpid()},
                        client.connection_pool.connection_kwargs["port"],
                    )
                while poller.llen(PROBE_KEY) < i + 1:  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
                while sum(poller.xlen(q) for s in engine.engine.keys.all_shards for q in s.streams) > 0:  # type: ignore[union-attr]  # noqa: ASYNC110
                    await asyncio.sleep(0.002)
                await asyncio.sleep(0.05)
        finally:
            await engine.close()

    try:
        asyncio.run(produce())
        time.sleep(0.3)
    finally:
        stop.set()
        client.ping()  # wakes the monitor thread
        thread.join(5)
        stop_all(procs)
    tasks = analyse(entries, port_role, skip_ports, a.show, PROBE_KEY)
    steps = ["create", "tool started", "outcome written", "acknowledged"]
    return {"via": "engine", **summarise(tasks, steps)}


# -- through MCP ---------------------------------------------------------------------------------
def via_mcp(a: argparse.Namespace) -> dict[str, Any]:
    import socket
    import urllib.request

    import mcp.types as T
    from mcp import ClientSession
    from mcp.client.streamable_http import streamable_http_client

    warnings.simplefilter("ignore", DeprecationWarning)
    client = redis.Redis.from_url(a.redis)
    redis_port = int(client.connection_pool.connection_kwargs["port"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = worker_env(a.redis)
    server = Proc(
        "trace-server",
        [CLI, "serve", "--transport", "streamable-http", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
    )
    worker = Proc("trace-worker", [CLI, "worker"], env=env)
    procs = [server, worker]

    def up() -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as resp:
            ok = resp.status == 200
        return ok and client.zcard(f"{NAMESPACE}:workers") >= 1

    entries: list[dict[str, Any]] = []
    stop, ready = threading.Event(), threading.Event()
    out: dict[str, Any] = {"via": "mcp"}
    try:
        wait_for(up, 60, "the trace server and worker", procs)
        time.sleep(1.0)
        skip_ports = {str(client.client_info()["addr"]).rsplit(":", 1)[1]}
        seen_progress: list[int] = []

        async def on_message(message: Any) -> None:
            if isinstance(message, T.ServerNotification) and isinstance(message.root, T.ProgressNotification):
                seen_progress.append(1)

        async def drive() -> None:
            async with (
                streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write, _),
                ClientSession(read, write, message_handler=on_message) as session,
            ):
                await session.initialize()
                for _ in range(5):  # warm-up: scripts loaded, connections open, events subscribed
                    created = await session.experimental.call_tool_as_task("noop", {})
                    await session.experimental.get_task_result(created.task.taskId, T.CallToolResult)
                await asyncio.sleep(0.3)
                thread.start()
                ready.wait(10)
                await asyncio.sleep(0.2)
                port_role.update(
                    ports_of({"server": server.pid, "worker": worker.pid, "client": os.getpid()}, redis_port)
                )
                for _ in range(a.n):
                    created = await session.experimental.call_tool_as_task("noop", {})
                    result = await session.experimental.get_task_result(created.task.taskId, T.CallToolResult)
                    assert not result.isError, result
                    await asyncio.sleep(0.12)  # the worker's batched ack (50 ms) lands in this slice
                seen_progress.clear()
                for i in range(a.progress_tasks):
                    created = await session.experimental.call_tool_as_task(
                        "progress_probe",
                        {"steps": a.progress_steps, "interval": 0.15},
                        meta={"progressToken": f"trace-{i}"},
                    )
                    await session.experimental.get_task_result(created.task.taskId, T.CallToolResult)
                    await asyncio.sleep(0.12)

        port_role: dict[str, str] = {}
        thread = threading.Thread(target=monitor, args=(a.redis, entries, stop, ready), daemon=True)
        asyncio.run(drive())
        time.sleep(0.3)
        out["progress_notifications_received"] = len(seen_progress)
    finally:
        stop.set()
        client.ping()
        if thread.is_alive():
            thread.join(5)
        stop_all(procs)
    tasks = analyse(entries, port_role, skip_ports, a.show, "")
    noop_tasks, progress_tasks = tasks[: a.n], tasks[a.n :]
    steps = ["create", "outcome written", "result read", "acknowledged"]
    out["noop"] = summarise(noop_tasks, steps)
    if progress_tasks:
        summary = summarise(progress_tasks, [])
        summary.pop("sequences", None)
        out["progress"] = summary
        # progress_probe reports `steps` updates; the reporter adds nothing (the last is < 100 %),
        # then the worker's progress.finish() sends the final 100 %: steps + 1 progress writes.
        updates = a.progress_steps + 1
        out["progress_updates_per_task"] = updates
        # The fewest commands of a progress task minus the fewest of a noop task (background work
        # such as a health report lands in some slices only), per update.
        out["commands_per_progress_update"] = round(
            (summary["commands_per_task_min"] - out["noop"]["commands_per_task_min"]) / updates, 2
        )
        # The same from the progress script alone: its EVALSHA plus the commands inside it.
        progress_script = summary["client_commands_by_name"].get("evalsha(progress)", 0)
        out["progress_script_commands_per_update"] = round(
            (progress_script + summary["lua_commands_by_script"].get("progress", 0)) / updates, 2
        )
        out["progress_commands_by_name"] = summary["client_commands_by_name"]
    return out


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--via", choices=["engine", "mcp"], default="engine")
    p.add_argument("--n", type=int, default=30)
    p.add_argument("--show", type=int, default=3, help="tasks whose exact command sequence is kept")
    p.add_argument("--progress-tasks", type=int, default=3)
    p.add_argument("--progress-steps", type=int, default=10)
    a = p.parse_args()
    sys.path.insert(0, str(PEERS_DIR))
    emit(via_engine(a) if a.via == "engine" else via_mcp(a))


if __name__ == "__main__":
    main()
