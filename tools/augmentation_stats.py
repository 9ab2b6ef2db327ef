#!/usr/bin/env python3
"""Measure the training augmentation of paper §4.1 on a corpus: the random gains drawn per
source (histogram), how many mixtures clipped and were redrawn, how many examples were
reverberated and the RT60 of the responses used, and that one music source alone stays dry.

    .venv/bin/python tools/augmentation_stats.py                  # the demo corpus
    .venv/bin/python tools/augmentation_stats.py --batches 200 data=mixture_24khz \
        data.impulse_responses=data_manifests/dns_impulse_responses.jsonl

Without `data.impulse_responses` it writes synthetic room responses (RT60 0.1–2.0 s, so the
0.3–1.3 s filter has work to do) next to the demo corpus: the DNS responses cannot be
downloaded here. Reverberation is switched on with the paper's probability, 0.2.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from encodec_train import CONFIG_DIR
from encodec_train.data.manifest import read_json_lines
from encodec_train.data.mixing import Mixer
from encodec_train.data.reverb import Reverb
from encodec_train.data.synth import ensure_demo_corpus, write_room_responses


class RecordingMixer(Mixer):
    """The mixer, keeping every gain it draws."""

    gains: list[float]

    def draw_gains(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        gains = super().draw_gains(rng, count)
        self.gains.extend(gains.tolist())
        return gains


class RecordingReverb(Reverb):
    """The reverberation, keeping the index of every response it applies."""

    used: list[int]

    def response(self, index: int) -> torch.Tensor:
        self.used.append(index)
        return super().response(index)


def measure(overrides: list[str], batches: int) -> str:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["data.num_workers=0", *overrides])
    if cfg.demo_corpus:
        ensure_demo_corpus(Path(cfg.demo_corpus), sample_rate=cfg.model.sample_rate)
    manifest = cfg.data.impulse_responses
    if manifest is None:
        rt60s = [float(x) for x in np.linspace(0.1, 2.0, 20)]
        manifest = str(write_room_responses(Path(cfg.demo_corpus or ".") / "rooms", rt60s))
    cfg.data.impulse_responses = manifest
    cfg.data.reverb_probability = cfg.data.reverb_probability or 0.2
    data = instantiate(cfg.data)
    data.setup("fit")
    dataset = data.train_dataset
    mixer = RecordingMixer(**{k: getattr(dataset.mixer, k) for k in Mixer.__dataclass_fields__})
    mixer.gains = []
    reverb = RecordingReverb(
        dataset.reverb.paths, dataset.reverb.sample_rate, dataset.reverb.probability
    )
    reverb.used = []
    dataset.mixer, dataset.reverb = mixer, reverb
    counts = Counter()
    for index in range(batches):
        batch = dataset.batch(index)
        counts["examples"] += batch["audio"].shape[0]
        for key in ("rejected_mixtures", "scaled_mixtures", "skipped_files"):
            counts[key] += batch[key]
    rt60_of = {
        str(Path(manifest).parent / row["path"]): row["rt60"]
        for _, row in read_json_lines(manifest)
    }
    applied = [rt60_of[str(Path(reverb.paths[i]))] for i in reverb.used]
    return report(mixer, cfg.data, counts, applied, rt60_of)


def report(
    mixer: RecordingMixer, data, counts: Counter, applied: list[float], rt60_of: dict
) -> str:
    gains = np.array(mixer.gains)
    low, high = mixer.gain_db
    edges = np.arange(np.floor(low), np.ceil(high) + 1)
    histogram, _ = np.histogram(gains, edges)
    examples = counts["examples"]
    drawn = examples + counts["rejected_mixtures"]
    lines = [
        f"examples: {examples}; mixtures drawn: {drawn}",
        f"gains: {len(gains)} sources, min {gains.min():.2f} dB, max {gains.max():.2f} dB, "
        f"mean {gains.mean():.2f} dB (uniform in [{low}, {high}]: mean {(low + high) / 2:.2f})",
        "gain histogram (1 dB bins, count per bin; uniform: "
        f"{len(gains) / len(histogram):.1f} each):",
    ]
    lines += [
        f"  [{a:+.0f}, {a + 1:+.0f}) dB: {n:5d} {'#' * round(60 * n / histogram.max())}"
        for a, n in zip(edges[:-1], histogram, strict=True)
    ]
    lines += [
        f"clipped mixtures rejected and redrawn: {counts['rejected_mixtures']} of {drawn} "
        f"({100 * counts['rejected_mixtures'] / drawn:.1f}%); still clipped after "
        f"{mixer.max_redraws} redraws, scaled down: {counts['scaled_mixtures']}",
        f"unreadable files skipped: {counts['skipped_files']}",
        f"impulse responses in the manifest: {len(rt60_of)}, RT60 "
        f"{min(rt60_of.values()):.2f}-{max(rt60_of.values()):.2f} s; kept by the "
        f"{list(data.reverb_rt60)} s filter: "
        f"{sum(data.reverb_rt60[0] <= v <= data.reverb_rt60[1] for v in rt60_of.values())}",
        f"reverberated examples: {len(applied)} of {drawn} mixtures drawn "
        f"({100 * len(applied) / drawn:.1f}%; probability {data.reverb_probability}, "
        "single-source music excluded)",
    ]
    if applied:
        lines.append(
            f"RT60 of the responses applied: min {min(applied):.2f} s, max {max(applied):.2f} s, "
            f"mean {np.mean(applied):.2f} s"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=100)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_args()
    print(measure(args.overrides, args.batches))


if __name__ == "__main__":
    main()
