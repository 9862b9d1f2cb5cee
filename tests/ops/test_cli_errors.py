"""Bad input to `mcp-tasks-redis`: one clear line on stderr, a non-zero exit, never a traceback.

Each case runs the installed command as a subprocess, as a user would.
"""

from __future__ import annotations

import socket
import textwrap
from pathlib import Path

import pytest
from ops_support import assert_one_line_error, clean_env, run_cli

from mcp_tasks_redis.ops.cli import cli

UNREACHABLE = "redis://127.0.0.1:1/0"  # port 1: nothing listens there

SUBCOMMANDS = [
    ["serve"],
    ["worker"],
    ["dev"],
    ["demo"],
    ["tasks"],
    ["tasks", "ls"],
    ["tasks", "get"],
    ["tasks", "result"],
    ["tasks", "cancel"],
    ["tasks", "watch"],
    ["health"],
    ["health", "worker"],
    ["health", "server"],
]


def test_every_subcommand_has_help() -> None:
    # In-process for speed (13 commands); the subprocess tests below cover the real entry point.
    from typer.testing import CliRunner

    runner = CliRunner()
    for argv in [[], *SUBCOMMANDS]:
        result = runner.invoke(cli, [*argv, "--help"])
        assert result.exit_code == 0, (argv, result.output)
        assert "Usage" in result.output, argv


def test_help_as_a_subprocess() -> None:
    result = run_cli("tasks", "watch", "--help", env=clean_env())
    assert result.returncode == 0
    assert "--once" in result.stdout
    assert "not scoped" in run_cli("tasks", "--help", env=clean_env()).stdout.replace("\n", " ")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bogus"], "No such command 'bogus'"),
        (["dev", "--bogus"], "No such option: --bogus"),
        (["tasks", "ls", "--status", "nope"], "--status"),
        (["dev", "--workers", "many"], "--workers"),
        (["tasks", "get"], "Missing argument 'ID'"),
    ],
)
def test_usage_errors_are_one_line(argv: list[str], needle: str) -> None:
    result = run_cli(*argv, env=clean_env())
    assert result.returncode == 2
    assert_one_line_error(result, needle, "--help")


@pytest.fixture
def empty_app(tmp_path: Path) -> Path:
    (tmp_path / "no_tools.py").write_text(
        textwrap.dedent("""
        from mcp_tasks_redis.engine.registry import ToolRegistry
        app = ToolRegistry("empty")
    """)
    )
    (tmp_path / "broken_app.py").write_text("import does_not_exist_anywhere\n")
    return tmp_path


@pytest.mark.parametrize(
    ("command", "app", "needle"),
    [
        ("serve", "no_such_module:app", "Cannot import registry module 'no_such_module'"),
        ("serve", "broken_app:app", "does_not_exist_anywhere"),
        ("serve", "no_tools:app", "has no tools"),
        ("serve", "mcp_tasks_redis.examples.demo:missing", "has no attribute"),
        ("worker", "no_tools:app", "has no tools"),
        ("dev", "no_such_module:app", "Cannot import registry module 'no_such_module'"),
    ],
)
def test_bad_app(command: str, app: str, needle: str, empty_app: Path, redis_url: str) -> None:
    env = clean_env(redis_url, "t-bad-app", PYTHONPATH=str(empty_app))
    assert_one_line_error(run_cli(command, "--app", app, env=env), needle)


@pytest.mark.parametrize(
    "argv",
    [["serve"], ["worker"], ["dev"], ["tasks", "ls"], ["tasks", "get", "x"], ["demo"]],
)
def test_unreachable_redis(argv: list[str]) -> None:
    result = run_cli(*argv, "--redis-url", UNREACHABLE, env=clean_env())
    assert_one_line_error(result, "127.0.0.1:1", "unreachable")
    assert result.stdout == ""


def test_redis_url_with_a_wrong_scheme() -> None:
    assert_one_line_error(
        run_cli("tasks", "ls", "--redis-url", "http://localhost", env=clean_env()),
        "redis_url must start with redis://",
    )


@pytest.mark.parametrize("command", ["serve", "dev"])
def test_port_in_use(command: str, redis_url: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_cli(command, "--port", str(port), env=clean_env(redis_url, "t-port"))
    assert_one_line_error(result, f"cannot listen on 127.0.0.1:{port}", "--port")


def test_unknown_task_id(redis_url: str, namespace: str) -> None:
    env = clean_env(redis_url, namespace)
    for argv in (["get", "nope"], ["result", "nope"], ["cancel", "nope"], ["watch", "nope", "--once"]):
        result = run_cli("tasks", *argv, env=env)
        assert result.returncode == 1, argv
        assert_one_line_error(result, "no task 'nope'", namespace)


def test_health_failures_say_why(redis_url: str, namespace: str) -> None:
    result = run_cli("health", "worker", env=clean_env(redis_url, namespace))
    assert result.returncode == 1
    assert_one_line_error(result, "no worker on host", namespace)
    result = run_cli("health", "worker", "--redis-url", UNREACHABLE, env=clean_env())
    assert result.returncode == 1
    assert_one_line_error(result, "unreachable")
    result = run_cli("health", "server", "--url", "http://127.0.0.1:1/health", env=clean_env())
    assert result.returncode == 1
    assert_one_line_error(result, "unhealthy", "http://127.0.0.1:1/health")
