"""Manifest of every audio file below a folder, all in one domain and dataset.

    python recipes/folder.py --root /data/my_sounds --domain general --dataset my_sounds \
        --out data_manifests/my_sounds.jsonl
"""

from __future__ import annotations

import argparse
import sys

from common import run_recipe

from encodec_train.data.manifest import DOMAINS
from encodec_train.data.manifest_cli import build_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`--domain` and `--dataset`, which a plain folder cannot tell."""
    parser.add_argument("--domain", required=True, choices=DOMAINS)
    parser.add_argument("--dataset", required=True, help="dataset name written in each row")


if __name__ == "__main__":
    sys.exit(run_recipe(build_manifest, __doc__.split("\n\n")[0], add_arguments))
