"""Evaluation results on disk: per-file CSV, per-category summary (CSV and JSON), one
rate-distortion plot per metric and a Markdown report that ties them together."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

from encodec_train.evaluation.metrics import metric
from encodec_train.evaluation.runner import Evaluation, iter_rows, mean_or_none

ALL = "all"
"""The category name of the means over every file."""


def summarize(evaluation: Evaluation, metrics: Sequence[str]) -> list[dict]:
    """Means per (system, setting, category), plus category `all`: the real kbps, the file
    count and each metric's mean over the files where it applies (None: nowhere)."""
    rows = evaluation.rows
    systems = list(dict.fromkeys((r["system"], r["setting"]) for r in rows))
    categories = list(dict.fromkeys(r["category"] for r in rows))
    summary = []
    for label, setting in systems:
        for category in [ALL, *categories]:
            match = {"system": label, "setting": setting}
            if category != ALL:
                match["category"] = category
            group = list(iter_rows(rows, **match))
            entry = {"system": label, "setting": setting, "category": category}
            entry["kbps"] = mean_or_none([r["kbps"] for r in group])
            entry["files"] = len(group)
            entry.update({name: mean_or_none([r[name] for r in group]) for name in metrics})
            summary.append(entry)
    return summary


def _format(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def plot_rate_distortion(summary: Sequence[dict], name: str, path: Path) -> Path:
    """Metric `name` (mean over all files) against the real bitrate, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    info = metric(name)
    figure, axes = plt.subplots(figsize=(6, 4))
    overall = [s for s in summary if s["category"] == ALL and s[name] is not None]
    for label in dict.fromkeys(s["system"] for s in overall):
        points = sorted((s["kbps"], s[name]) for s in overall if s["system"] == label)
        axes.plot(*zip(*points, strict=True), marker="o", label=label)
    axes.set_xscale("log")
    # Ticks at the requested settings; the points sit at the real bitrates.
    axes.set_xticks(sorted({s["setting"] for s in overall}))
    axes.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
    axes.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    axes.set_xlabel("bitrate (kbps, log scale)")
    better = "higher" if info.higher_is_better else "lower"
    axes.set_ylabel(f"{info.label} ({better} is better)")
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def markdown_report(
    evaluation: Evaluation,
    summary: Sequence[dict],
    metrics: Sequence[str],
    manifest: str,
    plots: dict[str, Path],
    examples: Sequence[Path],
    root: Path,
) -> str:
    """The report: systems and real bitrates, one rate-distortion table and plot per metric
    (columns: all files, then each category), what was not evaluated, metric cost, examples."""
    categories = list(dict.fromkeys(r["category"] for r in evaluation.rows))
    files = len({r["file"] for r in evaluation.rows})
    lines = [
        "# Evaluation report",
        "",
        f"Test manifest: `{manifest}` ({files} files; categories: {', '.join(categories)}).",
        "Each cell is the mean over the files of the category where the metric applies "
        "(PESQ and STOI: speech only); `n/a`: it applies to none. Bitrates are the real ones: "
        "the codes' rate for our codecs, the measured packet rate for ffmpeg codecs.",
    ]
    for name in metrics:
        info = metric(name)
        better = "higher" if info.higher_is_better else "lower"
        header = ["system", "requested kbps", "real kbps", ALL, *categories]
        lines += ["", f"## {info.label} ({better} is better)", ""]
        lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        for entry in (s for s in summary if s["category"] == ALL):
            cells = [entry["system"], f"{entry['setting']:g}", f"{entry['kbps']:.2f}"]
            for category in [ALL, *categories]:
                match = next(
                    iter_rows(
                        summary,
                        system=entry["system"],
                        setting=entry["setting"],
                        category=category,
                    )
                )
                cells.append(_format(match[name]))
            lines.append("| " + " | ".join(cells) + " |")
        for skip in evaluation.skipped:
            setting = "—" if math.isnan(skip.setting) else f"{skip.setting:g}"
            cells = [skip.label, setting, "—", f"not evaluated: {skip.reason}"]
            lines.append("| " + " | ".join(cells + [""] * len(categories)) + " |")
        if name in plots:
            lines += ["", f"![{info.label}]({plots[name].relative_to(root)})"]
    lines += [
        "",
        "## Metric cost",
        "",
        "| metric | seconds per file | files |",
        "| --- | --- | --- |",
    ]
    for name, seconds in evaluation.seconds.items():
        lines.append(f"| {name} | {sum(seconds) / len(seconds):.4f} | {len(seconds)} |")
    if examples:
        lines += ["", "## Decoded examples", ""]
        lines += [f"- [{p.relative_to(root)}]({p.relative_to(root)})" for p in examples]
    return "\n".join(lines) + "\n"


def write_report(
    evaluation: Evaluation, metrics: Sequence[str], manifest: str, out_dir: str | Path
) -> Path:
    """Write `results.csv` (per file), `summary.csv`/`summary.json`, `plots/<metric>.png`
    and `report.md` under `out_dir`; return the report's path. Decoded examples already in
    `out_dir/examples/` are linked."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(evaluation, metrics)
    _write_csv(out / "results.csv", evaluation.rows)
    _write_csv(out / "summary.csv", summary)
    skipped = [vars(s) for s in evaluation.skipped]
    cost = {k: sum(v) / len(v) for k, v in evaluation.seconds.items()}
    record = {"manifest": manifest, "summary": summary, "skipped": skipped, "seconds": cost}
    (out / "summary.json").write_text(json.dumps(record, indent=2))
    plots = {
        name: plot_rate_distortion(summary, name, out / "plots" / f"{name}.png")
        for name in metrics
        if any(s[name] is not None for s in summary)
    }
    examples = sorted((out / "examples").rglob("*.wav"))
    text = markdown_report(evaluation, summary, metrics, manifest, plots, examples, out)
    (out / "report.md").write_text(text)
    return out / "report.md"


def _write_csv(path: Path, rows: Sequence[dict]) -> None:
    fields = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
