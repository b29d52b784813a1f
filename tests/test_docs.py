"""The README's benchmark table is the rendering of docs/bench.json, not typed by hand."""

from __future__ import annotations

import importlib.util
import json
import pathlib

from freeagentics_rs.cli._render import bench_markdown

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_readme_bench_section_is_rendered_from_the_json():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("<!-- bench:start -->\n", 1)[1].split("<!-- bench:end -->", 1)[0]
    report = json.loads((ROOT / "docs" / "bench.json").read_text(encoding="utf-8"))
    assert section == f"{bench_markdown(report)}\n\n![bench charts](docs/bench.png)\n"
    assert (ROOT / "docs" / "bench.png").read_bytes()[:4] == b"\x89PNG"


def _bench(group, params, family=None, median=0.01, **extra):
    info = dict(extra, **({"family": family} if family else {}))
    stats = {"median": median, "min": median * 0.9, "max": median * 1.1, "rounds": 5}
    return {"group": group, "params": params, "extra_info": info, "stats": stats}


def _table_module():
    spec = importlib.util.spec_from_file_location("bench_table", ROOT / "benches" / "table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_tables_are_separated_by_a_blank_line(tmp_path, capsys):
    """Two markdown tables with no blank line between them render as one."""
    benchmarks = [
        _bench("submit", {"kind": "ThreadPoolExecutor"}),
        _bench("submit", {"kind": "rust"}),
        _bench("scaling 1", {"kind": "rust"}, "scaling", tasks=10, threads=1),
        _bench("I/O", {"executor": "ThreadPoolExecutor(8)"}, "adaptive"),
        _bench("registry, 4 threads", {"kind": "dict + lock"}, "registry"),
        _bench("registry, 4 threads", {"kind": "dict, no lock"}, "registry", median=0.005),
        _bench("registry, 4 threads", {"kind": "rust"}, "registry"),
        _bench("manager: step", {"kind": "FreeAgentics design"}, "manager"),
        _bench("agent I/O", {"pattern": "baseline"}, "agent-io", steps=100, rounds=2),
        _bench("agent I/O", {"pattern": "manager"}, "agent-io", steps=1000, rounds=20),
        _bench("buffer", {"kind": "np.zeros"}, "memory"),
        _bench("agents", {"n": 1}, "agents", kind="rust", steps=10),
    ]
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"machine_info": {"python_version": "3.11"}, "benchmarks": benchmarks}))
    _table_module().main(str(path))
    lines = capsys.readouterr().out.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("|") and not lines[i - 1].startswith("|")]
    assert len(starts) == 8
    assert all(lines[i - 1] == "" for i in starts), [lines[i - 1 : i + 1] for i in starts]
    registry = next(line for line in lines if "| dict, no lock |" in line)
    assert registry.endswith("| 2.00x | 1.00x |")  # against the locked and the unlocked dict
    manager_row = next(line for line in lines if line.startswith("| agent I/O | manager |"))
    # 20 rounds per sample: 0.5 ms per round, beside the 10 ms per sample
    assert "| 20 | 10.0 ms |" in manager_row and "| 0.5 ms |" in manager_row
