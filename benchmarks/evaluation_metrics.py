"""Seconds per file of each evaluation metric and of the Opus baseline, on 5-second clips of
the demo corpus's test categories (speech and music), in one process with one thread.

    python benchmarks/evaluation_metrics.py [--repeats 3]

Prints the median of `repeats` timings per (metric, domain) after one untimed warm-up call
(which builds ViSQOL's models and the mel filterbank once per process, as every evaluation
worker does), and the ratio of each metric to SI-SNR. One torch and one numba thread, as
each evaluation worker runs.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import time

import numpy as np
import torch

from encodec_train.data.synth import music_like, speech_like
from encodec_train.evaluation.baselines import FfmpegCodec
from encodec_train.evaluation.metrics import METRICS, MetricNotApplicable, compute

RATE = 24000


def clips() -> dict[str, torch.Tensor]:
    """5 s of synthetic speech and music at 24 kHz, mono, RMS −20 dBFS."""
    rng = np.random.default_rng(0)
    found = {
        "speech": speech_like(5.0, RATE, 140.0, rng),
        "music": music_like(5.0, RATE, rng).mean(0),
    }
    return {
        k: torch.from_numpy(v / np.sqrt(np.mean(v**2)) * 0.1)[None].float()
        for k, v in found.items()
    }


def median_seconds(call, repeats: int) -> float:
    call()  # warm-up: models, filterbanks, the first ViSQOL call
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ["NUMBA_NUM_THREADS"] = "1"  # as in an evaluation worker (before ViSQOL loads)
    rows = []
    for domain, reference in clips().items():
        degraded = reference + 0.01 * torch.randn_like(reference)
        for name in METRICS:
            try:
                compute(name, reference, degraded, RATE, domain)
            except MetricNotApplicable:
                continue
            call = functools.partial(compute, name, reference, degraded, RATE, domain)
            seconds = median_seconds(call, args.repeats)
            rows.append((name, domain, seconds))
        if shutil.which("ffmpeg"):
            opus = FfmpegCodec().at(6)
            rows.append(
                (
                    "opus 6 kbps (encode+decode)",
                    domain,
                    median_seconds(functools.partial(opus, reference, RATE), args.repeats),
                )
            )
    base = {domain: s for name, domain, s in rows if name == "si_snr"}
    print(f"seconds per 5-s file, median of {args.repeats}, one thread")
    print(f"{'metric':30s} {'domain':8s} {'seconds':>9s} {'x SI-SNR':>10s}")
    for name, domain, seconds in rows:
        print(f"{name:30s} {domain:8s} {seconds:9.4f} {seconds / base[domain]:10.0f}")


if __name__ == "__main__":
    main()
