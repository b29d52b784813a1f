"""Writes the README's benchmark table from a `freeagentics-rs bench --json` file, between the
markers `<!-- bench:start -->` and `<!-- bench:end -->`; nothing in that section is typed by hand.

Usage: python docs/render_bench.py docs/bench.json [README.md]
(docs/bench.json and docs/bench.png come from `freeagentics-rs bench --json docs/bench.json
--plot docs/bench.png`.)
"""

from __future__ import annotations

import json
import re
import sys

from freeagentics_rs.cli._render import bench_markdown

START, END = "<!-- bench:start -->", "<!-- bench:end -->"


def main(path: str, readme: str = "README.md") -> None:
    with open(path, encoding="utf-8") as f:
        report = json.load(f)
    table = bench_markdown(report)
    with open(readme, encoding="utf-8") as f:
        text = f.read()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} section")
    section = f"{START}\n{table}\n\n![bench charts](docs/bench.png)\n{END}"
    text = re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: section, text, flags=re.S)
    with open(readme, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main(*sys.argv[1:])
