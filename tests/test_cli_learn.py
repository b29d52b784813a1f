"""``freeagentics-rs demo --model tmaze --learn``: the learning table, its plot, and the
arguments it refuses."""

from __future__ import annotations

import os
import subprocess
import sys

import freeagentics_rs
import pytest


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, FREEAGENTICS_RS_BACKEND=freeagentics_rs.BACKEND)
    return subprocess.run(
        [sys.executable, "-m", "freeagentics_rs", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def table(stdout: str) -> list[list[float]]:
    rows = [line for line in stdout.splitlines() if line.startswith("| ") and line[2].isdigit()]
    return [[float(cell) for cell in line.strip("|").split("|")] for line in rows]


def test_learning_demo_prints_blocks_in_which_the_agents_learn():
    result = cli("demo", "--model", "tmaze", "--learn", "--agents", "60", "--trials", "30", "--block", "10")
    assert result.returncode == 0, result.stderr
    assert "| trials | P(reward \\| correct arm), learned | rewarded trials in block |" in result.stdout
    rows = table(result.stdout)
    assert [r[0] for r in rows] == [10, 20, 30]
    assert all(0 <= r[1] <= 1 and 0 <= r[2] <= 1 for r in rows)
    assert rows[0][1] > 0.5 and rows[-1][1] > rows[0][1]  # learned from a flat 0.5
    assert rows[-1][2] > 0.6  # most trials rewarded once the arms are learned


def test_learning_demo_plots_both_curves(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "learn.png"
    result = cli(
        "demo", "--model", "tmaze", "--learn", "--agents", "8", "--trials", "4", "--block", "3", "--plot", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r[0] for r in table(result.stdout)] == [3, 4]  # the last block may be short


@pytest.mark.parametrize(
    "args",
    [
        ["demo", "--learn"],
        ["demo", "--model", "tmaze", "--plot", "x.png"],
        ["demo", "--model", "explorer", "--learn"],
    ],
)
def test_learn_and_plot_need_the_tmaze(args):
    result = cli(*args)
    assert result.returncode == 2 and "demo: --learn and --plot need --model tmaze --learn" in result.stderr


@pytest.mark.parametrize("args", [["--trials", "0"], ["--block", "x"]])
def test_bad_learning_arguments_exit_2_with_usage(args):
    result = cli("demo", "--model", "tmaze", "--learn", *args)
    assert result.returncode == 2 and "usage: freeagentics-rs" in result.stderr


def test_bench_row_of_learning_agents(tmp_path):
    import json

    out = tmp_path / "bench.json"
    result = cli("bench", "--quick", "--only", "agents-tmaze-learn", "--json", str(out))
    assert result.returncode == 0, result.stderr
    (row,) = json.loads(out.read_text())["rows"]
    assert row["key"] == "agents-tmaze-learn" and row["unit"] == "s per agent-step"
    for kind, cell in row["results"].items():
        assert kind in ("baseline", "python", "rust")
        assert "unavailable" in cell or 0 < cell["min"] <= cell["median"] <= cell["max"]
    assert "| agent step learning pA[1] (update_A each step)" in result.stdout
