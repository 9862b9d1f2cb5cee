"""docs/observability.md and docs/grafana-dashboard.json stay true: the series they name are the
ones a server's and a worker's engine expose, every exposed series is documented, and the
dashboard is a dashboard."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from mcp_tasks_redis.engine.engine import TaskEngine

DOCS = Path(__file__).parents[2] / "docs"


async def exposed(redis: aioredis.Redis, namespace: str) -> tuple[set[str], dict[str, str]]:
    """(every sample name, documented name -> type) of an engine that served and ran a task."""
    engine = TaskEngine(redis, namespace=namespace)
    try:
        metrics = engine.metrics
        metrics.declare_tools(["t"], "server")
        metrics.declare_tools(["t"], "worker")
        metrics.track_worker(lambda: 0, 1)
        metrics.run_ended("t", {"wait_ms": 1, "run_ms": 2, "cpu_ms": 1})
        metrics.outcome_written("t", "completed", 0)
        metrics.notification_sent("status", 1)
        metrics.redis_unavailable("create")
        body, _ = await metrics.render()
    finally:
        await engine.close()
    samples: set[str] = set()
    families: dict[str, str] = {}
    for family in text_string_to_metric_families(body.decode()):
        samples |= {s.name for s in family.samples}
        if family.name.startswith("mcp_tasks_"):
            families[family.name + ("_total" if family.type == "counter" else "")] = family.type
    return samples, families


async def test_the_page_documents_exactly_the_series_the_processes_expose(
    redis: aioredis.Redis, namespace: str
) -> None:
    _, families = await exposed(redis, namespace)
    page = (DOCS / "observability.md").read_text()
    rows = dict(re.findall(r"^\| `(mcp_tasks_[a-z_]+)` \| (\w+) \|", page, re.M))
    assert rows == families


async def test_the_dashboard_queries_only_series_the_processes_expose(
    redis: aioredis.Redis, namespace: str
) -> None:
    samples, _ = await exposed(redis, namespace)
    dashboard: dict[str, Any] = json.loads((DOCS / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 20
    named = {n for e in exprs for n in re.findall(r"\b((?:mcp_tasks|process)_[a-z_]+)\b", e)}
    assert named - samples == set()
    assert {p["gridPos"]["w"] for p in dashboard["panels"]} <= {8, 12, 24}
    assert len({p["id"] for p in dashboard["panels"]}) == len(dashboard["panels"])
