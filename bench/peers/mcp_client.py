"""The one MCP client every server is driven with: `mcp` 1.30's ClientSession over Streamable HTTP.

  python mcp_client.py URL idle --n 50
  python mcp_client.py URL load --n 300 --in-flight 20
  python mcp_client.py URL progress --tasks 2 --steps 50 --interval 0.02 [--progress-token]

Each task is a task-augmented ``tools/call`` of the no-op tool, then its result is fetched with
``tasks/result``. ``--result-mode``:
- ``block`` (the 2025-11-25 spec: tasks/result blocks until the task is terminal): call it at once;
- ``after-push``: for a server whose tasks/result does not block (FastMCP 3 answers "Task not
  completed yet"), wait for the terminal ``notifications/tasks/status`` push (kept even when it
  beats the CreateTaskResult), with a ``tasks/get`` poll every 0.5 s as fallback, then call it.

Progress: the tool reports progress whose message is ``t=<wall clock>``; the client takes the
first arrival of each message, from ``notifications/progress`` (message) or
``notifications/tasks/status`` (statusMessage), and records arrival - t.

Prints one JSON line. Five warm-up tasks run before every measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import warnings
from typing import Any

import mcp.types as T
from common import summarize
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

warnings.simplefilter("ignore", DeprecationWarning)
TERMINAL = {"completed", "failed", "cancelled"}
RESULT_TIMEOUT_S = 15.0


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.terminal: dict[str, asyncio.Event] = {}
        self.progress_seen: set[str] = set()
        self.progress_ms: list[float] = []
        self.hung: list[str] = []
        self.errors: list[str] = []

    def _event(self, task_id: str) -> asyncio.Event:
        return self.terminal.setdefault(task_id, asyncio.Event())

    async def on_message(self, message: Any) -> None:
        now = time.time()
        if not isinstance(message, T.ServerNotification):
            return
        root = message.root
        text: str | None = None
        if isinstance(root, T.TaskStatusNotification):
            if root.params.status in TERMINAL:
                self._event(root.params.taskId).set()
            text = root.params.statusMessage
        elif isinstance(root, T.ProgressNotification):
            text = root.params.message
        if text and text.startswith("t=") and text not in self.progress_seen:
            self.progress_seen.add(text)
            self.progress_ms.append((now - float(text[2:])) * 1000.0)

    async def one(
        self, session: ClientSession, tool: str, arguments: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> tuple[float, float] | None:
        t0 = time.perf_counter()
        created = await session.experimental.call_tool_as_task(tool, arguments, meta=meta)
        t1 = time.perf_counter()
        task_id = created.task.taskId
        event = self._event(task_id)
        if self.args.result_mode == "after-push":
            while not event.is_set():
                try:
                    await asyncio.wait_for(event.wait(), 0.5)
                except TimeoutError:
                    if (await session.experimental.get_task(task_id)).status in TERMINAL:
                        break
        try:
            result = await asyncio.wait_for(
                session.experimental.get_task_result(task_id, T.CallToolResult), RESULT_TIMEOUT_S
            )
        except TimeoutError:
            status = (await session.experimental.get_task(task_id)).status
            self.hung.append(status)  # tasks/result never answered
            return None
        finally:
            self.terminal.pop(task_id, None)
        texts = [c.text for c in result.content if isinstance(c, T.TextContent)]
        if result.isError or texts != ["ok"]:
            self.errors.append(f"{task_id}: {result.model_dump_json()[:200]}")
        return (t1 - t0) * 1000.0, (time.perf_counter() - t0) * 1000.0

    async def run(self, session: ClientSession) -> dict[str, Any]:
        a = self.args
        for _ in range(5):
            await self.one(session, "noop", {})
        out: dict[str, Any] = {"mode": a.mode, "result_mode": a.result_mode}
        t0 = time.perf_counter()
        if a.mode == "idle":
            samples = [await self.one(session, "noop", {}) for _ in range(a.n)]
        elif a.mode == "load":
            samples = []
            todo = iter(range(a.n))

            async def lane() -> None:
                for _ in todo:
                    samples.append(await self.one(session, "noop", {}))

            await asyncio.gather(*(lane() for _ in range(a.in_flight)))
        else:
            samples = []
            self.progress_ms.clear()
            for i in range(a.tasks):
                meta = {"progressToken": f"bench-{i}"} if a.progress_token else None
                samples.append(
                    await self.one(
                        session, "progress_probe", {"steps": a.steps, "interval": a.interval}, meta
                    )
                )
            out["progress_ms"] = summarize(self.progress_ms)
            out["expected_updates"] = a.tasks * a.steps
        wall = time.perf_counter() - t0
        ok = [s for s in samples if s is not None]
        out.update(
            n=len(ok),
            wall_s=round(wall, 3),
            tasks_per_s=round(len(ok) / wall, 1) if wall > 0 else None,
            create_ms=summarize([c for c, _ in ok], keep=False),
            e2e_ms=summarize([e for _, e in ok]),
            hung=self.hung,
            errors=self.errors[:5],
            n_errors=len(self.errors),
        )
        return out


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("mode", choices=["idle", "load", "progress"])
    p.add_argument("--n", type=int, default=50)
    p.add_argument("--in-flight", type=int, default=20)
    p.add_argument("--tasks", type=int, default=2)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--interval", type=float, default=0.02)
    p.add_argument("--progress-token", action="store_true")
    p.add_argument("--result-mode", choices=["block", "after-push"], default="block")
    args = p.parse_args()
    driver = Driver(args)
    async with (
        streamable_http_client(args.url) as (read, write, _),
        ClientSession(read, write, message_handler=driver.on_message) as session,
    ):
        await session.initialize()
        result = await driver.run(session)
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
