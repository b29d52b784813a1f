"""The docs: the benchmark table of the README and of docs/benchmarks.md is the rendering of
docs/bench.json, not typed by hand; every page the site's nav names exists and every Python
example in the README and the pages is valid Python; benches/table.py prints readable tables."""

from __future__ import annotations

import ast
import importlib.util
import json
import pathlib
import re

import pytest
from freeagentics_rs.cli._render import bench_markdown

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))


def _bench_section(path: pathlib.Path) -> str:
    text = path.read_text(encoding="utf-8")
    return text.split("<!-- bench:start -->\n", 1)[1].split("<!-- bench:end -->", 1)[0]


@pytest.mark.parametrize(("page", "charts"), [("README.md", "docs/bench.png"), ("docs/benchmarks.md", "bench.png")])
def test_bench_section_is_rendered_from_the_json(page, charts):
    report = json.loads((DOCS / "bench.json").read_text(encoding="utf-8"))
    assert _bench_section(ROOT / page) == f"{bench_markdown(report)}\n\n![bench charts]({charts})\n"
    assert (DOCS / "bench.png").read_bytes()[:4] == b"\x89PNG"


def test_every_page_of_the_nav_exists():
    nav = re.findall(r"^\s+- (?:[^:\n]+: )?(\S+\.md)$", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    assert "index.md" in nav and "design.md" in nav and "learning.md" in nav and len(nav) > 20
    assert all((DOCS / page).is_file() for page in nav), [p for p in nav if not (DOCS / p).is_file()]
    # every page under docs/ is in the nav (mkdocs --strict would only warn about it)
    pages = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md")}
    assert pages <= set(nav), pages - set(nav)


def test_the_readme_links_to_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#]+)", (ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(links) >= 10
    assert all((ROOT / link).is_file() for link in links), [link for link in links if not (ROOT / link).is_file()]


@pytest.mark.parametrize("page", [ROOT / "README.md", *PAGES], ids=lambda p: p.name)
def test_python_examples_are_valid_python(page):
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(encoding="utf-8"), re.S | re.M)
    for block in blocks:  # top-level await as in an asyncio REPL or a notebook
        compile(block, str(page), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)


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


def test_merging_remeasured_rows_keeps_the_order_and_records_when():
    spec = importlib.util.spec_from_file_location("render_bench", DOCS / "render_bench.py")
    render_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(render_bench)
    report = {"time": "t0", "rows": [{"key": "a", "v": 1}, {"key": "b", "v": 1}, {"key": "c", "v": 1}]}
    new = {"time": "t1", "rows": [{"key": "b", "v": 2}, {"key": "d", "v": 2}]}
    merged = render_bench.merge(report, new)
    assert [(r["key"], r["v"]) for r in merged["rows"]] == [("a", 1), ("b", 2), ("c", 1), ("d", 2)]
    assert merged["time"] == "t0" and merged["remeasured"] == [{"rows": ["b", "d"], "time": "t1"}]
    assert report["rows"][1]["v"] == 1  # the original is left as it was
