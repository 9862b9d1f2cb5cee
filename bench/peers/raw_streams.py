"""The floor of any Redis Streams job engine on this machine: a bare XADD -> XREADGROUP hand-off.

No engine at all: the producer sends ``XADD`` (one round trip); a worker process blocked on
``XREADGROUP ... BLOCK`` with redis-py's asyncio client takes the entry and stamps the time (then
acknowledges it). Its pickup latency is what a Redis round trip plus waking an idle process costs
here, which no engine built on Redis Streams can beat; its throughput row is the ceiling of one
Python consumer with one round trip per job. Used as the pickup baseline of issue 11.

  python raw_streams.py pickup|throughput --redis URL [...]
  python raw_streams.py worker --redis URL          (started by the above)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import redis
import redis.asyncio as aioredis
from common import Proc
from enginebench import parser, run

STREAM = "raw:q"
GROUP = "g"


async def worker_main(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    try:
        await client.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
    except redis.ResponseError as e:
        if "BUSYGROUP" not in str(e):
            raise
    await client.set(f"bench:ready:raw:{os.getpid()}", "1", ex=600)
    consumer = f"c{os.getpid()}"
    while True:
        reply: Any = await client.xreadgroup(GROUP, consumer, {STREAM: ">"}, count=10, block=5000)
        for _, entries in reply or []:
            for eid, fields in entries:
                started = time.time()
                key = fields.get(b"key")
                if key:
                    await client.rpush(key, f"{float(fields[b't'])!r} {started!r}")
                await client.xack(STREAM, GROUP, eid)
                await client.xdel(STREAM, eid)


class RawStreams:
    name = "raw_streams"
    poll_command = "xlen"
    default_concurrency = 10

    def __init__(self, url: str) -> None:
        self.url = url
        self.client: aioredis.Redis | None = None

    def describe(self) -> dict[str, Any]:
        return {"worker": "XREADGROUP BLOCK loop (redis-py asyncio), no engine", "slots": 1}

    def worker(self, index: int, concurrency: int) -> Proc:
        return Proc(f"raw-worker-{index}", [sys.executable, __file__, "worker", "--redis", self.url])

    def ready(self, client: redis.Redis, procs: list[Proc]) -> bool:
        return all(client.exists(f"bench:ready:raw:{p.pid}") for p in procs)

    async def open(self) -> None:
        self.client = aioredis.Redis.from_url(self.url)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()
            self.client = None

    async def enqueue(self, tool: str, **kwargs: Any) -> None:
        assert self.client is not None
        fields = {"tool": tool, "t": repr(kwargs.get("t", time.time())), "key": kwargs.get("key", "")}
        await self.client.xadd(STREAM, fields)  # type: ignore[arg-type]

    async def outstanding(self) -> int:
        assert self.client is not None
        return int(await self.client.xlen(STREAM))


if __name__ == "__main__":
    p = parser()
    if sys.argv[1:2] == ["worker"]:
        sys.argv[1] = "pickup"
        a = p.parse_args()
        asyncio.run(worker_main(a.redis))
    else:
        a = p.parse_args()
        run(RawStreams(a.redis), a)
