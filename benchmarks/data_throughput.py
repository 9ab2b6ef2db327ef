"""Data throughput: mixed segments per second that one DataLoader worker delivers.

Builds a small 44.1 kHz corpus (speech-like mono, music-like stereo, general sounds) as FLAC
and as OGG Vorbis, then times the training batches of the recipes' own data modules
(`data=mixture_24khz` with the 24 kHz model, `data=mixture_48khz` with the 48 kHz one: their
strategies, loudness per file, random gains, clipped mixtures rejected and redrawn, and at
24 kHz reverberation with probability 0.2, by synthetic room responses standing in for the DNS
Challenge's) in one single-threaded process, as a worker runs them. Prints the median over
several runs, the cost of one source (read + resample), and the workers each GPU needs at the
paper's 8 segments per update.

Rates are per CPU-second of the process (a worker owns a core in training), so a busy machine
changes them less than wall-clock rates, which are printed beside them. Files stay in the page
cache after the first pass, so this measures decoding, resampling and mixing, not the disk: on
a network file system budget more workers.

    python benchmarks/data_throughput.py [--runs 5] [--batches 25]
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from encodec_train.data.dataset import MixtureDataset
from encodec_train.data.manifest import ManifestEntry, write_manifest
from encodec_train.data.synth import general_like, music_like, speech_like, write_room_responses

CONFIG_DIR = Path(__file__).resolve().parents[1] / "encodec_train" / "conf"

SOURCE_RATE = 44100
FILE_SECONDS = 12.0
FILES_PER_DOMAIN = 3
BATCH_SIZE = 8
"""Segments per GPU per update in the paper (64 over 8 GPUs)."""
UPDATES_PER_SECOND = 5.0
TARGETS = {
    "24 kHz mono": ["model=tiny", "data=mixture_24khz"],
    "48 kHz stereo": ["model=tiny_48khz", "data=mixture_48khz"],
}
"""The overrides that give each model its recipe's data module (the model group sets the rate
and channels; the tiny models share them with the paper's)."""
ROOM_RT60S = [0.3, 0.5, 0.7, 0.9, 1.1, 1.3]
FORMATS = {"FLAC": ("flac", "PCM_16"), "OGG": ("ogg", "VORBIS")}


def write_corpus(root: Path, extension: str, subtype: str) -> Path:
    """The benchmark corpus in one format; returns its manifest."""
    rng = np.random.default_rng(0)
    makers = {
        "speech": lambda: speech_like(FILE_SECONDS, SOURCE_RATE, 150.0, rng)[:, None],
        "music": lambda: music_like(FILE_SECONDS, SOURCE_RATE, rng).T,
        "general": lambda: general_like(FILE_SECONDS, SOURCE_RATE, rng)[:, None],
    }
    entries = []
    for domain, make in makers.items():
        for i in range(FILES_PER_DOMAIN):
            audio = make()
            path = root / f"{domain}_{i}.{extension}"
            sf.write(path, audio, SOURCE_RATE, subtype=subtype)
            entries.append(
                ManifestEntry(path.name, FILE_SECONDS, SOURCE_RATE, audio.shape[1], domain, domain)
            )
    return write_manifest(entries, root / "manifest.jsonl")


def make_dataset(manifest: Path, rooms: Path, overrides: list[str]) -> MixtureDataset:
    """The training dataset of the data module `overrides` select, reading `manifest`."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    cfg.data.train_manifests = [str(manifest)]
    cfg.data.valid_manifests = None
    cfg.data.batch_size = BATCH_SIZE
    if cfg.data.reverb_probability > 0:
        cfg.data.impulse_responses = str(rooms)
    data = instantiate(cfg.data)
    data.setup("fit")
    return data.train_dataset


def segments_per_second(dataset: MixtureDataset, first: int, batches: int) -> tuple[float, float]:
    """Segments per CPU-second and per wall-clock second over `batches` batches."""
    cpu, wall = time.process_time(), time.perf_counter()
    for index in range(first, first + batches):
        dataset.batch(index)
    segments = batches * BATCH_SIZE
    return segments / (time.process_time() - cpu), segments / (time.perf_counter() - wall)


def ms_per_source(dataset: MixtureDataset, count: int = 200) -> float:
    """Median CPU time to read and resample one 1-second source, in ms."""
    reader, rng = dataset.reader, np.random.default_rng(1)
    times = []
    for _ in range(count):
        path = dataset.corpus.path(int(rng.integers(len(dataset.corpus))))
        start = time.process_time()
        reader.resample([reader.read(path, rng.random())])
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--batches", type=int, default=25, help="batches per run")
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in a DataLoader worker (see AudioDataModule)
    needed = BATCH_SIZE * UPDATES_PER_SECOND
    print(f"one worker, batches of {BATCH_SIZE}, median of {args.runs} runs x {args.batches}")
    print(
        f"{'sources':>13} {'model':>13} {'segments/s':>11} {'(wall)':>7} {'ms/source':>10} "
        f"{'workers/GPU':>12}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rooms = write_room_responses(Path(tmp) / "rooms", ROOM_RT60S)
        for format_name, (extension, subtype) in FORMATS.items():
            root = Path(tmp) / extension
            root.mkdir()
            manifest = write_corpus(root, extension, subtype)
            for target_name, overrides in TARGETS.items():
                dataset = make_dataset(manifest, rooms, overrides)
                segments_per_second(dataset, 0, 2)  # warm up: kernels, page cache
                runs = [
                    segments_per_second(dataset, 2 + run * args.batches, args.batches)
                    for run in range(args.runs)
                ]
                rate, wall = (statistics.median(r) for r in zip(*runs, strict=True))
                print(
                    f"{'44.1 kHz ' + format_name:>13} {target_name:>13} {rate:>11.0f} {wall:>7.0f} "
                    f"{ms_per_source(dataset):>10.2f} {math.ceil(needed / rate):>12d}"
                )
    print(
        f"workers/GPU: to feed {UPDATES_PER_SECOND:g} updates/s x {BATCH_SIZE} segments "
        f"= {needed:g} segments/s"
    )


if __name__ == "__main__":
    main()
