"""A light load generator for MCP Tasks over Streamable HTTP: raw JSON-RPC, no SDK (stdlib only).

  python light_client.py URL load --n 1000 --in-flight 20 [--result-mode block|after-push]
  python light_client.py URL idle --n 100

On 2 shared cores the SDK client's own CPU (pydantic models, anyio streams, httpx, SSE parsing:
about 3.5 ms per task) caps the tasks/s the harness can drive. This generator sends the same
2025-11-25 requests with hand-built JSON over plain asyncio sockets, so what remains is the
server's ceiling:

- one MCP session (``initialize``, ``notifications/initialized``), as the SDK client keeps;
- one HTTP/1.1 keep-alive connection per in-flight slot, each doing its tasks one after the other:
  a task-augmented ``tools/call`` of ``noop``, then ``tasks/result``;
- one ``GET`` SSE stream for the session's notifications (``notifications/tasks/status``).

``--result-mode``: ``block`` calls ``tasks/result`` at once (it blocks until terminal on the
2025-11-25 wire); ``after-push`` first waits for the terminal ``notifications/tasks/status`` (kept
when it beats the ``CreateTaskResult``), polling ``tasks/get`` every 0.5 s without one, then calls
``tasks/result`` (FastMCP 3's ``tasks/result`` does not block). The same as ``mcp_client.py``.

Prints one JSON line (the same keys as ``mcp_client.py``). Five warm-up tasks run first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import summarize

TERMINAL = {"completed", "failed", "cancelled"}
PROTOCOL = "2025-11-25"


class HTTPError(Exception):
    pass


class Connection:
    """One HTTP/1.1 keep-alive connection: one request at a time, response read whole."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()

    def _head(self, method: str, headers: dict[str, str], length: int | None) -> bytes:
        lines = [f"{method} {self.path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    async def read_head(self) -> tuple[int, dict[str, str]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
        return status, headers

    async def chunks(self, headers: dict[str, str]) -> Any:
        """The body, piece by piece (chunked or Content-Length)."""
        assert self.reader is not None
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readuntil(b"\r\n")
                    return
                data = await self.reader.readexactly(size + 2)
                yield data[:-2]
        else:
            length = int(headers.get("content-length", "0"))
            if length:
                yield await self.reader.readexactly(length)

    async def post(self, body: dict[str, Any], headers: dict[str, str]) -> tuple[dict[str, str], Any]:
        """POST one JSON-RPC message; returns (response headers, the JSON-RPC response or None)."""
        assert self.writer is not None
        data = json.dumps(body, separators=(",", ":")).encode()
        self.writer.write(self._head("POST", headers, len(data)) + data)
        status, head = await self.read_head()
        parts = [c async for c in self.chunks(head)]
        if status >= 400:
            raise HTTPError(f"HTTP {status}: {b''.join(parts)[:300]!r}")
        raw = b"".join(parts)
        if not raw:
            return head, None
        if head.get("content-type", "").startswith("text/event-stream"):
            answer = None
            for message in sse_messages(raw):
                if message.get("id") == body.get("id") and ("result" in message or "error" in message):
                    answer = message
            return head, answer
        return head, json.loads(raw)


def sse_messages(raw: bytes) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for event in raw.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = [line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:")]
        if data:
            with contextlib.suppress(ValueError):
                out.append(json.loads(b"\n".join(data)))
    return out


class Session:
    def __init__(self, url: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.path = u.path or "/"
        self.session_id: str | None = None
        self.ids = itertools.count(1)
        self.terminal: dict[str, asyncio.Event] = {}
        self.listener: asyncio.Task[None] | None = None
        self.stream: Connection | None = None

    def headers(self) -> dict[str, str]:
        h = {
            "Content-Type": "application/json",
            "Accept": "application/json, text/event-stream",
            "MCP-Protocol-Version": PROTOCOL,
        }
        if self.session_id:
            h["Mcp-Session-Id"] = self.session_id
        return h

    async def connection(self) -> Connection:
        conn = Connection(self.host, self.port, self.path)
        await conn.open()
        return conn

    async def start(self) -> None:
        conn = await self.connection()
        init = {
            "jsonrpc": "2.0",
            "id": next(self.ids),
            "method": "initialize",
            "params": {
                "protocolVersion": PROTOCOL,
                "capabilities": {"tasks": {"list": {}, "cancel": {}}},
                "clientInfo": {"name": "bench-light", "version": "1"},
            },
        }
        head, answer = await conn.post(init, self.headers())
        if answer is None or "result" not in answer:
            raise RuntimeError(f"initialize failed: {answer}")
        self.session_id = head.get("mcp-session-id")
        await conn.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, self.headers())
        conn.close()
        self.stream = await self.connection()
        self.listener = asyncio.create_task(self._listen(self.stream))

    async def _listen(self, conn: Connection) -> None:
        """The session's GET SSE stream: terminal task-status pushes set the task's event."""
        assert conn.writer is not None
        headers = {k: v for k, v in self.headers().items() if k != "Content-Type"}
        headers["Accept"] = "text/event-stream"
        conn.writer.write(conn._head("GET", headers, None))
        status, head = await conn.read_head()
        if status != 200:
            return
        buffer = b""
        async for chunk in conn.chunks(head):
            buffer += chunk.replace(b"\r\n", b"\n")
            while b"\n\n" in buffer:
                event, buffer = buffer.split(b"\n\n", 1)
                for message in sse_messages(event + b"\n\n"):
                    if message.get("method") == "notifications/tasks/status":
                        params = message.get("params") or {}
                        if params.get("status") in TERMINAL:
                            self.terminal.setdefault(params["taskId"], asyncio.Event()).set()

    async def call(self, conn: Connection, method: str, params: dict[str, Any]) -> dict[str, Any]:
        body = {"jsonrpc": "2.0", "id": next(self.ids), "method": method, "params": params}
        _, answer = await conn.post(body, self.headers())
        if answer is None:
            raise RuntimeError(f"{method}: no response")
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer["result"]

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.cancel()
        if self.stream is not None:
            self.stream.close()
        if self.session_id:
            conn = await self.connection()
            assert conn.writer is not None
            conn.writer.write(conn._head("DELETE", self.headers(), 0))
            try:
                async with asyncio.timeout(2):
                    _, head = await conn.read_head()
                    _ = [c async for c in conn.chunks(head)]
            except (TimeoutError, OSError, asyncio.IncompleteReadError):
                pass
            conn.close()


class Driver:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.errors: list[str] = []
        self.hung: list[str] = []

    async def one(self, s: Session, conn: Connection) -> tuple[float, float] | None:
        t0 = time.perf_counter()
        created = await s.call(conn, "tools/call", {"name": "noop", "arguments": {}, "task": {"ttl": 60000}})
        t1 = time.perf_counter()
        task_id = created["task"]["taskId"]
        event = s.terminal.setdefault(task_id, asyncio.Event())
        if self.args.result_mode == "after-push":
            while not event.is_set():
                try:
                    async with asyncio.timeout(0.5):
                        await event.wait()
                except TimeoutError:
                    got = await s.call(conn, "tasks/get", {"taskId": task_id})
                    if got.get("status") in TERMINAL:
                        break
        try:
            async with asyncio.timeout(15):
                result = await s.call(conn, "tasks/result", {"taskId": task_id})
        except TimeoutError:
            self.hung.append(task_id)
            return None
        finally:
            s.terminal.pop(task_id, None)
        texts = [c.get("text") for c in result.get("content", []) if c.get("type") == "text"]
        if result.get("isError") or texts != ["ok"]:
            self.errors.append(f"{task_id}: {json.dumps(result)[:200]}")
        return (t1 - t0) * 1000.0, (time.perf_counter() - t0) * 1000.0

    async def run(self) -> dict[str, Any]:
        a = self.args
        s = Session(a.url)
        await s.start()
        slots = a.in_flight if a.mode == "load" else 1
        conns = [await s.connection() for _ in range(slots)]
        try:
            for _ in range(5):
                await self.one(s, conns[0])
            if a.ready:
                print("READY", flush=True)
                sys.stdin.readline()
            samples: list[tuple[float, float] | None] = []
            todo = iter(range(a.n))
            t0 = time.perf_counter()

            async def lane(conn: Connection) -> None:
                for _ in todo:
                    samples.append(await self.one(s, conn))

            await asyncio.gather(*(lane(c) for c in conns))
            wall = time.perf_counter() - t0
        finally:
            for c in conns:
                c.close()
            await s.close()
        ok = [x for x in samples if x is not None]
        return {
            "mode": a.mode,
            "result_mode": a.result_mode,
            "client": "light (raw JSON-RPC over HTTP/1.1, no SDK)",
            "n": len(ok),
            "wall_s": round(wall, 3),
            "tasks_per_s": round(len(ok) / wall, 1) if wall > 0 else None,
            "create_ms": summarize([c for c, _ in ok], keep=False),
            "e2e_ms": summarize([e for _, e in ok]),
            "hung": self.hung,
            "errors": self.errors[:5],
            "n_errors": len(self.errors),
        }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("mode", choices=["idle", "load"])
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--in-flight", type=int, default=20)
    p.add_argument("--result-mode", choices=["block", "after-push"], default="block")
    p.add_argument("--ready", action="store_true", help="print READY after the warm-up, wait for a line")
    args = p.parse_args()
    result = asyncio.run(Driver(args).run())
    print(json.dumps(result, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()
