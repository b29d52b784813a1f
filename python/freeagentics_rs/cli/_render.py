"""Markdown tables and PNG charts of ``bench`` results (also used to write the README's
performance section from a ``bench --json`` file: ``docs/render_bench.py``)."""

from __future__ import annotations

from typing import Any

from ._machine import machine_line

LABELS = {"baseline": None, "python": "Python fallback", "rust": "Rust core"}


def _value(cell: dict[str, Any], unit: str) -> str:
    if "unavailable" in cell:
        return "n/a"

    def fmt(v: float) -> str:
        if unit == "bytes per agent":
            return f"{v / 1024:.2f} KB"
        if unit == "s per agent-step":
            return f"{v * 1e6:,.2f} µs"
        return f"{v * 1e3:,.1f} ms"

    return f"{fmt(cell['median'])} ({fmt(cell['min'])} – {fmt(cell['max'])})"


def _ratio(row: dict[str, Any], kind: str) -> str:
    base, cell = row["results"].get("baseline", {}), row["results"].get(kind, {})
    if "median" not in base or "median" not in cell or not cell["median"]:
        return "n/a"
    return f"{base['median'] / cell['median']:,.2f}x"


def bench_markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine_line(report['machine'])}. Median (min – max) of {report['runs']} runs after a warm-up"
        f"{'; quick sizes' if report.get('quick') else ''}. "
        "Ratios: baseline time / this time (memory: baseline / this).",
        "",
        "| benchmark | baseline | baseline time | Python fallback | Rust core "
        "| Python vs baseline | Rust vs baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        cells = row["results"]
        values = [_value(cells[k], row["unit"]) if k in cells else "n/a" for k in ("baseline", "python", "rust")]
        lines.append(
            f"| {row['title']} | {row['baseline']} | {' | '.join(values)} "
            f"| {_ratio(row, 'python')} | {_ratio(row, 'rust')} |"
        )
    return "\n".join(lines)


def bench_plot(report: dict[str, Any], path: str) -> None:
    """One bar chart per row: medians with min-max whiskers, log scale where they differ a lot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["rows"]
    columns = 3
    figure_rows = -(-len(rows) // columns)
    fig, axes = plt.subplots(figure_rows, columns, figsize=(5 * columns, 3.2 * figure_rows), squeeze=False)
    for ax in axes.flat[len(rows) :]:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows, strict=False):  # the grid may have more panels than rows
        kinds = [k for k in ("baseline", "python", "rust") if "median" in row["results"].get(k, {})]
        medians = [row["results"][k]["median"] for k in kinds]
        low = [m - row["results"][k]["min"] for k, m in zip(kinds, medians, strict=True)]
        high = [row["results"][k]["max"] - m for k, m in zip(kinds, medians, strict=True)]
        ax.bar(
            range(len(kinds)),
            medians,
            yerr=[low, high],
            color=["#999999", "#4c72b0", "#dd8452"][: len(kinds)],
            capsize=3,
        )
        ax.set_xticks(range(len(kinds)), [LABELS[k] or row["baseline"] for k in kinds], fontsize=7)
        ax.set_title(row["title"], fontsize=8)
        ax.set_ylabel(row["unit"], fontsize=7)
        if medians and min(medians) > 0 and max(medians) / min(medians) > 30:
            ax.set_yscale("log")
    fig.suptitle(f"freeagentics_rs bench — {machine_line(report['machine'])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
