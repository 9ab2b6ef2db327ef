"""`python -m encodec_train.runs [folder]`: the runs under a folder (a runs root or a sweep),
one row each: overrides, step reached, status, latest validation metrics per bandwidth and
W&B URL; as a table in the terminal and, on request, as CSV or Markdown.

    python -m encodec_train.runs runs/bandwidth_sweep --metrics valid/mel heldout/si_snr
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import OmegaConf

from encodec_train.training.run_status import read_status

# `valid/mel@6kbps` (the validation loop), `heldout/si_snr@6kbps` (held-out validation).
METRIC = re.compile(r"^(?P<name>(valid/|heldout/)[^@]+)@(?P<bandwidth>[\d.]+)kbps$")
DEFAULT_METRICS = ["valid/mel", "heldout/mel_distance", "heldout/si_snr"]


def find_runs(root: Path) -> list[Path]:
    """Every run folder under `root` (itself included): a folder with a `run_id` file."""
    return sorted(path.parent for path in root.glob("**/run_id"))


def run_row(run_dir: Path, root: Path, metrics: Sequence[str]) -> dict[str, str]:
    """One run's row: its path under `root`, the overrides of its latest start, the step
    reached, its state, the chosen validation metrics at each bandwidth, and its W&B URL."""
    status = read_status(run_dir) or {}
    row = {
        "run": str(run_dir.relative_to(root)) if run_dir != root else run_dir.name,
        "overrides": " ".join(_latest_overrides(run_dir)),
        "step": str(status.get("step", _checkpoint_step(run_dir))),
        "status": _state(status),
    }
    for key, value in sorted(_metric_values(status).items(), key=_metric_order):
        match = METRIC.match(key)
        if match and match["name"] in metrics:
            row[f"{match['name']}@{match['bandwidth']}"] = f"{value:.4g}"
    row["wandb"] = status.get("wandb_url") or ""
    return row


def _metric_values(status: dict) -> dict[str, float]:
    """The latest validation and held-out validation metrics a run's status holds."""
    return {**status.get("validation", {}), **status.get("held_out", {})}


def logged_metrics(run_dirs: Sequence[Path]) -> set[str]:
    """The metric names (without the bandwidth) that any of the runs logged."""
    keys = (key for run in run_dirs for key in _metric_values(read_status(run) or {}))
    return {match["name"] for key in keys if (match := METRIC.match(key))}


def _latest_overrides(run_dir: Path) -> list[str]:
    starts = [p for p in (run_dir / "starts").glob("*/overrides.yaml") if p.parent.name.isdigit()]
    if not starts:
        return []
    return list(OmegaConf.load(max(starts, key=lambda p: int(p.parent.name))))


def _checkpoint_step(run_dir: Path) -> str:
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.exists():
        return "0"
    return str(torch.load(last, map_location="cpu", mmap=True, weights_only=True)["global_step"])


def _state(status: dict) -> str:
    """`running` only while the process lives (checked on its own host); a running run whose
    process is gone was killed without a chance to say so (SIGKILL, node failure)."""
    state = status.get("state", "not started")
    if state == "running" and status.get("host") == socket.gethostname():
        try:
            os.kill(status["pid"], 0)
        except ProcessLookupError:
            return "killed"
        except PermissionError:
            pass
    if state == "stopped":
        return f"stopped ({status.get('signal')})"
    return state


def _metric_order(item: tuple[str, float]) -> tuple[str, float]:
    match = METRIC.match(item[0])
    return (match["name"], float(match["bandwidth"])) if match else (item[0], 0.0)


def table(rows: list[dict[str, str]]) -> tuple[list[str], list[list[str]]]:
    """The columns (every key any row has, in first-seen order, the W&B URL last) and the
    cells."""
    columns = list(dict.fromkeys(key for row in rows for key in row if key != "wandb"))
    columns.append("wandb")
    return columns, [[row.get(column, "") for column in columns] for row in rows]


def as_text(rows: list[dict[str, str]]) -> str:
    columns, cells = table(rows)
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def as_markdown(rows: list[dict[str, str]]) -> str:
    columns, cells = table(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict[str, str]], path: Path) -> None:
    columns, cells = table(rows)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        writer.writerows(cells)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m encodec_train.runs", description=__doc__)
    parser.add_argument("folder", nargs="?", default="runs", type=Path)
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="metrics to show, as logged without the bandwidth (valid/si_snr, heldout/visqol, "
        f"...; default: {' '.join(DEFAULT_METRICS)})",
    )
    parser.add_argument("--csv", type=Path, help="also write the table as CSV here")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"{args.folder}: no such folder", file=sys.stderr)
        return 2
    runs = find_runs(args.folder)
    if not runs:
        print(f"{args.folder}: no runs (folders with a run_id file) under it", file=sys.stderr)
        return 1
    metrics = args.metrics or DEFAULT_METRICS
    rows = [run_row(run, args.folder, metrics) for run in runs]
    if args.metrics:
        logged = logged_metrics(runs)
        for name in (m for m in args.metrics if m not in logged):
            print(
                f"--metrics {name}: no run under {args.folder} logged it; logged: "
                f"{', '.join(sorted(logged)) or 'none'}",
                file=sys.stderr,
            )
    print(as_text(rows))
    if args.csv:
        write_csv(rows, args.csv)
    if args.markdown:
        args.markdown.write_text(as_markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
