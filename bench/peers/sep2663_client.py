"""The one SEP-2663 load driver: `mcp` 2.x's ``Client`` with a client extension for tasks.

Runs in bench/.venvs/mcp2 (``mcp`` 2.x alone; no server package), against any server that speaks
the ``io.modelcontextprotocol/tasks`` extension over Streamable HTTP:

  python sep2663_client.py URL probe                           # one task; exit 0 when it completes
  python sep2663_client.py URL idle --n 100 --poll-ms 5        # sequential tasks
  python sep2663_client.py URL load --n 500 --in-flight 20 --poll-ms 50

Every task is the same client path, whatever the server:
1. ``Client.call_tool("noop")``: a ``tools/call`` whose ``_meta`` declares the extension (the SDK
   stamps ``io.modelcontextprotocol/clientCapabilities`` on every request from ``extensions=``);
2. the server answers ``CreateTaskResult`` (``resultType: "task"``), which the SDK hands to this
   extension's ``ResultClaim``;
3. the claim's resolver polls ``tasks/get`` (with the ``Mcp-Name: <taskId>`` header, from
   ``name_param``) every ``--poll-ms`` milliseconds, the first poll one interval after the
   CreateTaskResult arrived, until the task is terminal; ``--poll-ms server`` waits the task's
   own ``pollIntervalMs`` instead (from the CreateTaskResult, then from each ``tasks/get``).
   The inlined ``result`` becomes the call's ``CallToolResult``.

A call that does not come back as a task counts as an error: the run measures tasks, not plain
calls. Clocks: ``create`` = ``tools/call`` sent -> CreateTaskResult parsed; ``e2e`` = ``tools/call``
sent -> the ``tasks/get`` that reports ``completed`` parsed. Prints one JSON line; five warm-up
tasks run first (they also prime the SDK's tool listing, which it reads once to validate results).
With ``--sync`` it prints ``READY`` after the warm-up and waits for a line on stdin, so the harness
can take its CPU and Redis snapshots around the measured tasks alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import json
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import mcp_types
from common import summarize
from mcp import Client
from mcp.client.extension import ClaimContext, ClientExtension, ResultClaim
from mcp_types import CallToolResult, RequestParams, Result

TASKS_EXTENSION = "io.modelcontextprotocol/tasks"
TERMINAL = frozenset({"completed", "failed", "cancelled"})
TASK_TIMEOUT_S = 30.0


# -- SEP-2663 wire models (MCPModel's camelCase aliases: task_id <-> taskId) -------------------------
class CreateTaskResult(Result):
    """The flat ``tools/call`` result of a call the server runs as a task."""

    result_type: Literal["task"]
    task_id: str
    status: str
    created_at: str | None = None
    last_updated_at: str | None = None
    ttl_ms: int | None = None
    poll_interval_ms: int | None = None
    status_message: str | None = None


class DetailedTask(Result):
    """A ``tasks/get`` result: the task, plus ``result`` / ``error`` / ``inputRequests`` by status."""

    result_type: str | None = None
    task_id: str
    status: str
    poll_interval_ms: int | None = None
    status_message: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    input_requests: dict[str, Any] | None = None


class TaskIdParams(RequestParams):
    task_id: str


class GetTaskRequest(mcp_types.Request[TaskIdParams, Literal["tasks/get"]]):
    method: Literal["tasks/get"] = "tasks/get"
    params: TaskIdParams
    name_param = "taskId"  # the SDK mirrors params.taskId into the Mcp-Name header


class TaskEnded(Exception):
    """The task ended in a status other than completed (or did not end in time)."""


# -- per-call bookkeeping -----------------------------------------------------------------------------
@dataclass
class Call:
    t0: float
    created: float | None = None
    done: float | None = None
    polls: int = 0
    task_id: str | None = None
    server_poll_ms: int | None = None


_current: contextvars.ContextVar[Call] = contextvars.ContextVar("bench_call")


@dataclass
class Poller:
    """How long to wait before each ``tasks/get``: a fixed interval, or the server's pollIntervalMs."""

    fixed_ms: float | None
    advertised: list[int] = field(default_factory=list)

    def delay_s(self, server_ms: int | None) -> float:
        if self.fixed_ms is not None:
            return self.fixed_ms / 1000.0
        # Honor the server; a server that advertises nothing gets 500 ms (the SDK 1.x fallback).
        return (server_ms if server_ms is not None and server_ms > 0 else 500) / 1000.0


class BenchTasks(ClientExtension):
    """Declares the tasks extension and resolves ``resultType: "task"`` by polling ``tasks/get``."""

    identifier = TASKS_EXTENSION

    def __init__(self, poller: Poller) -> None:
        self.poller = poller

    def claims(self) -> list[ResultClaim[Any]]:
        return [ResultClaim(result_type="task", model=CreateTaskResult, resolve=self.resolve)]

    async def resolve(self, created: CreateTaskResult, ctx: ClaimContext) -> CallToolResult:
        call = _current.get()
        call.created = time.perf_counter()
        call.task_id = created.task_id
        call.server_poll_ms = created.poll_interval_ms
        if created.poll_interval_ms is not None:
            self.poller.advertised.append(created.poll_interval_ms)
        server_ms = created.poll_interval_ms
        deadline = call.created + TASK_TIMEOUT_S
        while True:
            await asyncio.sleep(self.poller.delay_s(server_ms))
            task = await ctx.session.send_request(
                GetTaskRequest(params=TaskIdParams(task_id=created.task_id)), DetailedTask
            )
            call.polls += 1
            if task.poll_interval_ms is not None:
                server_ms = task.poll_interval_ms
            if task.status == "completed":
                call.done = time.perf_counter()
                return CallToolResult.model_validate(task.result or {}, by_name=False)
            if task.status in TERMINAL or task.status == "input_required":
                raise TaskEnded(f"task {created.task_id} {task.status}: {task.error or task.status_message}")
            if time.perf_counter() > deadline:
                raise TaskEnded(f"task {created.task_id} still {task.status} after {TASK_TIMEOUT_S:.0f} s")


# -- the measurement ------------------------------------------------------------------------------------
class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        fixed = None if args.poll_ms == "server" else float(args.poll_ms)
        self.poller = Poller(fixed)
        self.errors: list[str] = []
        self.n_errors = 0

    def client(self) -> Client:
        return Client(self.args.url, extensions=[BenchTasks(self.poller)], cache=None)

    async def one(self, client: Client) -> Call | None:
        call = Call(t0=time.perf_counter())
        token = _current.set(call)
        try:
            result = await client.call_tool(self.args.tool, {})
        except Exception as e:  # a failed task, a transport error: counted, the run goes on
            self.n_errors += 1
            self.errors.append(f"{type(e).__name__}: {e}"[:300])
            return None
        finally:
            _current.reset(token)
        if call.created is None or call.done is None:
            self.n_errors += 1
            self.errors.append("the call did not run as a task (no CreateTaskResult)")
            return None
        texts = [c.text for c in result.content if isinstance(c, mcp_types.TextContent)]
        if result.is_error or texts != ["ok"]:
            self.n_errors += 1
            self.errors.append(f"{call.task_id}: unexpected result {result.model_dump_json()[:200]}")
        return call

    async def run(self, client: Client) -> dict[str, Any]:
        a = self.args
        out: dict[str, Any] = {
            "mode": a.mode,
            "poll_ms": a.poll_ms,
            "protocol_version": client.protocol_version,
            "server_info": client.server_info.model_dump(mode="json") if client.server_info else None,
        }
        if a.mode == "probe":
            call = await self.one(client)
            out.update(ok=call is not None, errors=self.errors)
            return out
        for _ in range(5):
            await self.one(client)
        self.errors.clear()
        self.n_errors = 0
        self.poller.advertised.clear()
        if a.sync:  # let the harness open its measurement window on the measured tasks alone
            print("READY", flush=True)
            await asyncio.to_thread(sys.stdin.readline)
        calls: list[Call | None] = []
        t0 = time.perf_counter()
        if a.mode == "idle":
            for _ in range(a.n):
                calls.append(await self.one(client))
        else:
            todo = iter(range(a.n))

            async def lane() -> None:
                for _ in todo:
                    calls.append(await self.one(client))

            await asyncio.gather(*(lane() for _ in range(a.in_flight)))
        wall = time.perf_counter() - t0
        ok = [c for c in calls if c is not None and c.created is not None and c.done is not None]
        out.update(
            n=len(ok),
            in_flight=a.in_flight if a.mode == "load" else 1,
            wall_s=round(wall, 3),
            tasks_per_s=round(len(ok) / wall, 1) if wall > 0 else None,
            create_ms=summarize([(c.created - c.t0) * 1000.0 for c in ok if c.created], keep=False),
            e2e_ms=summarize([(c.done - c.t0) * 1000.0 for c in ok if c.done]),
            polls_per_task=round(sum(c.polls for c in ok) / len(ok), 2) if ok else None,
            server_poll_interval_ms=sorted(set(self.poller.advertised)),
            errors=self.errors[:5],
            n_errors=self.n_errors,
        )
        return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("mode", choices=["probe", "idle", "load"])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--in-flight", type=int, default=20)
    p.add_argument("--tool", default="noop")
    p.add_argument(
        "--sync",
        action="store_true",
        help="after the warm-up, print READY and wait for a line on stdin before measuring",
    )
    p.add_argument(
        "--poll-ms",
        default="50",
        help="fixed interval between tasks/get polls in ms, or 'server' to honor pollIntervalMs",
    )
    args = p.parse_args()
    if args.poll_ms != "server":
        float(args.poll_ms)  # fail early on a typo
    driver = Driver(args)
    async with driver.client() as client:
        result = await driver.run(client)
    print(json.dumps(result, separators=(",", ":")), flush=True)
    if args.mode == "probe" and not result["ok"]:
        print(json.dumps(result["errors"]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    asyncio.run(main())
