"""The freeagentics-rs command: every subcommand at small sizes, its JSON, bad arguments, a
plot, and Ctrl-C during a run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import freeagentics_rs
import pytest


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = dict(os.environ, FREEAGENTICS_RS_BACKEND=freeagentics_rs.BACKEND)
    return subprocess.run(
        [sys.executable, "-m", "freeagentics_rs", *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def extension_built() -> bool:
    try:
        freeagentics_rs._backend.native()
    except ImportError:
        return False
    return True


@pytest.mark.parametrize("command", ["demo", "bench", "profile"])
def test_help_on_every_command(command):
    result = cli(command, "--help")
    assert result.returncode == 0 and f"usage: freeagentics-rs {command}" in result.stdout


def _help_paragraphs(parser) -> list[str]:
    """The prose argparse prints for ``parser``: its description and epilog, and each
    subcommand's one-line help."""
    texts = [parser.description, parser.epilog]
    for action in parser._actions:
        for choice in getattr(action, "_choices_actions", []):
            texts.append(choice.help)
    return [t for t in texts if t]


@pytest.mark.parametrize("command", [None, "demo", "bench", "profile"])
def test_help_is_whole_sentences_in_plain_text(command):
    from freeagentics_rs.cli import parser

    root = parser()
    sub = root if command is None else root._subparsers._group_actions[0].choices[command]
    paragraphs = _help_paragraphs(sub)
    assert paragraphs and sub.description
    for text in paragraphs:
        assert text[0].isupper() and text.rstrip().endswith("."), text  # not cut mid-sentence
        assert "`" not in text, text  # argparse prints reStructuredText markup as it is
    assert "`" not in sub.format_help()


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["nonsense"],
        ["demo", "--agents", "0"],
        ["demo", "--strategies", "magic"],
        ["bench", "--only", "everything"],
        ["profile", "--workload", "gpu"],
        ["demo", "--steps", "x"],
        ["profile", "--threads", "1"],
        ["bench", "--runs", "3"],
        ["demo", "--budget", "nan"],
        ["demo", "--budget", "-1"],
    ],
)
def test_bad_arguments_exit_2_with_usage(args):
    result = cli(*args)
    assert result.returncode == 2 and "usage: freeagentics-rs" in result.stderr


def test_demo_runs_every_strategy_and_writes_json(tmp_path):
    out = tmp_path / "demo.json"
    result = cli("demo", "--agents", "12", "--steps", "3", "--grid", "4", "--budget", "1", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert report["command"] == "demo" and report["config"] == {"agents": 12, "steps": 3, "grid": 4, "budget": 1.0}
    assert {"cpu", "cpus", "python", "numpy"} <= set(report["machine"])
    rows = {r["strategy"]: r for r in report["strategies"]}
    assert list(rows) == ["freeagentics", "workstealing", "adaptive", "native-rust", "native-python", "processes"]
    for name, row in rows.items():
        if row["available"]:
            assert row["agent_steps"] > 0 and row["agent_steps_per_s"] > 0 and row["seconds"] > 0, name
        else:
            assert row["reason"] and f"{name}: not run" in result.stderr
    assert rows["native-python"]["available"] and rows["native-python"]["agent_steps"] == 36
    assert rows["native-rust"]["available"] == extension_built()
    assert "| native population, numpy kernel |" in result.stdout


def test_demo_runs_the_tmaze():
    result = cli("demo", "--model", "tmaze", "--agents", "20", "--steps", "4", "--budget", "1")
    assert result.returncode == 0, result.stderr
    assert "| native population, numpy backend |" in result.stdout
    rust_row = next(line for line in result.stdout.splitlines() if line.startswith("| native population, Rust"))
    assert ("not available" in rust_row) != extension_built()


def test_bench_rows_and_json(tmp_path):
    out, plot = tmp_path / "bench.json", tmp_path / "bench.png"
    result = cli(
        "bench", "--quick", "--only", "dispatch", "registry", "agents", "--json", str(out), "--plot", str(plot)
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    # "registry" selects the registry at 1, 2 and 4 threads (the 4-thread row keeps its key)
    keys = ["registry-1", "registry-2", "registry", "dispatch", "agents"]
    assert [r["key"] for r in report["rows"]] == keys and report["runs"] == 5
    for row in report["rows"]:
        kinds = {"baseline", "python"} | ({"rust"} if extension_built() else set())
        assert set(row["results"]) == kinds
        for cell in row["results"].values():
            assert "unavailable" in cell or cell["min"] <= cell["median"] <= cell["max"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for threads in ("1 thread,", "2 threads,", "4 threads,"):
        assert f"| registry: {threads}" in result.stdout
    assert "Machine:" in result.stdout


def test_profile_reports_and_writes_json(tmp_path):
    out = tmp_path / "profile.json"
    result = cli("profile", "--workload", "io", "--threads", "2", "--tasks", "20", "--json", str(out))
    assert result.returncode == 0, result.stderr
    report = json.loads(out.read_text())
    assert {"measurements", "bottlenecks", "recommendations", "machine"} <= set(report)
    assert len(report["measurements"]["executors"]) == 2 and report["measurements"]["gil"]["threads"] == 2
    assert "# Threading report" in result.stdout and "## Recommendations" in result.stdout


def test_ctrl_c_stops_the_demo_with_a_partial_table():
    env = dict(os.environ, FREEAGENTICS_RS_BACKEND=freeagentics_rs.BACKEND)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "freeagentics_rs",
            "demo",
            "--agents",
            "50",
            "--steps",
            "200000",  # minutes of work: Ctrl-C lands while a strategy runs
            "--grid",
            "5",
            "--strategies",
            "native-python",
            "native-rust",
            "--budget",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout.readline().startswith("Machine:")
    proc.stdout.readline()  # the simulation line: the first strategy is starting
    # Its progress bar on stderr, refreshed once: the strategy is stepping its agents (a signal
    # during the setup is covered by the test below).
    shown = ""
    while shown.count("agent-steps/s") < 2:
        char = proc.stderr.read(1)
        assert char, "the demo ended before its first strategy made progress"
        shown += char
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Interrupted: the table holds the strategies that finished." in stdout
    assert "| strategy |" in stdout


def test_numpy_random_is_imported_before_a_command_runs():
    """numpy imports numpy.random on first use, which the demo's first strategy made (building
    its grid world): a Ctrl-C landing in that import was swallowed by its extension modules, and
    the demo ran on (about one run in ten with the signal 30-50 ms after the simulation line on
    the Python backend), or died by the signal at exit. The command imports it first."""
    code = (
        "import sys\n"
        "from freeagentics_rs.cli import main\n"
        "try:\n"
        "    main(['demo', '--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('numpy.random' in sys.modules)\n"
    )
    env = dict(os.environ, FREEAGENTICS_RS_BACKEND=freeagentics_rs.BACKEND)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "True", result.stderr


@pytest.mark.parametrize("rows", [1, 2, 3, 13])
def test_bench_plot_draws_any_number_of_rows(tmp_path, rows):
    """The charts sit on a grid of 3 columns: a row count that is not a multiple of 3 leaves
    empty panels, which must not stop the drawing."""
    pytest.importorskip("matplotlib")
    from freeagentics_rs.cli._render import bench_plot

    cell = {"median": 1.0, "min": 0.9, "max": 1.2, "runs": 5}
    report = {
        "machine": {"cpu": "test", "cpus": 2, "python": "3", "numpy": "2", "freeagentics_rs": "0", "backend": "python"},
        "rows": [
            {"key": f"r{i}", "title": f"row {i}", "unit": "s per run", "baseline": "b", "results": {"baseline": cell}}
            for i in range(rows)
        ],
    }
    bench_plot(report, str(tmp_path / "bench.png"))
    assert (tmp_path / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
