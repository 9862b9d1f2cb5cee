"""The worker's metrics endpoint: a small HTTP server inside the worker's event loop.

``mcp-tasks-redis worker --metrics-port N`` (``MCP_TASKS_METRICS_PORT``) serves the process's
metrics at ``http://HOST:N/metrics``. It runs on the worker's own event loop, not in a thread, so
a scrape can read the queue depths from Redis with the engine's async client
(engine/telemetry/queues.py). It answers ``GET``/``HEAD /metrics`` (and ``/``), one request per
connection, and nothing else; servers serve ``/metrics`` on their MCP HTTP port instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mcp_tasks_redis.engine.telemetry.metrics import Metrics

log = logging.getLogger("mcp_tasks_redis.metrics")

MAX_HEADER_BYTES = 16_384
READ_TIMEOUT_S = 10.0


async def serve_metrics(metrics: Metrics, host: str, port: int) -> asyncio.Server:
    """Start serving ``metrics`` on ``host:port`` (OSError if the port is taken); close the
    returned server to stop."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
            await _answer(metrics, head, writer)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a client that went away or sent no request: nothing to answer
        except Exception:
            log.exception("metrics endpoint: request failed")
            with contextlib.suppress(ConnectionError):
                await _write(writer, 500, "text/plain; charset=utf-8", b"metrics unavailable\n")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    return await asyncio.start_server(handle, host, port, limit=MAX_HEADER_BYTES)


async def _answer(metrics: Metrics, head: bytes, writer: asyncio.StreamWriter) -> None:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[0] not in ("GET", "HEAD"):
        await _write(writer, 405, "text/plain; charset=utf-8", b"only GET /metrics\n")
        return
    path = parts[1].split("?", 1)[0]
    if path not in ("/metrics", "/"):
        await _write(writer, 404, "text/plain; charset=utf-8", b"not found: try /metrics\n")
        return
    accept = ""
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "accept":
            accept = value.strip()
    body, content_type = await metrics.render(accept)
    await _write(writer, 200, content_type, body, head_only=parts[0] == "HEAD")


REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 500: "Internal Server Error"}


async def _write(
    writer: asyncio.StreamWriter, status: int, content_type: str, body: bytes, *, head_only: bool = False
) -> None:
    header = (
        f"HTTP/1.1 {status} {REASONS[status]}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(header.encode("latin-1") + (b"" if head_only else body))
    await writer.drain()
