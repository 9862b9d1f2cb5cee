"""The official MCP conformance suite's SEP-2663 tasks scenarios against the product.

Runs ``shared/conformance/run-tasks.sh`` (next to the repository; ``MCP_TASKS_CONFORMANCE_RUNNER``
overrides the path) against ``mcp-tasks-redis serve --app workers.conformance:app`` with one
worker process on the test's Redis namespace. The runner builds the pinned suite with npm on
first use and fetches Node 22 from npm when the machine's node is older, so the test needs
``npm``; it is skipped, saying why, when npm or the runner is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import pytest

pytest.register_assert_rewrite("tests.integration.stack")

from tests.integration.stack import Stack  # noqa: E402

pytest_plugins = ["tests.integration.stack"]

ROOT = Path(__file__).resolve().parents[2]
# shared/ sits beside the repository (a worktree sits one folder deeper).
CANDIDATES = [
    ROOT.parent / "shared/conformance/run-tasks.sh",
    ROOT.parent.parent / "shared/conformance/run-tasks.sh",
    # The workplace's shared folder, for a checkout that lives elsewhere (a CI clone).
    Path("/work/shared/conformance/run-tasks.sh"),
]
RUNNER = Path(
    os.environ.get("MCP_TASKS_CONFORMANCE_RUNNER")
    or next((p for p in CANDIDATES if p.is_file()), CANDIDATES[0])
)
# Every tasks scenario of the pinned suite runs; tasks-status-notifications only ever skips
# upstream (pending a rewrite against subscriptions/listen).
RUNNER_FOUND = RUNNER.is_file()
RUNNABLE = (
    "tasks-lifecycle",
    "tasks-capability-negotiation",
    "tasks-wire-fields",
    "tasks-request-state-removal",
    "tasks-mrtr-input",
    "tasks-request-headers",
    "tasks-dispatch-and-envelope",
    "tasks-required-task-error",
    "tasks-mrtr-composition",
)


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_every_runnable_tasks_scenario_passes(stack: Stack, tmp_path: Path) -> None:
    # CI sets MCP_TASKS_REQUIRE_CONFORMANCE=1: there a missing npm or runner fails the run.
    missing = pytest.fail if os.environ.get("MCP_TASKS_REQUIRE_CONFORMANCE") == "1" else pytest.skip
    if shutil.which("npm") is None:
        missing("npm is not installed: the conformance runner builds the suite with npm")
    if not RUNNER_FOUND:
        missing(f"no conformance runner at {RUNNER} (set MCP_TASKS_CONFORMANCE_RUNNER)")
    stack.configure(app="workers.conformance:app")
    server, _ = await asyncio.gather(stack.start_server(), stack.start_worker())
    env = {**os.environ, "CONFORMANCE_RESULTS": str(tmp_path / "results")}
    process = await asyncio.create_subprocess_exec(
        "bash",
        str(RUNNER),
        server.url,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    verdicts = out.decode().splitlines()
    report = "\n".join(verdicts) + "\n--- runner stderr ---\n" + err.decode()[-4000:]
    assert process.returncode == 0, report
    for scenario in RUNNABLE:
        assert f"PASS {scenario}" in verdicts, report
    assert verdicts[-1] == f"{len(RUNNABLE)} passed, 0 failed", report
    print(report)
