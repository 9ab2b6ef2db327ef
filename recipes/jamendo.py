"""MTG-Jamendo → music: the tracks a metadata TSV of the MTG-Jamendo repository lists.

Assumed layout: the metadata from github.com/MTG/mtg-jamendo-dataset (`data/autotagging.tsv`,
`data/raw_30s.tsv`, `data/splits/split-0/autotagging-train.tsv`, ...), columns TRACK_ID,
ARTIST_ID, ALBUM_ID, PATH, DURATION, TAGS (the tags run on as extra tab-separated fields),
and the audio as its download script unpacks it, 320 kb/s (or `.low.mp3` 96 kb/s) MP3:

    <audio root>/                       <- --root
        00/1234500.mp3 ... 99/...       PATH is relative to this folder, e.g. 14/214.mp3
                                        (14/214.low.mp3 for the low-quality download)

    python recipes/jamendo.py --root /data/jamendo --tsv mtg-jamendo-dataset/data/raw_30s.tsv \
        --out data_manifests/jamendo.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import read_table, run_recipe

from encodec_train.data.manifest_cli import AudioSource, BuildReport, build_manifest_from_sources

DOMAIN = "music"
DATASET = "jamendo"


def track_path(root: Path, relative: str) -> Path:
    """The track's file: the full-quality MP3, else the `.low.mp3` download, else the
    full-quality path (which the build then reports as missing)."""
    path = root / relative
    low = path.with_suffix(".low.mp3")
    return low if not path.is_file() and low.is_file() else path


def sources(root: Path, tsv: Path | None = None) -> list[AudioSource]:
    """The tracks listed in `tsv` (default `root/autotagging.tsv`)."""
    root = Path(root)
    rows = read_table(Path(tsv or root / "autotagging.tsv"), ["PATH"], delimiter="\t")
    return [AudioSource(track_path(root, row["PATH"]), DOMAIN, DATASET) for row in rows]


def build(root: Path, out: Path, tsv: Path | None = None, **options: Any) -> BuildReport:
    """Write the Jamendo manifest `out`; `options` go to `build_manifest_from_sources`."""
    return build_manifest_from_sources(sources(root, tsv), out, **options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Jamendo's own option."""
    parser.add_argument("--tsv", type=Path, help="metadata TSV (default: ROOT/autotagging.tsv)")


if __name__ == "__main__":
    sys.exit(run_recipe(build, __doc__.split("\n\n")[0], add_arguments))
