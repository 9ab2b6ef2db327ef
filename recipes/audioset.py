"""AudioSet → general: the downloaded clips of the chosen segment lists.

AudioSet ships no audio, only segment lists; clips are fetched from YouTube by third-party
scripts, each naming files its own way. Assumed layout:

    <root>/                             <- --root (or --csv-dir for the lists)
        balanced_train_segments.csv     "# YTID, start_seconds, end_seconds, positive_labels"
        unbalanced_train_segments.csv   after three "#" comment lines, e.g.
        eval_segments.csv               --PJHxphWEs, 30.000, 40.000, "/m/09x0r,/t/dd00088"
        <any folders>/<clip>.wav|.flac|...  a clip's file name starts with its 11-character
                                        YTID, optionally after a "Y" and followed by "_" or
                                        "-" and the times: Y--PJHxphWEs.wav,
                                        --PJHxphWEs_30.000_40.000.flac, --PJHxphWEs_30000.wav

A clip is used when its YTID is in a chosen list; listed clips without a file are reported as
missing (YouTube videos disappear). `eval` is left out by default to keep it held out.

    python recipes/audioset.py --root /data/audioset --out data_manifests/audioset.jsonl
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Container
from pathlib import Path
from typing import Any

from common import read_table, run_recipe

from encodec_train.data.audio_probe import Probe, find_audio
from encodec_train.data.manifest_cli import AudioSource, BuildReport, build_manifest_from_sources

SUBSETS = ("balanced_train", "unbalanced_train", "eval")
COLUMNS = ("YTID", "start_seconds", "end_seconds", "positive_labels")
DOMAIN = "general"
DATASET = "audioset"
YTID_LENGTH = 11


def clip_id(path: Path, listed: Container[str]) -> str | None:
    """The listed YTID a clip file's name starts with (after an optional "Y"), or None."""
    stem = path.name.split(".")[0]
    for start in (1, 0) if stem.startswith("Y") else (0,):
        ytid = stem[start : start + YTID_LENGTH]
        rest = stem[start + YTID_LENGTH :]
        if ytid in listed and (not rest or rest[0] in "_-"):
            return ytid
    return None


def listed_segments(csv_dir: Path, subsets: tuple[str, ...]) -> dict[str, str]:
    """YTID → segment list file name, for every segment of `subsets`."""
    unknown = sorted(set(subsets) - set(SUBSETS))
    if unknown:
        raise ValueError(f"unknown AudioSet subset(s) {unknown}; choose from {SUBSETS}")
    listed = {}
    for subset in subsets:
        table = csv_dir / f"{subset}_segments.csv"
        for row in read_table(table, ["YTID"], fieldnames=COLUMNS, comment="#"):
            listed[row["YTID"]] = table.name
    return listed


def sources(
    root: Path,
    subsets: tuple[str, ...] = ("balanced_train", "unbalanced_train"),
    csv_dir: Path | None = None,
) -> tuple[list[AudioSource], list[Probe]]:
    """The clips of `subsets` found below `root`, and a `missing` probe for each listed
    segment that has no file."""
    root = Path(root)
    listed = listed_segments(Path(csv_dir or root), tuple(subsets))
    found: list[AudioSource] = []
    seen = set()
    for path in find_audio(root):
        ytid = clip_id(path, listed)
        if ytid:
            found.append(AudioSource(path, DOMAIN, DATASET))
            seen.add(ytid)
    absent = [
        Probe(f"{table}: {ytid}", problem="missing", detail="listed but not downloaded")
        for ytid, table in listed.items()
        if ytid not in seen
    ]
    return found, absent


def build(
    root: Path,
    out: Path,
    subsets: tuple[str, ...] = ("balanced_train", "unbalanced_train"),
    csv_dir: Path | None = None,
    **options: Any,
) -> BuildReport:
    """Write the AudioSet manifest `out`; `options` go to `build_manifest_from_sources`."""
    found, absent = sources(root, subsets, csv_dir)
    return build_manifest_from_sources(found, out, skipped=absent, **options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """AudioSet's own options."""
    parser.add_argument(
        "--subsets", nargs="+", choices=SUBSETS, default=["balanced_train", "unbalanced_train"]
    )
    parser.add_argument("--csv-dir", type=Path, help="folder of the segment lists (default ROOT)")


if __name__ == "__main__":
    sys.exit(run_recipe(build, __doc__.split("\n\n")[0], add_arguments))
