"""docker-compose.yml and the Dockerfile, checked without Docker: structure, commands, and a local run.

There is no Docker engine here. So: the compose file's structure is checked (Redis with an
append-only file and a healthcheck, a server with a published port, a worker that scales); every
command a service or healthcheck runs is parsed by the real CLI without being executed; and the
stack is started as local processes, one per service (two workers, as `--scale worker=2`), against
the test Redis in place of the `redis` service, then driven end to end by an MCP client.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import typer
import yaml
from ops_support import ROOT, clean_env, command, free_port, run_task, stop_process, wait_until
from typer.main import get_command

from mcp_tasks_redis.ops.cli import cli
from mcp_tasks_redis.ops.stack import http_health

CONSOLE_SCRIPT = "mcp-tasks-redis"
# click's UsageError, wherever typer gets click from (newer typers vendor it).
USAGE_ERROR: type[Exception] = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...]
        env = dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def parse_only(argv: list[str]) -> list[str]:
    """Parse ``mcp-tasks-redis ARGV`` with the real CLI, down to the leaf command, without running it.

    Raises the CLI's usage error for an unknown command, an unknown option or an invalid value.
    Returns the command path, e.g. ``["health", "worker"]``.
    """
    group: Any = get_command(cli)
    ctx = group.make_context(CONSOLE_SCRIPT, list(argv))
    path: list[str] = []
    while hasattr(group, "resolve_command"):
        rest = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", [])), *ctx.args]
        name, sub, args = group.resolve_command(ctx, rest)
        path.append(name)
        ctx = sub.make_context(name, args, parent=ctx)  # converts and validates every parameter
        group = sub
    return path


def test_the_validator_is_not_vacuous() -> None:
    assert parse_only(["worker", "--concurrency", "3"]) == ["worker"]
    assert parse_only(["health", "worker"]) == ["health", "worker"]
    for bad in (
        ["wroker"],
        ["worker", "--bogus"],
        ["worker", "--concurrency", "0"],
        ["serve", "--port", "x"],
        ["health", "nope"],
    ):
        with pytest.raises(USAGE_ERROR):
            parse_only(bad)


def test_redis_service(compose: dict[str, Any]) -> None:
    redis_service = services(compose)["redis"]
    command_line = " ".join(map(str, redis_service["command"]))
    assert re.search(r"--appendonly\s+yes", command_line), command_line
    assert redis_service["healthcheck"]["test"], "redis needs a healthcheck"
    assert any(str(v).endswith(":/data") for v in redis_service.get("volumes", [])), "AOF kept in a volume"


def test_server_service(compose: dict[str, Any]) -> None:
    server = services(compose)["server"]
    assert parse_only(server["command"]) == ["serve"]
    args = server["command"]
    assert args[args.index("--transport") + 1] == "streamable-http"
    assert args[args.index("--host") + 1] == "0.0.0.0"  # reachable from outside the container
    published = [str(p) for p in server["ports"]]
    assert published, "the server publishes a port"
    container_port = published[0].rsplit(":", 1)[-1]
    assert args[args.index("--port") + 1] == container_port, "the published port is the one it listens on"
    assert server["depends_on"]["redis"]["condition"] == "service_healthy"
    assert urlsplit(environment(server)["REDIS_URL"]).hostname == "redis"


def test_worker_service_scales(compose: dict[str, Any]) -> None:
    worker = services(compose)["worker"]
    assert parse_only(worker["command"]) == ["worker"]
    # `docker compose up --scale worker=N` refuses a fixed container name or a published host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    test = worker["healthcheck"]["test"]
    assert test[0] == "CMD"
    assert test[1] == CONSOLE_SCRIPT
    assert parse_only(test[2:]) == ["health", "worker"]
    assert environment(worker)["REDIS_URL"] == environment(services(compose)["server"])["REDIS_URL"]
    assert worker.get("stop_signal", "SIGTERM") == "SIGTERM"


def test_one_service_builds_the_image_the_others_run(compose: dict[str, Any]) -> None:
    app_services = {name: s for name, s in services(compose).items() if name != "redis"}
    assert [name for name, s in app_services.items() if "build" in s] == ["server"]
    assert len({s["image"] for s in app_services.values()}) == 1, "one image for servers and workers"
    # docker-compose v1 makes sure of each service's image in file order: the builder comes first,
    # else it would try to pull the workers' image from a registry.
    order = list(services(compose))
    assert order.index("server") < order.index("worker")


def test_every_command_is_a_real_subcommand(compose: dict[str, Any]) -> None:
    checked = 0
    for name, service in services(compose).items():
        if name == "redis":
            continue
        parse_only(service["command"])
        test = service.get("healthcheck", {}).get("test", [])
        if len(test) > 1 and test[1] == CONSOLE_SCRIPT:
            parse_only(test[2:])
        checked += 1
    assert checked >= 2


def test_dockerfile_entry_point() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", dockerfile, re.M)
    cmd = re.search(r"^CMD\s+(\[.*\])\s*$", dockerfile, re.M)
    assert entry
    assert cmd
    assert json.loads(entry.group(1)) == [CONSOLE_SCRIPT]
    assert parse_only(json.loads(cmd.group(1))) == ["serve"]
    user = re.findall(r"^USER\s+(\S+)", dockerfile, re.M)
    assert user, "runs as a non-root user"
    assert user[-1] not in ("root", "0"), "runs as a non-root user"


# -- the stack the compose file describes, as local processes ------------------------------------
def local_argv(args: list[str], port: int) -> list[str]:
    """A service's command for this machine: loopback instead of 0.0.0.0, a free port for 8000."""
    out = list(args)
    if "--host" in out:
        out[out.index("--host") + 1] = "127.0.0.1"
    if "--port" in out:
        out[out.index("--port") + 1] = str(port)
    return [*command(), *out]


def local_env(service: dict[str, Any], redis_url: str, namespace: str) -> dict[str, str]:
    env = environment(service)
    if urlsplit(env.get("REDIS_URL", "")).hostname == "redis":  # the compose service -> the test Redis
        env["REDIS_URL"] = redis_url
    # One namespace per test (the compose stack uses the default one for all its services alike).
    return clean_env(None, namespace, **env)


def healthcheck_argv(service: dict[str, Any], container_port: str, port: int) -> list[str]:
    test = [str(t) for t in service["healthcheck"]["test"]]
    assert test[0] == "CMD", "exec-form healthchecks only (the image has no shell tools)"
    argv = [a.replace(container_port, str(port)) for a in test[1:]]
    if argv[0] == CONSOLE_SCRIPT:
        return [*command(), *argv[1:]]
    if argv[0] == "python":
        return [sys.executable, *argv[1:]]
    return argv


@pytest.fixture
def local_stack(
    compose: dict[str, Any], redis_url: str, namespace: str, tmp_path: Path
) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    port = free_port()
    server, worker = services(compose)["server"], services(compose)["worker"]
    processes: list[subprocess.Popen[bytes]] = []
    for name, service in (("server", server), ("worker-1", worker), ("worker-2", worker)):
        log = (tmp_path / f"{name}.log").open("wb")
        processes.append(
            subprocess.Popen(
                local_argv(service["command"], port),
                cwd=ROOT,
                env=local_env(service, redis_url, namespace),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        )
    try:
        yield port, processes
    finally:
        codes = [stop_process(p, timeout=40) for p in processes]  # stop_grace_period of the workers
        logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
        # uvicorn re-raises the SIGTERM it handled once it has shut down (exit 143 in a container).
        assert codes[0] in (0, -15), (codes, logs)
        assert codes[1:] == [0, 0], (codes, logs)


@pytest.mark.slow
def test_compose_stack_runs_locally(
    compose: dict[str, Any], local_stack: tuple[int, list[Any]], redis_url: str, namespace: str
) -> None:
    port, processes = local_stack
    health_url = f"http://127.0.0.1:{port}/health"

    def up() -> bool:
        assert all(p.poll() is None for p in processes), "a service exited"
        return http_health(health_url, timeout=1)[0]

    wait_until(up, 60, "the server's /health")
    client = redis.Redis.from_url(redis_url)
    try:
        wait_until(
            lambda: len(list(client.scan_iter(match=f"{namespace}:worker:*"))) >= 2,
            30,
            "both workers to report in",
        )
    finally:
        client.close()

    import asyncio

    _, result, progress = asyncio.run(
        run_task(f"http://127.0.0.1:{port}/mcp", "slow_compute", {"seconds": 0.5})
    )
    assert not result.isError
    assert result.structuredContent == {"seconds": 0.5}
    assert progress
    assert progress[-1] == 100.0

    container_port = str(services(compose)["server"]["ports"][0]).rsplit(":", 1)[-1]
    for name in ("worker", "server"):
        service = services(compose)[name]
        argv = healthcheck_argv(service, container_port, port)
        started = time.monotonic()
        check = subprocess.run(
            argv,
            env=local_env(service, redis_url, namespace),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert check.returncode == 0, (name, check.stdout, check.stderr)
        limit = float(str(service["healthcheck"].get("timeout", "30s")).rstrip("s"))
        assert time.monotonic() - started < limit + 2, f"{name} healthcheck is slower than its timeout"
