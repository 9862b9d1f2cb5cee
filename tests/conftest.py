"""Test-wide setup: the Redis fixtures, and which tests the installed `mcp` major can run.

Both SDK majors install as `mcp`, so each virtualenv runs the tests of its own wire: modules
that drive the 2025-11-25 wire through the 1.x SDK are reported skipped on 2.x, and the SEP-2663
tests under ``tests/v2`` are reported skipped on 1.x, each with the reason (never imported there).
"""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest

pytest_plugins = ["redis_fixtures"]

MCP_MAJOR = int(version("mcp").split(".")[0])
TESTS = Path(__file__).parent

# Paths (relative to tests/, glob patterns) of modules that need one `mcp` major.
NEEDS_MAJOR: dict[int, tuple[str, ...]] = {
    1: (
        "chaos/*.py",
        "clients/test_fastmcp3.py",
        "contract/*.py",
        "deploy/test_*.py",
        "hostile/*.py",
        "integration/test_*.py",
        "ops/test_*.py",
        "fundamentals/test_store_*.py",
        "regressions/test_*.py",
        "topology/test_engine_on_topologies.py",
        "observability/test_wire_v1.py",
        "arq_dispatch/test_arq_mcp.py",
    ),
    2: ("v2/*.py", "observability/test_wire_v2.py", "clients/test_fastmcp4.py"),
}


def _needed_major(path: Path) -> int | None:
    try:
        relative = path.relative_to(TESTS)
    except ValueError:
        return None
    for major, patterns in NEEDS_MAJOR.items():
        if any(relative.match(pattern) for pattern in patterns):
            return major
    return None


class _OtherSdkModule(pytest.Module):
    """A test module for the other `mcp` major: one skipped item that says so, nothing imported."""

    def collect(self) -> list[pytest.Item]:
        return [_SkippedForSdk.from_parent(self, name=self.path.name)]


class _SkippedForSdk(pytest.Item):
    def runtest(self) -> None:
        needed = _needed_major(self.path)
        pytest.skip(f"needs mcp {needed}.x (installed: {version('mcp')}); run it in the mcp {needed}.x venv")

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: Any) -> pytest.Module | None:
    needed = _needed_major(module_path)
    if needed is not None and needed != MCP_MAJOR and module_path.name.startswith("test_"):
        return _OtherSdkModule.from_parent(parent, path=module_path)
    return None
