"""The known workload of the observability tests, and how to read what the processes exposed.

`app` is served and run by real processes (``--app tests.observability.workload:app``). `WORKLOAD`
is what a test asks for, and `expected_worker_series` what a worker's ``/metrics`` must say after
running it: exact counts, the same on both wires. `Scrape` fetches a ``/metrics`` page and parses
it with prometheus-client's own parser; `Spans` reads the JSON lines a process exported
(``MCP_TASKS_TRACES=jsonl:PATH``).
"""

from __future__ import annotations

import asyncio
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from mcp_tasks_redis.engine.policy import Retry
from mcp_tasks_redis.engine.registry import ToolRegistry

app = ToolRegistry("observability")
_failed_once: set[str] = set()


@app.tool
async def ok(n: int) -> str:
    """Answer at once."""
    return f"ok {n}"


@app.tool
def crunch(n: int) -> int:
    """A sync tool that uses CPU (its thread's CPU time is measured)."""
    return sum(i * i for i in range(n))


@app.tool
async def broken() -> str:
    """A tool error: the result has isError true."""
    raise ValueError("broken on purpose")


@app.tool(retry=Retry(attempts=2, on=(ConnectionError,), backoff_s=0, jitter=0))
async def flaky(key: str) -> str:
    """Fails its first run (in this process) with a retryable error, succeeds the second."""
    if key not in _failed_once:
        _failed_once.add(key)
        raise ConnectionError("first run refused")
    return f"{key} on the second run"


@app.tool(timeout_s=0.3)
async def hang() -> str:
    """Never answers in time: cancelled at its 0.3 s timeout."""
    await asyncio.sleep(60)
    return "never"


@app.tool
async def sleepy() -> str:
    """Runs long enough to be cancelled."""
    await asyncio.sleep(60)
    return "never"


TOOLS = ("ok", "crunch", "broken", "flaky", "hang", "sleepy")

WORKLOAD: list[tuple[str, dict[str, Any], str]] = [
    ("ok", {"n": 1}, "normal"),
    ("ok", {"n": 2}, "normal"),
    ("ok", {"n": 3}, "normal"),
    ("ok", {"n": 4}, "low"),
    ("crunch", {"n": 300_000}, "normal"),
    ("broken", {}, "normal"),
    ("broken", {}, "normal"),
    ("flaky", {"key": "k1"}, "normal"),
    ("hang", {}, "normal"),
    ("sleepy", {}, "normal"),  # cancelled while it waits for a worker
]
"""(tool, arguments, priority asked for in ``_meta``) of each task call, in order."""

PRIORITY_META = "dev.mcp-tasks-redis/priority"

RUNS = {"ok": 4, "crunch": 1, "broken": 2, "flaky": 2, "hang": 1}
"""Runs each tool gets on the worker (flaky: a retry; sleepy: cancelled before any)."""

OUTCOMES = {
    ("ok", "completed"): 4,
    ("crunch", "completed"): 1,
    ("broken", "tool_error"): 2,
    ("flaky", "completed"): 1,
    ("hang", "failed"): 1,
}
"""The outcomes the worker writes, by (tool, status label)."""


def expected_finished() -> dict[tuple[str, str], float]:
    """Every (tool, status) series a worker declares, with the count the workload must leave."""
    return {
        (tool, status): float(OUTCOMES.get((tool, status), 0))
        for tool in TOOLS
        for status in ("completed", "tool_error", "failed")
    }


@dataclass
class Scrape:
    """One parsed ``/metrics`` page: sample name and labels -> value."""

    samples: dict[tuple[str, frozenset[tuple[str, str]]], float]
    text: str

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples, text)

    @classmethod
    async def fetch(cls, url: str) -> Scrape:
        def get() -> str:
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
                assert response.headers["Content-Type"].startswith("text/plain")
                return bytes(response.read()).decode()

        return cls.parse(await asyncio.to_thread(get))

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def series(self, name: str, *label_names: str) -> dict[tuple[str, ...], float]:
        """Every sample called ``name``, keyed by the values of ``label_names``."""
        found: dict[tuple[str, ...], float] = {}
        for (sample, labels), value in self.samples.items():
            if sample == name:
                as_dict = dict(labels)
                found[tuple(as_dict.get(n, "") for n in label_names)] = value
        return found


@dataclass(frozen=True)
class Span:
    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    kind: str
    attributes: dict[str, Any]
    status: str


def read_spans(path: Path) -> list[Span]:
    """The spans a process appended to ``path`` (the SDK's span JSON, one per line)."""
    if not path.exists():
        return []
    spans: list[Span] = []
    for line in path.read_text().splitlines():
        data: dict[str, Any] = json.loads(line)
        spans.append(
            Span(
                name=data["name"],
                trace_id=data["context"]["trace_id"],
                span_id=data["context"]["span_id"],
                parent_id=data.get("parent_id"),
                kind=data["kind"],
                attributes=data.get("attributes") or {},
                status=(data.get("status") or {}).get("status_code", "UNSET"),
            )
        )
    return spans
