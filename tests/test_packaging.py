"""Packaging: the version is written once (Cargo.toml) and read everywhere else."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import freeagentics_rs

ROOT = Path(__file__).resolve().parent.parent


def cargo_version() -> str:
    text = (ROOT / "Cargo.toml").read_text()
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    match = re.search(r'^version\s*=\s*"([^"]+)"', package, re.MULTILINE)
    assert match, "Cargo.toml's [package] has no version"
    return match.group(1)


def test_version_is_defined_once_in_cargo_toml():
    pyproject = (ROOT / "pyproject.toml").read_text()
    project = pyproject.split("[project]", 1)[1].split("\n[", 1)[0]
    assert not re.search(r"^version\s*=", project, re.MULTILINE), "pyproject.toml must not repeat the version"
    assert re.search(r'^dynamic\s*=\s*\[[^]]*"version"', project, re.MULTILINE)
    init = (ROOT / "python" / "freeagentics_rs" / "__init__.py").read_text()
    assert cargo_version() not in init, "__init__.py must read the version from the package metadata"


def test_version_comes_from_the_package_metadata():
    assert freeagentics_rs.__version__ == metadata.version("freeagentics_rs") == cargo_version()
