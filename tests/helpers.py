"""Helpers shared by the tests."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import freeagentics_rs


def run_python(
    code: str,
    *,
    backend: str | None = None,
    timeout: float = 60,
    env_extra: dict[str, str] | None = None,
    **kwargs,
) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter (for exit, signal, fork and cross-process behaviour)."""
    env = dict(os.environ)
    env["FREEAGENTICS_RS_BACKEND"] = backend or freeagentics_rs.BACKEND
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )
