"""Plain arq under the engine-level measurements (runs in its own venv, ``bench/.venvs/arq``).

arq with its own defaults (pickle serializer, ``keep_result=3600``, ``max_jobs=10``) and either its
default poll delay (0.5 s) or 10 ms. The full lifecycle is arq's: the job stays in the queue sorted
set until ``finish_job`` has stored the result, so "unfinished" is ``ZCARD arq:queue``.

  python arq_plain.py pickup|throughput|scaling --redis URL --poll 0.5 [...]
  python arq_plain.py worker --redis URL --poll 0.5 --concurrency 10      (started by the above)
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import redis
from arq import Worker
from arq.connections import ArqRedis, RedisSettings, create_pool
from common import Proc
from enginebench import parser, run

QUEUE = "arq:queue"


async def noop(ctx: dict[str, Any]) -> str:
    return "ok"


async def probe(ctx: dict[str, Any], t: float, key: str) -> str:
    started = time.time()
    await ctx["redis"].rpush(key, f"{t!r} {started!r}")
    return "ok"


async def sleep(ctx: dict[str, Any], seconds: float, key: str = "") -> str:
    if key:
        await ctx["redis"].rpush(key, repr(time.time()))
    await asyncio.sleep(seconds)
    return "slept"


async def _ready(ctx: dict[str, Any]) -> None:
    await ctx["redis"].set(f"bench:ready:arq:{os.getpid()}", "1", ex=600)


def worker_main(url: str, poll: float, concurrency: int) -> None:
    Worker(
        functions=[noop, probe, sleep],
        redis_settings=RedisSettings.from_dsn(url),
        poll_delay=poll,
        max_jobs=concurrency,
        on_startup=_ready,
        log_results=False,
    ).run()


class PlainArq:
    poll_command = "zcard"
    default_concurrency = 10  # arq's max_jobs default

    def __init__(self, url: str, poll: float) -> None:
        self.url = url
        self.poll = poll
        self.name = "arq_default" if poll == 0.5 else f"arq_{round(poll * 1000)}ms"
        self.pool: ArqRedis | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "worker": "arq.Worker",
            "poll_delay_s": self.poll,
            "max_jobs": self.default_concurrency,
            "serializer": "pickle (default)",
            "keep_result_s": 3600,
        }

    def worker(self, index: int, concurrency: int) -> Proc:
        return Proc(
            f"{self.name}-worker-{index}",
            [
                sys.executable,
                __file__,
                "worker",
                "--redis",
                self.url,
                "--poll",
                str(self.poll),
                "--slots",
                str(concurrency),
            ],
        )

    def ready(self, client: redis.Redis, procs: list[Proc]) -> bool:
        return all(client.exists(f"bench:ready:arq:{p.pid}") for p in procs)

    async def open(self) -> None:
        self.pool = await create_pool(RedisSettings.from_dsn(self.url))

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None

    async def enqueue(self, tool: str, **kwargs: Any) -> None:
        assert self.pool is not None
        job = await self.pool.enqueue_job(tool, **kwargs)
        assert job is not None

    async def outstanding(self) -> int:
        assert self.pool is not None
        return int(await self.pool.zcard(QUEUE))


if __name__ == "__main__":
    p = parser()
    p.add_argument("--poll", type=float, default=0.5)
    if sys.argv[1:2] == ["worker"]:
        sys.argv[1] = "pickup"  # reuse the parser; only --redis/--poll/--slots matter here
        a = p.parse_args()
        worker_main(a.redis, a.poll, a.slots)
    else:
        a = p.parse_args()
        run(PlainArq(a.redis, a.poll), a)
