"""Issue 11 (the lean engine) and issue 10 (SEP-2663) targets, judged from one run's results.

Every target is a ratio against a baseline measured in the same run (FastMCP 3 + Docket,
Docket, FastMCP 4) or against the issue's absolute limit; none is a timed assertion in a test.
Rendered by ``report.render_markdown`` before the peer tables.
"""

# Long Markdown strings read better unbroken.
# ruff: noqa: E501
from __future__ import annotations

from typing import Any


def _get(d: Any, *path: Any) -> Any:
    for p in path:
        if isinstance(d, dict):
            d = d.get(p)
        elif isinstance(d, list | tuple) and isinstance(p, int) and -len(d) <= p < len(d):
            d = d[p]
        else:
            return None
    return d


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:.{digits}f}"
    return str(v)


def judge_issue11(r: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(
        key: str,
        target: str,
        measured: Any,
        baseline: str,
        ratio: float | None,
        met: bool | None,
        note: str = "",
    ) -> None:
        out.append(
            {
                "key": key,
                "issue": 11 if not key.startswith("sep2663") else 10,
                "target": target,
                "measured": measured,
                "baseline": baseline,
                "ratio": None if ratio is None else round(ratio, 3),
                "met": met,
                "note": note,
            }
        )

    e2e = r.get("e2e", {})
    ours_load = _get(e2e, "ours", "block", "load") or {}
    ours_push_load = _get(e2e, "ours", "after-push", "load") or {}
    fm_load = _get(e2e, "fastmcp3_docket", "after-push", "load") or {}
    trace = _get(r, "trace", "mcp") or {}

    # Redis commands per task life through MCP.
    cmds = ours_load.get("redis_cmds_per_task")
    fm_cmds = fm_load.get("redis_cmds_per_task")
    mon = _get(trace, "noop", "commands_per_task_median")
    add(
        "commands",
        "Redis commands per task life through MCP (noop: create, pickup, complete, tasks/result) <= 12",
        cmds,
        f"12 (FastMCP 3 + Docket: {fmt(fm_cmds)})",
        None if cmds is None else cmds / 12,
        None if cmds is None else cmds <= 12,
        "INFO commandstats delta over the SDK-client load run / tasks (inside Lua included; the "
        "workers' and server's background traffic in the window counted too); ratio = measured / 12"
        + (f"; MONITOR, one task at a time (no batched acks): {fmt(mon)}" if mon is not None else "")
        + (f"; vs FastMCP x{cmds / fm_cmds:.2f}" if cmds and fm_cmds else ""),
    )
    per_update = trace.get("commands_per_progress_update")
    add(
        "progress_commands",
        "Redis commands per progress update <= 3",
        per_update,
        "3",
        None if per_update is None else per_update / 3,
        None if per_update is None else per_update <= 3.0,
        "MONITOR trace through MCP: (fewest commands of a task with N progress updates - fewest of a "
        f"noop task) / N; the progress script alone: {fmt(trace.get('progress_script_commands_per_update'))}",
    )

    cpu = ours_load.get("server_side_cpu_ms_per_task")
    fm_cpu = fm_load.get("server_side_cpu_ms_per_task")
    light_cpu = _get(e2e, "ours", "light", "block", "load", "server_side_cpu_ms_per_task")
    add(
        "cpu",
        "Server-side CPU per task through MCP (server + workers + Redis) <= 4 ms",
        cpu,
        f"4 ms (FastMCP 3 + Docket: {fmt(fm_cpu)} ms)",
        None if cpu is None else cpu / 4,
        None if cpu is None else cpu <= 4.0,
        "SDK-client load run, 20 in flight; ratio = measured / 4 ms"
        + (f"; vs FastMCP x{cpu / fm_cpu:.2f}" if cpu and fm_cpu else "")
        + (f"; with the light load generator: {fmt(light_cpu)} ms" if light_cpu is not None else ""),
    )

    tps, fm_tps = ours_load.get("tasks_per_s"), fm_load.get("tasks_per_s")
    push_tps = ours_push_load.get("tasks_per_s")
    # Every round runs both systems back to back: ours / FastMCP within each round.
    rounds_o = _get(e2e, "ours", "block", "load_runs_tasks_per_s") or []
    rounds_f = _get(e2e, "fastmcp3_docket", "after-push", "load_runs_tasks_per_s") or []
    paired = [o / f for o, f in zip(rounds_o, rounds_f, strict=False) if o and f]
    paired_note = (
        f"; ours / FastMCP within each round: {', '.join(f'x{x:.2f}' for x in paired)}" if paired else ""
    )
    add(
        "e2e_tps",
        "End to end, same SDK client, same run: tasks/s >= 1.25x FastMCP 3 + Docket",
        tps,
        f"FastMCP 3 + Docket {fmt(fm_tps)}/s",
        None if not (tps and fm_tps) else tps / fm_tps,
        None if not (tps and fm_tps) else tps / fm_tps >= 1.25,
        "ours: tasks/result at once (blocks); FastMCP: wait for the status push, then tasks/result "
        "(its tasks/result does not block)"
        + (
            f"; same client path for both (push, then tasks/result): x{push_tps / fm_tps:.2f}"
            if push_tps and fm_tps
            else ""
        )
        + paired_note,
    )
    l_ours = _get(e2e, "ours", "light", "block", "load", "tasks_per_s")
    l_ours_push = _get(e2e, "ours", "light", "after-push", "load", "tasks_per_s")
    l_fm = _get(e2e, "fastmcp3_docket", "light", "after-push", "load", "tasks_per_s")
    add(
        "e2e_tps_light",
        "The same with the light load generator (server's ceiling): tasks/s >= 1.25x FastMCP 3 + Docket",
        l_ours,
        f"FastMCP 3 + Docket {fmt(l_fm)}/s",
        None if not (l_ours and l_fm) else l_ours / l_fm,
        None if not (l_ours and l_fm) else l_ours / l_fm >= 1.25,
        "raw JSON-RPC over one HTTP/1.1 keep-alive connection per in-flight slot, no SDK"
        + (f"; same client path for both: x{l_ours_push / l_fm:.2f}" if l_ours_push and l_fm else ""),
    )
    idle = _get(e2e, "ours", "block", "idle", "e2e_ms", "p50")
    idle_push = _get(e2e, "ours", "after-push", "idle", "e2e_ms", "p50")
    fm_idle = _get(e2e, "fastmcp3_docket", "after-push", "idle", "e2e_ms", "p50")
    add(
        "e2e_idle",
        "Idle create -> result p50 <= 0.7x FastMCP 3 + Docket's (same SDK client)",
        idle,
        f"FastMCP 3 + Docket {fmt(fm_idle)} ms",
        None if not (idle and fm_idle) else idle / fm_idle,
        None if not (idle and fm_idle) else idle / fm_idle <= 0.7,
        "100 sequential tasks (--quick: 20)"
        + (f"; same client path for both: x{idle_push / fm_idle:.2f}" if idle_push and fm_idle else ""),
    )

    pk = _get(r, "pickup", "ours") or {}
    dk = _get(r, "pickup", "docket") or {}
    raw = _get(r, "pickup", "raw_streams") or {}
    p50, p99 = _get(pk, "latency_ms", "p50"), _get(pk, "latency_ms", "p99")
    after50 = _get(pk, "returned_to_start_ms", "p50")
    after99 = _get(pk, "returned_to_start_ms", "p99")
    add(
        "pickup_p50",
        "Pickup p50 <= 1 ms",
        p50,
        f"1 ms (Docket {fmt(_get(dk, 'latency_ms', 'p50'))} ms; bare XADD -> XREADGROUP, no engine: "
        f"{fmt(_get(raw, 'latency_ms', 'p50'))} ms)",
        None if p50 is None else p50 / 1.0,
        None if p50 is None else p50 <= 1.0,
        "from before the create call to the tool starting (the create call included); from the "
        f"create call's return: {fmt(after50)} ms",
    )
    add(
        "pickup_p99",
        "Pickup p99 <= 5 ms",
        p99,
        f"5 ms (Docket {fmt(_get(dk, 'latency_ms', 'p99'))} ms; bare XADD -> XREADGROUP: "
        f"{fmt(_get(raw, 'latency_ms', 'p99'))} ms)",
        None if p99 is None else p99 / 5.0,
        None if p99 is None else p99 <= 5.0,
        f"same clock; from the create call's return: {fmt(after99)} ms",
    )

    mem = _get(r, "memory", "ours") or {}
    used, payload = mem.get("used_memory_bytes_per_task"), mem.get("payload_bytes") or 0
    limit = 1024 + payload
    dmem = _get(r, "memory", "docket", "used_memory_bytes_per_task")
    add(
        "memory",
        "Redis memory per retained finished task <= 1 KB plus the payload",
        used,
        f"{limit} B (1,024 + {payload} B of arguments and result); Docket {fmt(dmem)} B",
        None if used is None else used / limit,
        None if used is None else used <= limit,
        "used_memory delta / tasks, less the client connections' buffers (MEMORY STATS "
        f"clients.normal), which grow by a fixed ~0.6 MB in any burst; MEMORY USAGE of the keys: {fmt(mem.get('memory_usage_bytes_per_task'))} B "
        "(record and its listing entry)",
    )

    levels = _get(r, "concurrency", "levels") or {}
    lo, hi = levels.get("100"), levels.get("10000")
    if lo and hi:
        add(
            "concurrency",
            "Lease cost grows per worker, not per task (100 -> 10,000 running tasks on 4 workers)",
            hi["redis_cmds_per_s"],
            f"{fmt(lo['redis_cmds_per_s'])} cmds/s at 100 tasks",
            hi["redis_cmds_per_s"] / lo["redis_cmds_per_s"],
            hi["redis_cmds_per_s"] / lo["redis_cmds_per_s"] < 10,
            "Redis commands/s at steady state, 10,000 vs 100 tasks (x100 tasks); worker CPU "
            f"{fmt(lo['worker_cpu_pct_total'])} % -> {fmt(hi['worker_cpu_pct_total'])} % of a core (4 workers)",
        )

    s = r.get("sep2663") or {}
    where = "this run"
    if not _get(s, "systems", "ours2"):
        # The SEP-2663 phase ran on its own (bench/sep2663.py): take its latest full results.
        import json
        from pathlib import Path

        path = Path(__file__).resolve().parent / "results" / "sep2663.json"
        if path.exists():
            saved = json.loads(path.read_text())
            s = saved.get("sep2663", saved)
            where = f"bench/sep2663.py run of {_get(saved, 'meta', 'date') or '?'}"
    o2, f4 = _get(s, "systems", "ours2"), _get(s, "systems", "fastmcp4")
    if o2 and f4:
        for key, name, field, mode, limit_v, better in (
            ("sep2663_cpu", "SEP-2663: server-side CPU per task <= 0.5x FastMCP 4", "server_side_cpu_ms_per_task", "load", 0.5, "lower"),
            ("sep2663_cmds", "SEP-2663: Redis commands per task <= 0.5x FastMCP 4", "redis_cmds_per_task", "load", 0.5, "lower"),
            ("sep2663_tps", "SEP-2663: tasks/s at 20 in flight >= 1.25x FastMCP 4", "tasks_per_s", "load", 1.25, "higher"),
        ):  # fmt: skip
            a, b = _get(o2, mode, field), _get(f4, mode, field)
            rt = a / b if a and b else None
            add(
                key,
                name,
                a,
                f"FastMCP 4 + fastmcp-tasks {fmt(b)}",
                rt,
                None if rt is None else (rt <= limit_v if better == "lower" else rt >= limit_v),
                f"{where}; both systems in that run, the same mcp 2.x client (polls tasks/get)",
            )
        a = _get(o2, "idle", "e2e_ms", "p50")
        b = _get(f4, "idle", "e2e_ms", "p50")
        add(
            "sep2663_idle",
            "SEP-2663: idle create -> completed p50 (no target; ratio shown)",
            a,
            f"FastMCP 4 + fastmcp-tasks {fmt(b)} ms",
            a / b if a and b else None,
            None,
            f"{where}; tasks/get polled every 5 ms by the same client",
        )
    return out


def render_issue11(r: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    w = lines.append
    w("### Targets (issue 11, and issue 10's SEP-2663 ratios)")
    w("| Issue | Target | Measured (ours) | Baseline, same run | Ratio | Verdict | How |")
    w("|---|---|---|---|---|---|---|")
    for t in r.get("targets_issue11", []):
        verdict = {True: "**met**", False: "**not met**", None: "-"}[t["met"]]
        w(
            f"| {t['issue']} | {t['target']} | {fmt(t['measured'])} | {t['baseline']} | "
            f"{fmt(t['ratio'])} | {verdict} | {t['note']} |"
        )
    w("")

    e2e = r.get("e2e", {})
    light_rows = [
        (key, mode, entry) for key, res in e2e.items() for mode, entry in (res.get("light") or {}).items()
    ]
    if light_rows:
        w("### 3b. End to end with the light load generator (raw JSON-RPC, no SDK)")
        w(
            "One MCP session; one HTTP/1.1 keep-alive connection per in-flight slot (20); a "
            "task-augmented `tools/call` of `noop`, then `tasks/result` (`block`), or first the terminal "
            "`notifications/tasks/status` from the session's GET stream with a 0.5 s `tasks/get` fallback "
            "(`after-push`). Load: median of the rounds. Client CPU is the generator's own (not server-side)."
        )
        w(
            "| System | result path | idle e2e p50 / p99 ms | load tasks/s (rounds) | load e2e p50 / p99 ms "
            "| server-side CPU ms/task | per process ms/task | Redis commands/task | client CPU ms/task | load average |"
        )
        w("|---|---|---|---|---|---|---|---|---|---|")
        for key, mode, entry in light_rows:
            idle, load = entry.get("idle") or {}, entry.get("load") or {}
            procs = ", ".join(f"{k} {fmt(v)}" for k, v in (load.get("cpu_ms_per_task") or {}).items())
            w(
                f"| {e2e[key].get('label', key)} | {mode} | {fmt(_get(idle, 'e2e_ms', 'p50'))} / "
                f"{fmt(_get(idle, 'e2e_ms', 'p99'))} | {fmt(load.get('tasks_per_s'), 1)} "
                f"({', '.join(fmt(x, 1) for x in entry.get('load_runs_tasks_per_s', []))}) | "
                f"{fmt(_get(load, 'e2e_ms', 'p50'))} / {fmt(_get(load, 'e2e_ms', 'p99'))} | "
                f"{fmt(load.get('server_side_cpu_ms_per_task'))} | {procs}, Redis {fmt(load.get('redis_cpu_ms_per_task'))} | "
                f"{fmt(load.get('redis_cmds_per_task'))} | {fmt(load.get('client_cpu_ms_per_task'))} | "
                f"{fmt(_get(load, 'loadavg', 0))} |"
            )
        w("")

    trace = r.get("trace") or {}
    if trace:
        w("### 8. Which commands: MONITOR traces of ours")
        for via, res in trace.items():
            noop = res.get("noop", res)
            w(
                f"- **{'through MCP (server, worker, SDK client; noop, one task at a time)' if via == 'mcp' else 'engine only (create with dispatch, one worker; probe tool)'}**: "
                f"{fmt(noop['commands_per_task_median'])} commands per task (median of {noop['tasks']}; "
                f"min {noop['commands_per_task_min']}, max {noop['commands_per_task_max']}): round trips "
                f"{fmt(noop['client_commands_per_task'])} "
                f"({', '.join(f'{k} {fmt(v)}' for k, v in noop['client_commands_by_name'].items())}), inside scripts "
                f"{fmt(noop['lua_commands_per_task'])} "
                f"({', '.join(f'{k} {fmt(v)}' for k, v in noop['lua_commands_by_script'].items())}); round trips by "
                f"process: {', '.join(f'{k} {fmt(v)}' for k, v in noop['round_trips_by_origin'].items())}; Redis-clock "
                f"timeline (MONITOR slows Redis): "
                f"{', '.join(f'{k} {fmt(v)} ms' for k, v in noop['timeline_ms_median'].items())}."
            )
            if "commands_per_progress_update" in res:
                w(
                    f"  Progress: {res['progress_updates_per_task']} updates per task (a progressToken, so "
                    f"the server relays `notifications/progress`; {res.get('progress_notifications_received')} "
                    f"received): **{fmt(res['commands_per_progress_update'])} commands per update** "
                    f"(the progress script alone: {fmt(res.get('progress_script_commands_per_update'))})."
                )
            seqs = noop.get("sequences") or []
            if seqs:
                w("")
                w("  The first task's commands, in Redis' order (indented: inside the script above):")
                w("  ```")
                for line in seqs[0]:
                    w(f"  {line}")
                w("  ```")
        w("")

    mem = r.get("memory") or {}
    if mem:
        w("### 9. Redis memory per retained finished task (no-op, results kept as each system keeps them)")
        w(
            "| System | tasks | used_memory delta B/task (client buffers off) | raw used_memory delta B/task "
            "| MEMORY USAGE B/task | keys/task | keys a task leaves (bytes each) |"
        )
        w("|---|---|---|---|---|---|---|")
        for key, res in mem.items():
            pats = ", ".join(
                f"`{p}` {fmt(v['bytes_each'], 0)}" for p, v in res["by_pattern"].items() if v["keys"] > 1
            )
            w(
                f"| {key} | {res['n']} | {fmt(res['used_memory_bytes_per_task'], 0)} | "
                f"{fmt(res.get('used_memory_raw_bytes_per_task'), 0)} | "
                f"{fmt(res['memory_usage_bytes_per_task'], 0)} | {fmt(res['keys_per_task'])} | {pats} |"
            )
        w(
            "Ours creates each task with a session (as the MCP server does), so its listing entry is "
            "counted; arq and Docket have no listing."
        )
        w("")

    conc = r.get("concurrency") or {}
    if conc.get("levels"):
        w(
            f"### 10. Many running tasks: N tasks sleeping {fmt(conc['sleep_s'], 0)} s on {conc['workers']} "
            f"worker processes, steady state over {fmt(conc['window_s'], 0)} s (lease {conc['lease_ms'] // 1000} s, renewed every third)"
        )
        w(
            "| running tasks | slots/worker | all running after s | Redis commands/s | by command (/s) | Redis CPU % | "
            "worker CPU % (each) | worker RSS MB | load average |"
        )
        w("|---|---|---|---|---|---|---|---|---|")
        for level, res in conc["levels"].items():
            by = ", ".join(f"{k} {fmt(v)}" for k, v in list(res["redis_cmds_per_s_by_name"].items())[:12])
            w(
                f"| {int(level):,} | {res['slots_per_worker']} | {fmt(res['all_running_after_s'])} | "
                f"{fmt(res['redis_cmds_per_s'])} | {by} | {fmt(res['redis_cpu_pct'])} | "
                f"{', '.join(fmt(x) for x in res['worker_cpu_pct'])} | "
                f"{', '.join(fmt(x, 0) for x in res['worker_rss_mb'])} | {fmt(res['loadavg'][0])} |"
            )
        w(
            "Per worker and interval: one `renew` script per shard per 1,000 running tasks (an `EVALSHA` "
            "with `XPENDING` + `XCLAIM` inside), a reaper pass (`XAUTOCLAIM`, `XINFO GROUPS`, `XRANGE`) and "
            "a health report (`SET`, `ZADD`, `ZREMRANGEBYSCORE`, `PEXPIRE`); nothing per task."
        )
        w("")

    wk = r.get("workers") or {}
    if wk.get("rows"):
        w(
            f"### 11. Throughput by worker processes ({wk['n']} no-op tasks, {wk['in_flight']} creates in flight, "
            f"{wk['slots_per_worker']} slots each; median of the rounds)"
        )
        w(
            "| Redis | workers | shards | tasks/s (rounds) | x 1 worker | worker CPU ms/task | Redis CPU ms/task | Redis commands/task |"
        )
        w("|---|---|---|---|---|---|---|---|")
        one = _get(wk, "rows", "single-1w-1s", "median", "tasks_per_s")
        for row in wk["rows"].values():
            m = row["median"]
            cmds = m.get("redis_cmds_per_task")
            if row["where"] == "cluster" and m.get("cluster_cmds_all_nodes") is not None:
                cmds = round(m["cluster_cmds_all_nodes"] / wk["n"], 2)
            w(
                f"| {'one redis-server' if row['where'] == 'single' else '3-master Redis Cluster'} | "
                f"{row['workers']} | {row['shards']} | {fmt(m['tasks_per_s'], 1)} "
                f"({', '.join(fmt(x['tasks_per_s'], 1) for x in row['runs'])}) | "
                f"{fmt(m['tasks_per_s'] / one) if one else '-'} | {fmt(m.get('worker_cpu_ms_per_task'))} | "
                f"{fmt(m.get('redis_cpu_ms_per_task')) if row['where'] == 'single' else '-'} | {fmt(cmds)} |"
            )
        cl = wk.get("cluster") or {}
        if not cl.get("supported"):
            w(
                f"Cluster row not run: {cl.get('why')}. It is ready to run (`lean.measure_workers` starts a "
                "3-master cluster from redis-server and runs the same throughput with `redis+cluster://`)."
            )
        w(
            "Client, Redis and every worker share 2 cores: more worker processes add CPU contention, "
            "not cores; the producer (one Python process) also caps the rate."
        )
        w("")
    return lines
