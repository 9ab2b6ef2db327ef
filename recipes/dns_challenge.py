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
        impulse_responses/              SLR26 (simulated) and SLR28 (real) room impulse
                                        responses, with SLR28's noise recordings
        dev_testset/                    (not used)

    python recipes/dns_challenge.py --root /data/datasets_fullband \
        --out data_manifests/dns_challenge.jsonl \
        [--impulse-responses data_manifests/dns_impulse_responses.jsonl]

With `--impulse-responses` it also writes the impulse-response manifest the reverberation
reads (`encodec_train/data/reverb.py`): every audio file below `impulse_responses/` whose name
does not contain "noise", with its RT60 estimated by Schroeder backward integration. Responses
whose decay cannot be measured are left out and counted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from common import run_recipe

from encodec_train.data.audio_probe import find_audio
from encodec_train.data.manifest_cli import AudioSource, BuildReport, build_manifest_from_sources
from encodec_train.data.reverb import write_impulse_responses

FOLDERS = {"clean_fullband": ("speech", "dns4_speech"), "noise_fullband": ("general", "dns4_noise")}
"""Sub-folder → (domain, dataset)."""


def dataset_root(root: Path) -> Path:
    """`datasets_fullband`, given it or the folder holding it."""
    root = Path(root)
    if not (root / "clean_fullband").is_dir() and (root / "datasets_fullband").is_dir():
        root = root / "datasets_fullband"
    return root


def sources(root: Path) -> list[AudioSource]:
    """Every audio file of the clean-speech and noise trees, with its domain and dataset."""
    root = dataset_root(root)
    missing = [name for name in FOLDERS if not (root / name).is_dir()]
    if missing:
        raise FileNotFoundError(f"{root} has no {' or '.join(missing)} folder (DNS 4 layout)")
    return [
        AudioSource(path, domain, dataset)
        for name, (domain, dataset) in FOLDERS.items()
        for path in find_audio(root / name)
    ]


def impulse_response_files(root: Path) -> list[Path]:
    """The room impulse responses below `impulse_responses/` (SLR28's noise recordings, whose
    names say "noise", left out)."""
    return [
        path
        for path in find_audio(dataset_root(root) / "impulse_responses")
        if "noise" not in path.name.lower()
    ]


def build(
    root: Path, out: Path, impulse_responses: Path | None = None, **options: Any
) -> BuildReport:
    """Write the DNS 4 manifest `out`, and with `impulse_responses` the impulse-response
    manifest there; `options` go to `build_manifest_from_sources`."""
    report = build_manifest_from_sources(sources(root), out, **options)
    if impulse_responses is not None:
        written, failures = write_impulse_responses(impulse_response_files(root), impulse_responses)
        print(f"{impulse_responses}: {written} impulse responses with their RT60")
        if failures:
            print(f"  {len(failures)} left out (no measurable decay), e.g. {failures[0]}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--impulse-responses",
        type=Path,
        help="also write the impulse-response manifest (with RT60s) for the reverberation here",
    )


if __name__ == "__main__":
    sys.exit(run_recipe(build, __doc__.split("\n\n")[0], add_arguments))
