"""The README stays true: its make targets exist, every setting is documented, its examples run."""

from __future__ import annotations

import re
from typing import Any

from ops_support import ROOT

from mcp_tasks_redis.engine.registry import ToolRegistry
from mcp_tasks_redis.settings import ENV_PREFIX, Settings

README = (ROOT / "README.md").read_text()


def test_make_targets_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"^make ([\w-]+)", README, re.M)):
        assert re.search(rf"^{re.escape(target)}:", makefile, re.M), f"README mentions `make {target}`"
    assert "$(BIN)/mcp-tasks-redis demo" in makefile


def test_every_setting_is_documented() -> None:
    for name in Settings.model_fields:
        assert f"`{ENV_PREFIX}{name.upper()}`" in README, name
    assert "`REDIS_URL`" in README


def test_subcommands_in_the_readme_exist() -> None:
    from typer.main import get_command

    from mcp_tasks_redis.ops.cli import cli

    group: Any = get_command(cli)
    for name in set(re.findall(r"`mcp-tasks-redis (\w+)", README)):
        assert name in group.commands, name


def test_tool_examples_register() -> None:
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    registries = 0
    for block in blocks:
        if "ToolRegistry(" not in block:
            continue
        namespace: dict[str, Any] = {}
        exec(compile(block, "README.md", "exec"), namespace)
        app = namespace["app"]
        assert isinstance(app, ToolRegistry)
        assert len(app) == 1
        registries += 1
    assert registries == 2
    # The injected parameters are not part of the schema a client sees.
    report = _registry_of(blocks, "build_report").get("build_report")
    assert report is not None
    assert set(report.input_schema["properties"]) == {"pages"}
    assert report.task_support == "required"


def _registry_of(blocks: list[str], tool: str) -> ToolRegistry:
    for block in blocks:
        if f"def {tool}(" in block:
            namespace: dict[str, Any] = {}
            exec(compile(block, "README.md", "exec"), namespace)
            return namespace["app"]
    raise AssertionError(f"no example defines {tool}")
