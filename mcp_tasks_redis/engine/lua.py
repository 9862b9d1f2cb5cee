"""A small typed wrapper over the Lua scripts kept in ``engine/scripts/*.lua``.

Each script is loaded from its file once, sent with EVALSHA, and re-sent with EVAL only when the
server has lost it (a restart, SCRIPT FLUSH): one round trip in the normal case.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources
from typing import Any

from redis.exceptions import NoScriptError

Arg = str | int | float | bytes


@cache
def _source(name: str) -> str:
    folder = resources.files("mcp_tasks_redis.engine").joinpath("scripts")
    return (
        folder.joinpath("_prelude.lua").read_text("utf-8")
        + "\n"
        + folder.joinpath(f"{name}.lua").read_text("utf-8")
    )


class Script:
    """One Lua script, called as ``await script(redis, keys=[...], args=[...])``."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.source = _source(name)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()

    async def __call__(self, client: Any, keys: list[str], args: list[Arg]) -> Any:
        """``client``: a ``Redis`` or a ``RedisCluster`` (which routes by the first key's slot)."""
        try:
            return await client.evalsha(self.sha, len(keys), *keys, *args)  # type: ignore[misc]
        except NoScriptError:
            return await client.eval(self.source, len(keys), *keys, *args)  # type: ignore[misc]


class Scripts:
    """Every script of the engine, loaded once per process."""

    def __init__(self) -> None:
        self.create = Script("create")
        self.finish = Script("finish")
        self.progress = Script("progress")
        self.cancel = Script("cancel")
        self.update = Script("update")
        self.request_input = Script("request_input")
        self.answer_input = Script("answer_input")
        self.requeue = Script("requeue")
        self.renew = Script("renew")
        self.expire = Script("expire")
        self.release_due = Script("release_due")
        self.admit = Script("admit")
        self.release = Script("release")
        self.delete = Script("delete")
        self.claim = Script("claim")


@cache
def scripts() -> Scripts:
    return Scripts()
