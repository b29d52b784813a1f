"""Writes the benchmark table from a `freeagentics-rs bench --json` file into README.md and
docs/benchmarks.md, between the markers `<!-- bench:start -->` and `<!-- bench:end -->`; nothing
in those sections is typed by hand.

Usage:
    python docs/render_bench.py docs/bench.json
    python docs/render_bench.py docs/bench.json --merge new.json

(docs/bench.json and docs/bench.png come from `freeagentics-rs bench --json docs/bench.json
--plot docs/bench.png`.) `--merge` takes the rows of another `bench --json` file (rows re-measured
with `--only`), puts them in place of the rows with the same keys in docs/bench.json, records
when they were measured, and redraws docs/bench.png (needs matplotlib).
"""

from __future__ import annotations

import argparse
import json
import pathlib

from freeagentics_rs.cli._render import bench_markdown, bench_plot

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
DOCS = pathlib.Path(__file__).resolve().parent
# Each page that shows the table, with the path of the charts relative to it.
PAGES = {DOCS.parent / "README.md": "docs/bench.png", DOCS / "benchmarks.md": "bench.png"}


def section(report: dict, charts: str) -> str:
    return f"{START}\n{bench_markdown(report)}\n\n![bench charts]({charts})\n{END}"


def merge(report: dict, new: dict) -> dict:
    """``report`` with ``new``'s rows in place of those with the same keys (new keys at the end)."""
    rows = {row["key"]: row for row in new["rows"]}
    merged = [rows.pop(row["key"], row) for row in report["rows"]] + list(rows.values())
    remeasured = [*report.get("remeasured", []), {"rows": [r["key"] for r in new["rows"]], "time": new["time"]}]
    return {**report, "rows": merged, "remeasured": remeasured}


def render(report: dict) -> None:
    for page, charts in PAGES.items():
        text = page.read_text(encoding="utf-8")
        if START not in text or END not in text:
            raise SystemExit(f"{page} has no {START} ... {END} section")
        before, rest = text.split(START, 1)
        after = rest.split(END, 1)[1]
        page.write_text(before + section(report, charts) + after, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("report", help="the bench --json file the table is rendered from (docs/bench.json)")
    args.add_argument("--merge", metavar="NEW", help="a bench --json file whose rows replace those of REPORT")
    options = args.parse_args(argv)
    path = pathlib.Path(options.report)
    report = json.loads(path.read_text(encoding="utf-8"))
    if options.merge:
        report = merge(report, json.loads(pathlib.Path(options.merge).read_text(encoding="utf-8")))
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        bench_plot(report, str(path.with_suffix(".png")))
    render(report)


if __name__ == "__main__":
    main()
