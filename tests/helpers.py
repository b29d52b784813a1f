"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import freeagentics_rs


def run_python(code: str, *, backend: str | None = None, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (for exit, signal and fork behaviour)."""
    env = dict(os.environ)
    env["FREEAGENTICS_RS_BACKEND"] = backend or freeagentics_rs.BACKEND
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
