"""FSD50K → general: the clips of the chosen ground-truth splits.

Assumed layout of the Zenodo release (record 4060432), 44.1 kHz mono 16-bit WAV:

    FSD50K/                             <- --root
        FSD50K.dev_audio/<fname>.wav    40,966 clips
        FSD50K.eval_audio/<fname>.wav   10,231 clips
        FSD50K.ground_truth/dev.csv     columns fname, labels, mids, split (train / val)
        FSD50K.ground_truth/eval.csv    columns fname, labels, mids
        FSD50K.metadata/, FSD50K.doc/   (not used)

`eval` is left out by default so that it stays a held-out test set.

    python recipes/fsd50k.py --root /data/FSD50K --out data_manifests/fsd50k.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import read_table, run_recipe

from encodec_train.data.manifest_cli import AudioSource, BuildReport, build_manifest_from_sources

SPLITS = ("train", "val", "eval")
DOMAIN = "general"
DATASET = "fsd50k"


def sources(root: Path, splits: tuple[str, ...] = ("train", "val")) -> list[AudioSource]:
    """The clips of `splits`, in ground-truth order (dev first, then eval)."""
    root = Path(root)
    unknown = sorted(set(splits) - set(SPLITS))
    if unknown:
        raise ValueError(f"unknown FSD50K split(s) {unknown}; choose from {SPLITS}")
    truth = root / "FSD50K.ground_truth"
    found = []
    if {"train", "val"} & set(splits):
        for row in read_table(truth / "dev.csv", ["fname", "split"]):
            if row["split"] in splits:
                found.append(root / "FSD50K.dev_audio" / f"{row['fname']}.wav")
    if "eval" in splits:
        for row in read_table(truth / "eval.csv", ["fname"]):
            found.append(root / "FSD50K.eval_audio" / f"{row['fname']}.wav")
    return [AudioSource(path, DOMAIN, DATASET) for path in found]


def build(
    root: Path, out: Path, splits: tuple[str, ...] = ("train", "val"), **options: Any
) -> BuildReport:
    """Write the FSD50K manifest `out`; `options` go to `build_manifest_from_sources`."""
    return build_manifest_from_sources(sources(root, tuple(splits)), out, **options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """FSD50K's own option."""
    parser.add_argument("--splits", nargs="+", choices=SPLITS, default=["train", "val"])


if __name__ == "__main__":
    sys.exit(run_recipe(build, __doc__.split("\n\n")[0], add_arguments))
