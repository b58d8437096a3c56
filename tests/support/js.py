"""The JavaScript client package (clients/js) for the Python suite: its dev tools installed, its build.

``npm ci`` runs once per checkout (``scripts/test`` runs it first; this does it when it did not
happen, e.g. for a bare ``pytest``), from the committed package-lock.json (exact versions).
Without Node.js and npm the tests that need them skip locally and fail under ``CI=true``.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.procs import ROOT

PACKAGE = ROOT / "clients" / "js"
#: The ES module build, what Node.js imports (``node build.mjs`` writes it).
ESM = PACKAGE / "dist" / "asgi-ws.mjs"
#: Bounds of the commands, in seconds (npm ci fetches from the registry the first time).
NPM_CI_TIMEOUT = 300.0
COMMAND_TIMEOUT = 120.0


def run(*cmd: str, cwd: Path = PACKAGE, timeout: float = COMMAND_TIMEOUT) -> str:
    """Run ``cmd``; return its standard output, or fail the test with all it printed."""
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        command = " ".join(cmd)
        raise AssertionError(f"{command} did not finish within {timeout} s:\n{exc.stdout}\n{exc.stderr}") from None
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} (in {cwd}) exited with {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def require_node() -> None:
    """Skip (locally) or fail (CI=true) when Node.js or npm is missing."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not found: the JavaScript client's tests need Node.js 20+ and npm"
        (pytest.fail if os.environ.get("CI") == "true" else pytest.skip)(message)


def installed() -> bool:
    """Whether node_modules matches package-lock.json (npm ci ran since the lock last changed)."""
    marker = PACKAGE / "node_modules" / ".package-lock.json"
    lock = PACKAGE / "package-lock.json"
    return marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime


@functools.cache
def _prepared() -> Path:
    if not installed():
        run("npm", "ci", "--no-audit", "--no-fund", timeout=NPM_CI_TIMEOUT)
    run("node", "build.mjs")  # dist/: the ES module and the classic script, from the current sources
    return PACKAGE


def prepared() -> Path:
    """clients/js with its dev tools installed and dist/ built from the current sources (once per run)."""
    require_node()
    return _prepared()
