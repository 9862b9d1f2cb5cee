"""Which job a worker takes next: priority levels without starvation, in few round trips.

Each shard has a dispatch stream per priority level (high, normal, low). The rule:

- A worker fills a free slot from the highest level that has a job waiting, except that of every
  four jobs it takes, the fourth comes from the lower levels when they have any (normal before
  low), and of every sixteen, the sixteenth from low first. Under a steady flow of high-priority
  work, normal still gets a quarter of the worker's pickups and low a sixteenth: no level starves,
  and a job waits at most sixteen pickups per slot behind higher levels.
- While only one level has work (the usual case: every task normal), a pickup is one blocking
  ``XREADGROUP`` over the three streams. Only when jobs wait at several levels does the worker
  read level by level, without blocking, in the order above.
- One read may return jobs of several levels at once (Redis applies its COUNT per stream). The
  worker takes the best of them now and keeps the rest, which are already its own, for its next
  free slots; a job of a higher level found meanwhile still goes first.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from mcp_tasks_redis.engine.keys import Shard
from mcp_tasks_redis.engine.streams import Delivery, StreamDispatch

HIGH, NORMAL, LOW = 0, 1, 2


class Slots:
    """The worker's free task slots, taken by the readers and given back by finished tasks."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._changed = asyncio.Event()

    async def take(self, most: int) -> int:
        while self.free == 0:
            self._changed.clear()
            await self._changed.wait()
        taken = min(self.free, most)
        self.free -= taken
        return taken

    def take_now(self, most: int) -> int:
        """Up to ``most`` slots, as many as are free now (maybe none)."""
        taken = min(self.free, most)
        self.free -= taken
        return taken

    async def until_free(self) -> None:
        """Until at least one slot is free (taking none)."""
        while self.free == 0:
            self._changed.clear()
            await self._changed.wait()

    def give(self, count: int = 1) -> None:
        self.free += count
        self._changed.set()

    def forget_changes(self) -> None:
        self._changed.clear()

    async def changed(self) -> None:
        """Until the next `give` (after `forget_changes`)."""
        await self._changed.wait()


def pick_order(pick: int) -> tuple[int, int, int]:
    """The levels to try, in order, for the ``pick``-th job a worker takes from a shard."""
    if pick % 16 == 15:
        return (LOW, NORMAL, HIGH)
    if pick % 4 == 3:
        return (NORMAL, LOW, HIGH)
    return (HIGH, NORMAL, LOW)


@dataclass
class Picker:
    """One shard's pickups for one worker."""

    dispatch: StreamDispatch
    shard: Shard
    block_ms: int | None
    picks: int = 0
    mixed: bool = False  # jobs were seen at more than one level, or below normal
    kept: list[Delivery] = field(default_factory=list[Delivery])

    async def take(self, count: int) -> list[Delivery]:
        """Up to ``count`` jobs (at least one, unless a non-blocking read found none)."""
        if self.mixed or self.kept:
            taken = await self._by_level(count)
            if taken:
                return taken
        got = await self.dispatch.read(self.shard, count, self.block_ms)
        self.mixed = any(d.level != NORMAL for d in got)
        return self._keep_rest(got, count)

    async def _by_level(self, count: int) -> list[Delivery]:
        taken: list[Delivery] = []
        seen_other = False
        while len(taken) < count:
            order = pick_order(self.picks)
            found: list[Delivery] = []
            for level in order:
                found = self._kept_at(level) or await self._read_one_level(level)
                if found:
                    seen_other |= level != NORMAL
                    break
            if not found:
                break
            taken += found
            self.picks += 1
        self.mixed = seen_other or bool(self.kept)
        return taken

    def _kept_at(self, level: int) -> list[Delivery]:
        found = [d for d in self.kept if d.level == level][:1]
        for d in found:
            self.kept.remove(d)
        return found

    async def _read_one_level(self, level: int) -> list[Delivery]:
        # One job per read while levels are mixed: each pickup follows the order of its turn.
        stream = self.shard.streams[level]
        return await self.dispatch.read(self.shard, 1, None, streams=(stream,))

    def forget(self, entry_ids: set[str]) -> list[Delivery]:
        """Drop kept jobs this worker no longer holds (cancelled, taken over); returns them."""
        gone = [d for d in self.kept if d.entry_id in entry_ids]
        self.kept = [d for d in self.kept if d.entry_id not in entry_ids]
        return gone

    def _keep_rest(self, got: list[Delivery], count: int) -> list[Delivery]:
        got.sort(key=lambda d: d.level)
        self.kept += got[count:]
        if len(got) > count:
            self.mixed = True
        return got[:count]
