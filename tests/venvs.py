"""Throwaway virtual environments for third-party packages, built once from the package index.

Peers and real clients that cannot share the project's venv (another ``mcp`` major, pinned
dependencies) each get a venv of their own under a git-ignored folder: the benchmarks keep theirs
in ``bench/.venvs/`` (``bench/run_all.py``), the real-client tests in ``tests/.venvs/``
(``tests/clients``). A venv is rebuilt only when its requirements change (a stamp file records
them); nothing from those packages is ever committed. Builders that run at the same time (two
test processes) take turns on a lock file, and the second finds the venv ready.
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["ensure_venv", "venv_python"]

STAMP = ".bench-spec"
"""The file recording what a venv was built with (the name predates the tests' use of it)."""

PIP_NOISE = ("WARNING: Location", "WARNING: pip index")
"""pip lines that say nothing about a failure (the machine's extra index folders)."""


def venv_python(folder: Path, name: str) -> Path:
    return folder / name / "bin" / "python"


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def ensure_venv(
    folder: Path,
    name: str,
    requirements: list[str],
    stamp_extra: list[str] | None = None,
    log: Callable[[str], None] = _stderr,
) -> tuple[Path | None, str | None]:
    """Create (once) ``folder/name`` with ``requirements`` installed by pip; returns (python, None),
    or (None, what failed) when the venv could not be built (e.g. the package index is out of reach).

    ``stamp_extra`` goes into the stamp only (e.g. a digest of pyproject.toml for a venv that holds
    the project), so the venv is rebuilt when it changes.
    """
    path = folder / name
    stamp = path / STAMP
    python = venv_python(folder, name)
    spec = json.dumps(requirements + (stamp_extra or []))
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f".{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == spec:
            return python, None
        log(f"creating venv {path} with {' '.join(requirements)} (once; cached afterwards)")
        if path.exists():
            shutil.rmtree(path)
        base = getattr(sys, "_base_executable", None) or shutil.which("python3") or sys.executable
        steps = [
            [base, "-m", "venv", str(path)],
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
        ]
        for argv in steps:
            proc = subprocess.run(argv, capture_output=True, text=True)
            if proc.returncode != 0:
                err = "\n".join(
                    line
                    for line in (proc.stderr + proc.stdout).splitlines()
                    if line.strip() and not line.startswith(PIP_NOISE)
                )
                return None, f"`{' '.join(argv[2:])}` failed: {err[-2000:]}"
        stamp.write_text(spec)
        return python, None
