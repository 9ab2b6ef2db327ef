"""Evaluate systems (codecs at settings) on every file of a test manifest.

Files are read one at a time and coded by each system in this process; the metrics run in
`workers` processes (ViSQOL and PESQ dominate the cost), with a bounded number of clips in
flight, so memory does not grow with the test set. A progress bar counts (file, system) pairs.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from encodec_train.data.manifest import Manifest, ManifestEntry
from encodec_train.evaluation.baselines import FfmpegCodec, FfmpegMissing
from encodec_train.evaluation.metrics import MetricNotApplicable, compute, metric
from encodec_train.evaluation.systems import CodecSystem, System, find_checkpoints, load_codec
from encodec_train.model.checkpoint import CheckpointMismatchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Skipped:
    """A requested (system, setting) that was not evaluated, and why."""

    label: str
    setting: float
    reason: str


@dataclass
class Scores:
    """One metric pass over a (file, system) pair: values (None where not applicable), the
    reasons for those, and seconds per metric."""

    values: dict[str, float | None]
    reasons: dict[str, str]
    seconds: dict[str, float]


def score(
    reference: np.ndarray, degraded: np.ndarray, sample_rate: int, domain: str, names: Sequence[str]
) -> Scores:
    """All metrics `names` of one pair (`[channels, time]` arrays); runs in a worker."""
    ref, deg = torch.from_numpy(reference), torch.from_numpy(degraded)
    scores = Scores({}, {}, {})
    for name in names:
        start = time.perf_counter()
        try:
            scores.values[name] = compute(name, ref, deg, sample_rate, domain)
        except MetricNotApplicable as e:
            scores.values[name] = None
            scores.reasons[name] = str(e)
        scores.seconds[name] = time.perf_counter() - start
    return scores


def _worker_init() -> None:
    # One thread per worker: the workers already fill the cores (ViSQOL's numba kernels
    # would start a thread per core each).
    torch.set_num_threads(1)
    os.environ["NUMBA_NUM_THREADS"] = "1"


def build_systems(
    checkpoints: Sequence[str | Path],
    bandwidths: Sequence[float] | None,
    baselines: Sequence[FfmpegCodec],
) -> tuple[list[System], list[Skipped]]:
    """Every checkpoint (run, sweep, official or Hugging Face, see `find_checkpoints`), then
    every baseline, at each of `bandwidths` (None: each model's target bandwidths, each
    baseline's bitrates); what cannot be evaluated is returned as `Skipped` with the reason."""
    systems: list[System] = []
    skipped: list[Skipped] = []
    for checkpoint in checkpoints:
        found = find_checkpoints(checkpoint)
        for label, path in found:
            try:
                model = load_codec(path)
            except CheckpointMismatchError as e:
                if len(found) == 1:  # named on its own: an error; in a sweep: one run skipped
                    raise
                log.warning("%s skipped: %s", label, e)
                skipped.append(Skipped(label, math.nan, f"not a codec checkpoint ({path})"))
                continue
            for bandwidth in bandwidths if bandwidths is not None else model.target_bandwidths:
                if float(bandwidth) in model.target_bandwidths:
                    systems.append(CodecSystem(model, bandwidth, label))
                else:
                    reason = f"not one of the model's bandwidths {model.target_bandwidths}"
                    skipped.append(Skipped(label, float(bandwidth), reason))
    for codec in baselines:
        for bitrate in bandwidths if bandwidths is not None else codec.bitrates:
            if not codec.available(bitrate):
                reason = f"{codec.name} cannot encode below {codec.min_bitrate:g} kbps"
                skipped.append(Skipped(codec.name, float(bitrate), reason))
                continue
            try:
                systems.append(codec.at(bitrate))
            except FfmpegMissing as e:
                log.warning("baseline %s skipped: %s", codec.name, e)
                skipped.append(Skipped(codec.name, float(bitrate), str(e)))
    return systems, skipped


def read_clip(entry: ManifestEntry) -> tuple[torch.Tensor, int]:
    """A whole test file as float32 [channels, time] and its rate."""
    audio, rate = sf.read(entry.path, dtype="float32", always_2d=True)
    return torch.from_numpy(audio.T.copy()), rate


def example_dir(system: System) -> str:
    """Folder name of a system's decoded examples."""
    return f"{system.label.replace('/', '_')}_{system.setting:g}kbps"


@dataclass
class Evaluation:
    """What `evaluate` returns: one row per (file, system), the metric cost, the skips."""

    rows: list[dict] = field(default_factory=list)
    seconds: dict[str, list[float]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)


def evaluate(
    systems: Sequence[System],
    manifest: str | Path,
    metrics: Sequence[str],
    workers: int = 2,
    examples: int = 0,
    examples_root: str | Path | None = None,
    progress: bool = True,
) -> Evaluation:
    """Code every file of `manifest` with every system and score it with `metrics`.

    Args:
        systems: the codecs at their settings.
        manifest: the test files (`domain` picks the applicable metrics, `dataset` is the
            category the report groups by).
        metrics: names from `encodec_train.evaluation.metrics.METRICS`.
        workers: metric processes (0: in this process).
        examples: decoded examples kept per system and category (the first files), written
            with their references under `examples_root`.
        progress: show a progress bar on stderr.
    """
    for name in metrics:
        metric(name)  # an unknown name fails before any work
    entries = Manifest.load(manifest)
    result = Evaluation()
    bar = tqdm(total=len(entries) * len(systems), desc="evaluate", disable=not progress)
    pending: deque[tuple[dict, Future | Scores]] = deque()
    pool = None
    if workers > 0:
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init)
    try:
        per_category: dict[str, int] = {}
        for entry in entries:
            reference, rate = read_clip(entry)
            per_category[entry.dataset] = per_category.get(entry.dataset, 0) + 1
            example = examples_root is not None and per_category[entry.dataset] <= examples
            if example:
                _write(Path(examples_root, "reference", Path(entry.path).name), reference, rate)
            for system in systems:
                coded = system(reference, rate)
                if example:
                    folder = Path(examples_root, example_dir(system))
                    _write(folder / Path(entry.path).name, coded.audio, rate)
                row = {
                    "system": system.label,
                    "setting": system.setting,
                    "kbps": coded.kbps,
                    "file": entry.path,
                    "category": entry.dataset,
                    "domain": entry.domain,
                }
                job = (reference.numpy(), coded.audio.numpy(), rate, entry.domain, list(metrics))
                pending.append((row, pool.submit(score, *job) if pool else score(*job)))
                while len(pending) > 4 * max(workers, 1):
                    _collect(pending.popleft(), result, bar)
        while pending:
            _collect(pending.popleft(), result, bar)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        bar.close()
    return result


def _collect(item: tuple[dict, Future | Scores], result: Evaluation, bar: tqdm) -> None:
    row, job = item
    scores = job.result() if isinstance(job, Future) else job
    row.update(scores.values)
    row["not_applicable"] = "; ".join(f"{k}: {v}" for k, v in scores.reasons.items())
    for name, seconds in scores.seconds.items():
        result.seconds.setdefault(name, []).append(seconds)
    result.rows.append(row)
    bar.update()


def _write(path: Path, audio: torch.Tensor, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, audio.clamp(-1, 1).T.numpy(), rate, subtype="PCM_16")


def iter_rows(rows: Sequence[dict], **match: object) -> Iterator[dict]:
    """The rows whose fields equal `match`."""
    return (row for row in rows if all(row[key] == value for key, value in match.items()))


def mean_or_none(values: Sequence[float | None]) -> float | None:
    """The mean of the values that are not None (None when there are none)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
