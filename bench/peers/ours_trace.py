"""Where one task's lifecycle goes, for ours: every Redis command it causes, as MONITOR sees it.

Runs one worker, then creates ``--n`` probe tasks one at a time (each waits for the previous to
finish) while a MONITOR connection records every command with Redis' own timestamp. Each task's
slice of the stream (from its create to the next create) gives:
- the commands per lifecycle, split into commands sent by clients (round trips, or commands queued
  in MULTI) and commands run inside each Lua script;
- a timeline from Redis' clock: create -> worker picks the job (first arq poll) -> claim script ->
  tool starts (the probe's RPUSH) -> terminal update, i.e. where the pickup latency goes.
MONITOR slows Redis a little; the counts are exact, the times indicative. Diagnostic only.

  python ours_trace.py --redis URL [--n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import threading
import time
from typing import Any

import redis
from common import emit, stop_all
from enginebench import start_workers
from ours import NAMESPACE, Ours

from mcp_tasks_redis.engine.lua import scripts

PROBE_KEY = "bench:trace"


def monitor(url: str, out: list[dict[str, Any]], stop: threading.Event, ready: threading.Event) -> None:
    client = redis.Redis.from_url(url)
    with client.monitor() as m:
        ready.set()
        while not stop.is_set():
            out.append(m.next_command())


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--redis", required=True)
    p.add_argument("--n", type=int, default=30)
    a = p.parse_args()
    sha_names = {s.sha: s.name for s in vars(scripts()).values()}
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

    async def produce() -> None:
        await engine.open()
        try:
            for i in range(a.n):
                await engine.enqueue("probe", t=time.time(), key=PROBE_KEY)
                while poller.llen(PROBE_KEY) < i + 1 or poller.zcard(f"{NAMESPACE}:active") > 0:  # noqa: ASYNC110
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

    # Slice the stream: each task runs from its create script to the next one.
    create_sha = scripts().create.sha
    starts = [
        i
        for i, e in enumerate(entries)
        if e["command"].startswith("EVALSHA " + create_sha) and e.get("client_type") != "lua"
    ]
    tasks: list[dict[str, Any]] = []
    for k, begin in enumerate(starts):
        end = starts[k + 1] if k + 1 < len(starts) else len(entries)
        client_cmds: dict[str, int] = {}
        lua_cmds: dict[str, int] = {}
        script = "?"
        marks: dict[str, float] = {"create": float(entries[begin]["time"])}
        for e in entries[begin:end]:
            if e.get("client_port") in skip_ports:
                continue
            words = e["command"].split()
            name = words[0].lower() if words else "?"
            if e.get("client_type") == "lua":
                lua_cmds[script] = lua_cmds.get(script, 0) + 1
                continue
            if name in ("evalsha", "eval"):
                script = sha_names.get(words[1], "?") if name == "evalsha" and len(words) > 1 else "eval"
                key = f"evalsha({script})"
                client_cmds[key] = client_cmds.get(key, 0) + 1
                t = float(e["time"])
                if script == "claim":
                    marks.setdefault("claim", t)
                elif script == "update":
                    marks["last update"] = t
            else:
                client_cmds[name] = client_cmds.get(name, 0) + 1
                t = float(e["time"])
                if name == "zrangebyscore" and "create" in marks and "claim" not in marks:
                    marks.setdefault("job picked (arq poll)", t)
                elif name == "rpush" and PROBE_KEY in e["command"]:
                    marks.setdefault("tool started", t)
        tasks.append({"client": client_cmds, "lua": lua_cmds, "marks": marks})

    def med(values: list[float]) -> float:
        return round(statistics.median(values), 3) if values else float("nan")

    names = sorted({k for t in tasks for k in t["client"]})
    scripts_seen = sorted({k for t in tasks for k in t["lua"]})
    steps = ["create", "job picked (arq poll)", "claim", "tool started", "last update"]
    gaps: dict[str, float] = {}
    for x, y in itertools.pairwise(steps):
        gaps[f"{x} -> {y}"] = med(
            [(t["marks"][y] - t["marks"][x]) * 1000 for t in tasks if x in t["marks"] and y in t["marks"]]
        )
    emit(
        {
            "tasks": len(tasks),
            "client_commands_per_task": med([sum(t["client"].values()) for t in tasks]),
            "lua_commands_per_task": med([sum(t["lua"].values()) for t in tasks]),
            "client_commands_by_name": {
                n: v for n in names if (v := med([t["client"].get(n, 0) for t in tasks]))
            },
            "lua_commands_by_script": {
                s: v for s in scripts_seen if (v := med([t["lua"].get(s, 0) for t in tasks]))
            },
            "timeline_ms_median": gaps,
            "create_to_tool_start_ms_median": med(
                [
                    (t["marks"]["tool started"] - t["marks"]["create"]) * 1000
                    for t in tasks
                    if "tool started" in t["marks"]
                ]
            ),
        }
    )


if __name__ == "__main__":
    main()
