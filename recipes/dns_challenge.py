"""DNS Challenge 4 (ICASSP 2022, fullband): clean speech → speech, noise → general.

Assumed layout, as `download-dns-challenge-4.sh` of microsoft/DNS-Challenge unpacks it
(48 kHz mono WAV; some archives unpack with extra nested folders, so both trees are scanned
recursively):

    datasets_fullband/                  <- --root (or its parent)
        clean_fullband/                 read_speech/, german_speech/, french_speech/,
                                        italian_speech/, spanish_speech/, russian_speech/,
                                        emotional_speech/, vctk_wav48_silence_trimmed/,
                                        VocalSet_48kHz_mono/ (singing; kept as speech)
        noise_fullband/*.wav            Freesound / AudioSet noise clips
        dev_testset/, impulse_responses/  (not used)

    python recipes/dns_challenge.py --root /data/datasets_fullband \
        --out data_manifests/dns_challenge.jsonl
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from common import run_recipe

from encodec_train.data.manifest_cli import (
    AudioSource,
    BuildReport,
    build_manifest_from_sources,
    find_audio,
)

FOLDERS = {"clean_fullband": ("speech", "dns4_speech"), "noise_fullband": ("general", "dns4_noise")}
"""Sub-folder → (domain, dataset)."""


def sources(root: Path) -> list[AudioSource]:
    """Every audio file of the clean-speech and noise trees, with its domain and dataset."""
    root = Path(root)
    if not (root / "clean_fullband").is_dir() and (root / "datasets_fullband").is_dir():
        root = root / "datasets_fullband"
    missing = [name for name in FOLDERS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} has no {' or '.join(missing)} folder (DNS 4 layout)")
    return [
        AudioSource(path, domain, dataset)
        for name, (domain, dataset) in FOLDERS.items()
        for path in find_audio(root / name)
    ]


def build(root: Path, out: Path, **options: Any) -> BuildReport:
    """Write the DNS 4 manifest `out`; `options` go to `build_manifest_from_sources`."""
    return build_manifest_from_sources(sources(root), out, **options)


if __name__ == "__main__":
    sys.exit(run_recipe(build, __doc__.splitlines()[0]))
