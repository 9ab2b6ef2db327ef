"""Common Voice → speech: the clips a split's TSV lists (default `validated.tsv`).

Assumed layout of a Mozilla Common Voice release (`cv-corpus-<version>/<locale>/`), MP3
clips at 32–48 kHz mono:

    <locale>/                           <- --root (or a folder of several locales)
        clips/common_voice_<locale>_<n>.mp3
        validated.tsv  train.tsv  dev.tsv  test.tsv  invalidated.tsv  other.tsv
                                        columns: client_id, path, sentence, up_votes,
                                        down_votes, age, gender, accents, locale, segment
                                        (newer releases add sentence_id, variant, ...);
                                        `path` is the clip's file name in clips/

The same corpus can be read through Hugging Face `datasets` instead: `--datasets` loads
`--root` with `datasets.load_dataset` (an audiofolder, or a downloaded snapshot of a hub
dataset), and `--hub NAME --hub-config LOCALE` loads a hub dataset over the network; audio
stored inside the dataset is written below `--root`.

    python recipes/common_voice.py --root /data/cv-corpus-17.0/en --out data_manifests/cv.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import huggingface_sources, read_table, run_recipe

from encodec_train.data.manifest_cli import AudioSource, BuildReport, build_manifest_from_sources

DOMAIN = "speech"
DATASET = "common_voice"


def sources(root: Path, split: str = "validated") -> list[AudioSource]:
    """The clips listed in `<split>.tsv` of `root`, or of each locale folder below it."""
    root = Path(root)
    tables = [root / f"{split}.tsv"] if (root / f"{split}.tsv").is_file() else []
    tables = tables or sorted(root.glob(f"*/{split}.tsv"))
    if not tables:
        raise FileNotFoundError(f"no {split}.tsv in {root} or its locale folders")
    return [
        AudioSource(table.parent / "clips" / row["path"], DOMAIN, DATASET)
        for table in tables
        for row in read_table(table, ["path"], delimiter="\t")
    ]


def build(
    root: Path,
    out: Path,
    split: str = "validated",
    datasets: bool = False,
    hub: str | None = None,
    hub_config: str | None = None,
    **options: Any,
) -> BuildReport:
    """Write the Common Voice manifest `out`.

    Args:
        root: the corpus (TSV layout or, with `datasets`, any folder `load_dataset` reads);
            with `hub`, where audio bytes from the hub are written.
        split: TSV name or `datasets` split (`validated`, `train`, `dev`/`validation`, ...).
        datasets: read `root` with `datasets.load_dataset`.
        hub: a hub dataset name (needs a network); `hub_config` is usually the locale.
        options: `num_workers`, `relative`, `arrow` of `build_manifest_from_sources`.
    """
    if hub or datasets:
        name = hub or str(root)
        found = huggingface_sources(name, split, DOMAIN, DATASET, Path(root), hub_config)
    else:
        found = sources(root, split)
    return build_manifest_from_sources(found, out, **options)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Common Voice's own options."""
    parser.add_argument("--split", default="validated", help="TSV (or datasets split) to read")
    parser.add_argument(
        "--datasets", action="store_true", help="read --root with datasets.load_dataset"
    )
    parser.add_argument("--hub", help="hub dataset name, e.g. a Common Voice copy")
    parser.add_argument("--hub-config", help="hub dataset config, usually the locale")


if __name__ == "__main__":
    sys.exit(run_recipe(build, __doc__.split("\n\n")[0], add_arguments))
