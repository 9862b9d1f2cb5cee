"""Serialization audit: nothing the system writes to Redis is pickled.

A full run on real processes - tasks that complete with progress, fail, are cancelled, ask the
user (elicitation: the request queued, the reply stored), and one whose worker is SIGKILLed and
that is re-run elsewhere - with the namespace audited at four moments (input pending, reply
stored while the worker is frozen, just after the crash, and at the end). Each audit walks EVERY
key of the namespace, reads every value by its type (string, hash
field names and values, list items, set members, stream entry ids, field names and values, zset
members) and checks that none is a pickle (no protocol header ``\\x80`` + protocol byte, nor any
byte string that parses as a whole pickle stream; parsed with pickletools, never unpickled), that
everything is UTF-8 text, and that everything meant to be JSON parses as JSON.

    .venv/bin/pytest tests/chaos/test_serialization_audit.py -s
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pickletools
import signal
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

pytest.register_assert_rewrite("tests.integration.procs")

from mcp.shared.exceptions import McpError  # noqa: E402
from mcp.types import CallToolResult, ElicitRequestParams, ElicitResult  # noqa: E402

from mcp_tasks_redis.engine.engine import TaskEngine  # noqa: E402
from tests.integration.procs import (  # noqa: E402
    Notifications,
    ProductProcess,
    Stack,
    http_session,
    started_on,
)

pytest_plugins = ["tests.integration.procs"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(120),
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]

LEASE_MS = 2000
# Task hash fields that hold JSON; every other field is plain text (ids, numbers, statuses, messages).
# (engine/record.py); input requests and answers are the fields named ``in:{key}`` and ``ans:{key}``.
JSON_TASK_FIELDS = {b"job", b"res", b"err", b"p", b"use"}
JSON_FIELD_PREFIXES = (b"in:", b"ans:")
# Fields of a job's stream entry that hold JSON (engine/streams.py: Delivery.parse).
JSON_ENTRY_FIELDS = {b"job"}


def is_pickle(value: bytes) -> bool:
    """A pickle of protocol 2+ starts with PROTO (0x80, protocol); protocols 0 and 1 have no header,
    so any byte string that parses, opcode by opcode, as one whole pickle ending in STOP counts too."""
    if len(value) >= 2 and value[0] == 0x80 and 1 <= value[1] <= 5:
        return True
    if not value.endswith(b"."):
        return False
    try:
        ops = list(pickletools.genops(value))
    except Exception:
        return False
    return len(ops) >= 2 and ops[-1][0].name == "STOP" and ops[-1][2] == len(value) - 1


@dataclass
class Audit:
    values: Counter[str] = field(default_factory=Counter[str])
    keys: Counter[str] = field(default_factory=Counter[str])
    problems: list[str] = field(default_factory=list[str])

    def check(self, key: str, where: str, value: bytes, *, json_expected: bool) -> None:
        self.values["json" if json_expected else "text"] += 1
        if is_pickle(value):
            self.problems.append(f"{key} {where}: pickled {value[:40]!r}")
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            self.problems.append(f"{key} {where}: not UTF-8 text {value[:40]!r}")
            return
        if json_expected:
            try:
                json.loads(text)
            except ValueError:
                self.problems.append(f"{key} {where}: not JSON {value[:80]!r}")


def kind_of(key: str, namespace: str) -> str:
    """A name for the family of a key (for the figures and the coverage check): the key with its
    namespace, shard tag and ids left out (engine/keys.py)."""
    rest = key[len(namespace) + 1 :]
    if rest.startswith("{"):
        rest = rest.partition("}:")[2]
        parts = rest.split(":")
        if parts[0] == "t":
            return "task" if len(parts) == 2 else f"task {parts[-1]}"
        if parts[0] == "ix":
            return f"index:{parts[1]}"
        if parts[0] == "quota":
            return "quota" if len(parts) == 2 else f"quota {parts[-1]}"
        return ":".join(parts)
    return rest.split(":")[0]


def json_field(family: str, name: bytes) -> bool:
    if family == "task":
        return name in JSON_TASK_FIELDS or name.startswith(JSON_FIELD_PREFIXES)
    return False


async def audit(engine: TaskEngine, namespace: str, result: Audit) -> None:
    redis = engine.redis
    keys = [k.decode() async for k in redis.scan_iter(match=f"{namespace}:*", count=1000)]
    for key in keys:
        kind = (await redis.type(key)).decode()
        family = kind_of(key, namespace)
        result.keys[f"{family} ({kind})"] += 1
        result.check(key, "name", key.encode(), json_expected=False)
        if kind == "string":
            value = await redis.get(key)
            if value is not None:
                result.check(key, "value", value, json_expected=family == "worker")
        elif kind == "hash":
            for name, value in (await redis.hgetall(key)).items():
                result.check(key, "field name", name, json_expected=False)
                result.check(
                    key,
                    f"field {name.decode(errors='replace')}",
                    value,
                    json_expected=json_field(family, name),
                )
        elif kind == "list":
            for item in await redis.lrange(key, 0, -1):
                result.check(key, "item", item, json_expected=family == "task inbox")
        elif kind == "set":
            for member in await redis.smembers(key):
                result.check(key, "member", member, json_expected=False)
        elif kind == "zset":
            for member, _ in await redis.zrange(key, 0, -1, withscores=True):
                result.check(key, "member", member, json_expected=False)
        elif kind == "stream":
            for entry_id, fields in await redis.xrange(key):
                result.check(key, "entry id", entry_id, json_expected=False)
                for name, value in fields.items():
                    result.check(key, "entry field name", name, json_expected=False)
                    result.check(
                        key,
                        f"entry {name.decode(errors='replace')}",
                        value,
                        json_expected=name in JSON_ENTRY_FIELDS,
                    )
        elif kind != "none":  # gone between SCAN and TYPE (expired, finished)
            result.problems.append(f"{key}: unexpected type {kind}")


async def test_nothing_written_is_pickled(stack: Stack, engine: TaskEngine) -> None:
    stack.configure(lease_ms=LEASE_MS, poll_interval_ms=250)
    server, *workers = await asyncio.gather(
        stack.start_server(), stack.start_worker("worker-1"), stack.start_worker("worker-2")
    )
    namespace = stack.namespace
    seen = Audit()
    ids: list[str] = []
    moments: list[str] = []

    async def take(moment: str) -> None:
        await audit(engine, namespace, seen)
        moments.append(moment)

    asked_user, may_answer = asyncio.Event(), asyncio.Event()

    async def answer(_: Any, params: ElicitRequestParams) -> ElicitResult:
        # The request reaches the client on its session's stream as soon as the tool asks; the
        # answer is held back until the audits below have seen the request pending. (While this
        # callback runs the client session handles no other message: no MCP call until then.)
        asked_user.set()
        await may_answer.wait()
        return ElicitResult(action="accept", content={"answer": "forty-two \u2603 \U0001f642"})

    notes = Notifications()
    async with http_session(server.url, message_handler=notes, elicitation_callback=answer) as session:

        async def create(tool: str, arguments: dict[str, Any], **meta: Any) -> str:
            created = await session.experimental.call_tool_as_task(tool, arguments, meta=meta or None)
            ids.append(created.task.taskId)
            return created.task.taskId

        done = await create("slow_compute", {"seconds": 0.5}, progressToken="p-\u00e9")
        failed = await create("fail", {"message": "boom \u2620"})
        cancelled = await create("slow_compute", {"seconds": 30})
        await started_on(workers, cancelled)
        await session.experimental.cancel_task(cancelled)
        asked = await create("ask_user", {"question": "What is the answer? \u00bf"})

        # 1. An input request is pending: stored on the task.
        await asyncio.wait_for(asked_user.wait(), 10)
        await take("input pending")

        # 2. The client's reply is stored while the asking worker is frozen and cannot take it.
        asker, _ = await started_on(workers, asked)
        asker.send(signal.SIGSTOP)
        try:
            may_answer.set()
            await wait_for_reply(engine, asked)
            await take("reply stored")
        finally:
            asker.send(signal.SIGCONT)
        fetch = session.experimental.get_task_result(asked, CallToolResult)
        answer_result = await asyncio.wait_for(fetch, 20)
        assert not answer_result.isError

        # 3. A worker dies mid-task: its job stays pending in the stream under the dead consumer.
        crashed = await create("slow_compute", {"seconds": 3}, progressToken=7)
        victim, _ = await started_on(workers, crashed)
        # Mid-run: the tool has reported progress, so the record holds some when the worker dies.
        await notes.wait(lambda: notes.progress(crashed), 10, "progress of the task to crash")
        victim.kill()
        await take("worker crashed")
        survivors: list[ProductProcess] = [w for w in workers if w is not victim]
        await started_on(survivors, crashed, attempt=2, timeout_s=LEASE_MS / 1000 + 5)

        for task_id in ids:
            with contextlib.suppress(McpError):
                await asyncio.wait_for(session.experimental.get_task_result(task_id, CallToolResult), 20)
        statuses = {t: (await session.experimental.get_task(t)).status for t in ids}
        assert statuses == {
            done: "completed",
            failed: "failed",
            cancelled: "cancelled",
            asked: "completed",
            crashed: "completed",
        }, statuses
    # 4. The end of the run.
    await take("end")

    print(
        f"\nserialization audit at {len(moments)} moments ({', '.join(moments)}): "
        f"{sum(seen.keys.values())} keys read, {seen.values['json']} JSON values, "
        f"{seen.values['text']} text values, {len(seen.problems)} problems"
    )
    for family, count in sorted(seen.keys.items()):
        print(f"  {family}: {count}")
    assert not seen.problems, "\n".join(seen.problems[:20])
    families = {f.split(" (")[0] for f in seen.keys}
    expected = {"task", "index:s", "q", "failed", "workers", "worker"}
    assert expected <= families, f"the audit did not see {sorted(expected - families)}"


async def wait_for_reply(engine: TaskEngine, task_id: str) -> None:
    """Until the client's answer is stored on the task (the answered event says so)."""
    record = await engine.wait_until(task_id, lambda r: r is None or bool(r.answers), timeout=10)
    assert record is not None, "the task vanished"
    assert record.answers, "the reply never reached the task"


def test_the_pickle_detector_detects_pickles() -> None:
    import pickle

    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        for value in ({"a": 1}, "text", [1, 2.5, None], ("t", b"b")):
            assert is_pickle(pickle.dumps(value, protocol=protocol)), (protocol, value)
    for text in (
        b"Completed",
        b'{"a":1}',
        b"working",
        b"1700000000000",
        b"Task abandoned.",
        b".",
        b"",
        "Hello, \u00e9.".encode(),
        b"1-0",
        b"host:12:abcdef",
    ):
        assert not is_pickle(text), text
