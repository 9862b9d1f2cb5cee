"""The observability options of the command: a taken metrics port, a traces setting that cannot
work, or a bad value, are one clear line and exit code 2 before the process starts anything."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys

import pytest
from pydantic import ValidationError

from mcp_tasks_redis.ops.tracing_setup import TracingSetupError, configure_tracing
from mcp_tasks_redis.settings import Settings


def command(redis_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MCP_TASKS_") and k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-c", "from mcp_tasks_redis.ops.cli import main; main()", *args],
        env={**clean, "REDIS_URL": redis_url, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_taken_metrics_port_is_refused_before_the_worker_starts(redis_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = command(redis_url, "worker", "--metrics-port", str(port))
    assert run.returncode == 2
    assert f"error: cannot listen on 127.0.0.1:{port}" in run.stderr
    assert "started:" not in run.stderr


def otlp_installed() -> bool:
    try:
        return importlib.util.find_spec("opentelemetry.exporter.otlp.proto.http") is not None
    except ModuleNotFoundError:
        return False


@pytest.mark.skipif(otlp_installed(), reason="the OTLP exporter is installed here")
def test_otlp_traces_without_the_exporter_say_what_to_install(redis_url: str) -> None:
    run = command(redis_url, "worker", MCP_TASKS_TRACES="otlp")
    assert run.returncode == 2
    assert "pip install opentelemetry-exporter-otlp-proto-http" in run.stderr
    with pytest.raises(TracingSetupError, match="opentelemetry-exporter-otlp-proto-http"):
        configure_tracing("otlp", "worker")


def test_bad_values_are_refused_with_the_rule(redis_url: str) -> None:
    run = command(redis_url, "worker", MCP_TASKS_TRACES="zipkin")
    assert run.returncode == 2
    assert "invalid setting traces" in run.stderr
    with pytest.raises(ValidationError, match="metrics_port"):
        Settings(metrics_port=70_000)
    assert Settings(metrics_port="", traces="").model_dump(include={"metrics_port", "traces"}) == {  # type: ignore[arg-type]
        "metrics_port": None,
        "traces": None,
    }
    usage = command(redis_url, "worker", "--metrics-port", "0")
    assert usage.returncode == 2
    assert "--metrics-port" in usage.stderr
