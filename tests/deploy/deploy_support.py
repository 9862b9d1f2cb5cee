"""Drive the repository's docker-compose.yml with a real Docker engine, for the deploy tests.

A :class:`Compose` is one compose project (a unique name, so it never touches another stack on
the engine) over the repository's compose file plus a test override. Every wait polls Docker with
a deadline: container health and logs have no event a test could wait on.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ENV_REQUIRE_DOCKER = "MCP_TASKS_REQUIRE_DOCKER"
"""Set (to 1) where Docker must run, as in CI: a missing engine fails the tests instead of skipping."""


def compose_command() -> list[str] | None:
    """docker-compose v1, else the `docker compose` plugin, else None."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and _ok(["docker", "compose", "version"]):
        return ["docker", "compose"]
    return None


def _ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def why_no_docker() -> str | None:
    """None when a Docker engine and compose answer here; else why not (the skip reason)."""
    if not shutil.which("docker"):
        return "no docker CLI on PATH (install Docker and start an engine; .ci/deploy-check does)"
    if not _ok(["docker", "info"]):
        return "no Docker engine answers `docker info` (start one; .ci/deploy-check does)"
    if compose_command() is None:
        return "neither docker-compose nor the `docker compose` plugin is installed"
    return None


def poll(check: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.25) -> T:
    """Call ``check`` until it returns something other than None or False; that value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


@dataclass(frozen=True)
class Started:
    """A worker's log line saying it started a task."""

    container: str  # container name
    worker: str  # the worker id the line carries
    attempt: int | None


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a command; its stdout and stderr together. Fails the test with both on a non-zero exit."""
    done = subprocess.run(
        argv, env=env, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} exited {done.returncode}:\n{output[-4000:]}")
    return output


class Compose:
    """One compose project over ``files``; ``env`` adds variables the compose files substitute."""

    def __init__(self, project: str, files: list[Path], env: dict[str, str]) -> None:
        command = compose_command()
        assert command is not None, why_no_docker()
        self.project = project
        self._base = [*command, "--project-name", project, *(a for f in files for a in ("-f", str(f)))]
        self._env = {**os.environ, **env}

    def __call__(self, *args: str, timeout: float = 300) -> str:
        return run([*self._base, *args], env=self._env, timeout=timeout)

    # -- containers ----------------------------------------------------------------------------
    def containers(self, service: str, *, running_only: bool = True) -> list[str]:
        """Names of the service's containers (running ones unless told otherwise), by number."""
        filters = [
            f"label=com.docker.compose.project={self.project}",
            f"label=com.docker.compose.service={service}",
        ]
        if running_only:
            filters.append("status=running")
        args = [a for f in filters for a in ("--filter", f)]
        out = run(["docker", "ps", "-a", *args, "--format", "{{.Names}}"])
        return sorted(out.split(), key=lambda n: (len(n), n))

    def inspect(self, container: str) -> dict[str, Any]:
        return json.loads(run(["docker", "inspect", container]))[0]

    def health(self, container: str) -> str:
        state = self.inspect(container)["State"]
        return str(state.get("Health", {}).get("Status", state.get("Status")))

    def wait_healthy(self, service: str, count: int, timeout: float = 90) -> list[str]:
        """Wait until ``count`` containers of ``service`` run and report healthy; their names."""

        def healthy() -> list[str] | None:
            names = self.containers(service)
            ok = [n for n in names if self.health(n) == "healthy"]
            return ok if len(ok) >= count else None

        return poll(healthy, timeout=timeout, what=f"{count} healthy {service} container(s)", interval=1.0)

    def leftovers(self) -> dict[str, list[str]]:
        """Containers, networks and volumes that still carry this project's label."""
        label = f"label=com.docker.compose.project={self.project}"
        found = {
            "containers": run(["docker", "ps", "-a", "--filter", label, "--format", "{{.Names}}"]).split(),
            "networks": run(["docker", "network", "ls", "--filter", label, "--format", "{{.Name}}"]).split(),
            "volumes": run(["docker", "volume", "ls", "--filter", label, "--format", "{{.Name}}"]).split(),
        }
        return {kind: names for kind, names in found.items() if names}

    # -- logs ----------------------------------------------------------------------------------
    def records(self, container: str) -> list[dict[str, Any]]:
        """The JSON log lines (``MCP_TASKS_LOG_FORMAT=json``) a container wrote so far."""
        done = subprocess.run(["docker", "logs", container], capture_output=True, text=True, check=False)
        records: list[dict[str, Any]] = []
        for line in (done.stdout + done.stderr).splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                records.append(record)  # pyright: ignore[reportUnknownArgumentType]
        return records

    def task_starts(self, task_id: str, service: str = "worker") -> list[Started]:
        """Every worker log line, in any container of ``service``, saying it started ``task_id``."""
        starts: list[Started] = []
        for name in self.containers(service, running_only=False):
            for r in self.records(name):
                if r.get("task_id") == task_id and "started" in str(r.get("msg", "")):
                    attempt = r.get("attempt")
                    starts.append(Started(name, str(r.get("worker", "")), int(attempt) if attempt else None))
        return starts

    def logged(self, container: str, task_id: str, text: str) -> bool:
        return any(
            r.get("task_id") == task_id and text in str(r.get("msg", "")) for r in self.records(container)
        )

    def redis_cli(self, *args: str) -> str:
        return self("exec", "-T", "redis", "redis-cli", *args, timeout=30).strip()
