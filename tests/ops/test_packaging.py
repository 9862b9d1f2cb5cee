"""Packaging: the default tools ship in the library; the repository's `workers.demo` re-exports them.

The wheel's contents and an install into a clean venv are checked by `.ci/wheel-check`, which
also runs these tests against the installed package (where there is no `workers` folder).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import subprocess
import sysconfig
from pathlib import Path

import pytest
from ops_support import ROOT, clean_env, command, free_port, stop_process, wait_until

import mcp_tasks_redis
from mcp_tasks_redis.engine.loading import load_registry
from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.examples import demo
from mcp_tasks_redis.ops.stack import http_health
from mcp_tasks_redis.settings import DEFAULT_APP, Settings

DEMO_TOOLS = {"greet", "slow_compute", "long_report", "ask_user", "fail", "noop"}


def test_the_default_app_is_the_demo_shipped_in_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCP_TASKS_APP", raising=False)
    assert Settings().app == DEFAULT_APP == "mcp_tasks_redis.examples.demo:app"
    registry = load_registry(DEFAULT_APP)
    assert registry is demo.app
    assert set(registry.names()) == DEMO_TOOLS
    noop = registry.get("noop")
    assert noop is not None
    assert noop.task_support == "optional"
    assert noop.injected == {}, "noop asks for no progress reporter or context"


def test_serve_without_app_runs_the_demo_from_any_folder(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    port = free_port()
    server = subprocess.Popen(
        [*command(), "serve", "--port", str(port)],
        cwd=tmp_path,  # nothing of the repository in reach of the working directory
        env=clean_env(redis_url, namespace),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    health: list[str] = []

    def answered() -> bool:
        assert server.poll() is None, server.communicate()[1]
        ok, body = http_health(f"http://127.0.0.1:{port}/health", timeout=1)
        health.append(body)
        return ok

    try:
        wait_until(answered, 30, "the server's /health")
    finally:
        stop_process(server)
    assert set(json.loads(health[-1])["tools"]) == DEMO_TOOLS


@pytest.mark.skipif(
    not (ROOT / "workers" / "demo.py").exists(),
    reason="no repository checkout next to the tests (the installed-package run has no workers/)",
)
def test_the_repository_entry_point_re_exports_the_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # pyright: ignore[reportUnknownMemberType]
    workers_demo = importlib.import_module("workers.demo")
    assert workers_demo.app is demo.app
    assert isinstance(workers_demo.app, ToolRegistry)
    for name in workers_demo.__all__:
        assert getattr(workers_demo, name) is getattr(demo, name), name
    assert set(workers_demo.__all__) >= DEMO_TOOLS | {"app"}


@pytest.mark.skipif(
    not os.environ.get("MCP_TASKS_TEST_INSTALLED"), reason="only under .ci/wheel-check (installed package)"
)
def test_the_installed_package_is_under_test() -> None:
    site = Path(sysconfig.get_paths()["purelib"]).resolve()
    assert Path(mcp_tasks_redis.__file__).resolve().is_relative_to(site), mcp_tasks_redis.__file__
    assert importlib.util.find_spec("workers") is None, "the wheel must not install a `workers` package"
    assert Path(command()[0]).name == "mcp-tasks-redis", "the console script runs the product"
