"""`mcp-tasks-redis demo` runs to the end in a headless terminal, shows each step, and exits 0."""

from __future__ import annotations

import re
import subprocess
import time

import pytest
from ops_support import ROOT, clean_env, command


@pytest.mark.slow
def test_demo_runs_headless(redis_url: str) -> None:
    started = time.monotonic()
    # stdout is a pipe, stdin is closed: no terminal at all, as in CI.
    result = subprocess.run(
        [*command(), "demo"],
        env=clean_env(redis_url, TERM="dumb"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    took = time.monotonic() - started
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert "Traceback" not in out + result.stderr
    assert "\x1b[" not in out, "no terminal: no escape sequences"

    assert f"redis:   {redis_url}" in out
    # 1. three tasks at once: about 3 s of wall time against 6 s of work
    wall = re.search(r"6 s one after the other\) finished in ([\d.]+) s on 2 workers", out)
    assert wall, out
    assert 2.9 <= float(wall.group(1)) < 5.0
    for seconds in (1, 2, 3):
        assert f"slow_compute({seconds} s)" in out
        assert f"Computed for {seconds} seconds" in out
    # 2. status polling
    assert "tasks/get -> working" in out
    assert "tasks/get -> completed" in out
    # 3. cancelled mid-run, and the worker let go of the job
    assert "tasks/cancel -> cancelled; tasks/get -> cancelled" in out
    assert re.search(r"the job \(held by worker [^)]+\) left the queue \d+ ms later", out)
    # 4. a new session picks the tasks up by id
    assert re.search(r"disconnected at \d+% from task", out)
    assert "new session: tasks/result" in out
    assert "(step 1, fetched again) -> Computed for 3 seconds" in out
    summary = out[out.index("Summary") :]
    assert summary.count(" ok ") == 4
    assert "FAILED" not in summary
    assert took < 45, f"the demo took {took:.1f} s"
