"""Cost of `build`'s tail check: files per second with and without it.

Writes many tiny audio files (default 10,000 FLAC files of 0.25 s at 16 kHz), then builds
their manifest with `build_manifest`, reading headers only (`tail_check=False`) and reading
each file's last `TAIL_FRAMES` frames too (the default). Runs alternate between the two so
that a busy machine slows both alike; prints the median of `--runs` wall-clock runs of each.
The files stay in the page cache after they are written, so this measures the reading and
decoding, not the disk; on a network file system the extra seek per file costs more.

    python benchmarks/manifest_check.py [--files 10000] [--runs 3] [--format flac] [--workers N]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from encodec_train.data.audio_probe import DEFAULT_WORKERS, TAIL_FRAMES
from encodec_train.data.manifest_cli import build_manifest

SAMPLE_RATE = 16000
SECONDS = 0.25


def write_files(root: Path, count: int, extension: str) -> None:
    """`count` files below `root`, copies of 100 different short tones (encoding each file
    would take longer than the benchmark)."""
    t = np.arange(round(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
    templates = []
    for i in range(100):
        path = root / f"template.{extension}"
        sf.write(path, 0.3 * np.sin(2 * np.pi * (100 + 20 * i) * t), SAMPLE_RATE)
        templates.append(path.read_bytes())
        path.unlink()
    for i in range(count):
        folder = root / f"{i // 1000:03d}"  # a thousand files per folder, as corpora have
        folder.mkdir(exist_ok=True)
        (folder / f"{i:06d}.{extension}").write_bytes(templates[i % len(templates)])


def time_build(root: Path, out: Path, workers: int, tail_check: bool) -> float:
    """Wall-clock seconds of one build of the manifest of `root`."""
    start = time.perf_counter()
    build_manifest(root, "general", "bench", out, num_workers=workers, tail_check=tail_check)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--format", default="flac", choices=["flac", "wav", "ogg", "mp3"])
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder) / "audio"
        root.mkdir()
        start = time.perf_counter()
        write_files(root, args.files, args.format)
        print(
            f"{args.files} {args.format} files of {SECONDS} s at {SAMPLE_RATE} Hz written in "
            f"{time.perf_counter() - start:.1f} s; {args.workers} workers, "
            f"median of {args.runs} runs"
        )
        seconds: dict[bool, list[float]] = {False: [], True: []}
        for _ in range(args.runs):
            for tail_check in (False, True):
                out = Path(folder) / f"manifest_{tail_check}.jsonl"
                seconds[tail_check].append(time_build(root, out, args.workers, tail_check))
    for tail_check, label in ((False, "headers only"), (True, f"+ last {TAIL_FRAMES} frames")):
        median = statistics.median(seconds[tail_check])
        print(f"  {label:>22}: {args.files / median:8.0f} files/s ({median:.2f} s)")
    extra = statistics.median(seconds[True]) - statistics.median(seconds[False])
    print(f"  tail check: {extra / args.files * 1e6 * args.workers:+.0f} µs per file in a worker")


if __name__ == "__main__":
    main()
