"""The README's benchmark table is the rendering of docs/bench.json, not typed by hand."""

from __future__ import annotations

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
