"""Docket (pydocket) under the engine-level measurements (runs in bench/.venvs/docket).

Docket with its own defaults: ``Docket(name, url)`` (execution_ttl 15 min, results stored) and
``Worker(docket)`` (concurrency 10, minimum_check_interval 250 ms, blocking XREADGROUP). A task is
finished when its terminal script has run, which also XACKs and XDELs its stream entry, so
"unfinished" is ``XLEN {docket}:stream`` (immediate tasks never enter the future-work queue).

  python docket_peer.py pickup|throughput|scaling --redis URL [...]
  python docket_peer.py worker --redis URL --slots 10        (started by the above)
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

import redis
from common import Proc
from docket import Docket, Worker
from enginebench import parser, run

NAME = "bench-docket"


async def noop() -> str:
    return "ok"


async def probe(t: float, key: str) -> str:
    started = time.time()
    await _client().rpush(key, f"{t!r} {started!r}")
    return "ok"


async def sleep(seconds: float, key: str = "") -> str:
    if key:
        await _client().rpush(key, repr(time.time()))
    await asyncio.sleep(seconds)
    return "slept"


TASKS = {"noop": noop, "probe": probe, "sleep": sleep}
_URL = ""
_CLIENT: Any = None


def _client() -> Any:
    global _CLIENT
    if _CLIENT is None:
        import redis.asyncio as aioredis

        _CLIENT = aioredis.Redis.from_url(_URL)
    return _CLIENT


async def worker_main(url: str, concurrency: int) -> None:
    global _URL
    _URL = url
    async with Docket(name=NAME, url=url) as docket:
        for fn in TASKS.values():
            docket.register(fn)
        async with Worker(docket, concurrency=concurrency) as worker:
            await worker.run_forever()


class DocketPeer:
    name = "docket"
    poll_command = "xlen"
    default_concurrency = 10  # Worker's default

    def __init__(self, url: str) -> None:
        self.url = url
        self.docket: Docket | None = None

    def describe(self) -> dict[str, Any]:
        import importlib.metadata as md

        return {
            "worker": "docket.Worker (defaults)",
            "pydocket": md.version("pydocket"),
            "redis_py": md.version("redis"),
            "concurrency": self.default_concurrency,
            "minimum_check_interval_ms": 250,
            "execution_ttl_s": 900,
            "serializer": "cloudpickle",
        }

    def worker(self, index: int, concurrency: int) -> Proc:
        return Proc(
            f"docket-worker-{index}",
            [sys.executable, __file__, "worker", "--redis", self.url, "--slots", str(concurrency)],
        )

    def ready(self, client: redis.Redis, procs: list[Proc]) -> bool:
        return client.zcard(f"{NAME}:workers") >= len(procs)

    async def open(self) -> None:
        self.docket = Docket(name=NAME, url=self.url)
        await self.docket.__aenter__()
        for fn in TASKS.values():
            self.docket.register(fn)

    async def close(self) -> None:
        if self.docket is not None:
            await self.docket.__aexit__(None, None, None)
            self.docket = None

    async def enqueue(self, tool: str, **kwargs: Any) -> None:
        assert self.docket is not None
        await self.docket.add(TASKS[tool])(**kwargs)

    async def outstanding(self) -> int:
        assert self.docket is not None
        async with self.docket.redis() as r:
            return int(await r.xlen(self.docket.stream_key))


if __name__ == "__main__":
    p = parser()
    if sys.argv[1:2] == ["worker"]:
        sys.argv[1] = "pickup"
        a = p.parse_args()
        asyncio.run(worker_main(a.redis, a.slots))
    else:
        a = p.parse_args()
        run(DocketPeer(a.redis), a)
