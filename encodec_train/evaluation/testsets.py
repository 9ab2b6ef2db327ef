"""Test sets as the paper builds them (§4.1), and the held-out splits they are drawn from.

The paper tests on four categories: clean speech from DNS alone, clean speech mixed with an
FSD50K sample, a Jamendo sample alone, and music alone. A test set here is a folder of fixed
segments (WAV files, seeded, loudness-normalised) and a manifest `test.jsonl` whose `dataset`
field is the category and whose `domain` says which metrics apply (noisy speech is speech).

Held out from training: `split_held_out` moves whole groups (speakers, tracks) of a corpus
manifest into `<stem>.heldout.jsonl` and rewrites `<stem>.jsonl`, the file the training
mixture reads, without them (the full list stays in `<stem>.all.jsonl`); test segments are
drawn from the held-out manifests only.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from encodec_train.data.dataset import Corpus
from encodec_train.data.manifest import (
    ARROW_SUFFIX,
    Manifest,
    ManifestEntry,
    ManifestError,
    read_json_lines,
    write_manifest,
)
from encodec_train.data.segments import SegmentReader
from encodec_train.data.synth import ensure_demo_corpus


@dataclass(frozen=True)
class Category:
    """One test category: segments of `source` files (their manifest `domain` must be
    `source_domain`), optionally mixed with a segment of a `noise` source.

    Args:
        name: the category, written as the manifest's `dataset`.
        domain: the manifest `domain` of the written segments.
        source: key of the source manifests (see `build_test_set`).
        noise: key of the noise manifests mixed in, or None.
    """

    name: str
    domain: str
    source: str
    noise: str | None = None


PAPER_CATEGORIES = (
    Category("clean_speech", "speech", "speech"),
    Category("noisy_speech", "speech", "speech", noise="noise"),
    Category("jamendo", "music", "jamendo"),
    Category("music", "music", "music"),
)
"""§4.1's four test categories."""

SOURCE_DOMAINS = {"speech": "speech", "noise": "general", "jamendo": "music", "music": "music"}
"""The manifest domain each source key draws from."""


# -- held-out splits -----------------------------------------------------------------------


def group_of(path: str, pattern: str | None) -> str:
    """The group (speaker, track, ...) of `path`: the first capture group of `pattern`
    searched in it, or the file's folder when `pattern` is None or does not match."""
    if pattern is not None:
        match = re.search(pattern, path)
        if match:
            return match.group(1)
    return str(Path(path).parent)


def _rank(group: str, seed: int) -> str:
    return hashlib.sha1(f"{seed}:{group}".encode()).hexdigest()


def split_held_out(
    manifest: str | Path, fraction: float = 0.02, pattern: str | None = None, seed: int = 0
) -> tuple[Path, Path, int]:
    """Hold out `fraction` of the groups of a corpus manifest from training.

    The held-out groups are those with the smallest hash of (seed, group), at least one, so
    the choice is stable and needs no state. Re-running reads `<stem>.all.jsonl`, so the
    split can be redone with another fraction.

    Returns:
        the training manifest (`<stem>.jsonl`, rewritten; and its Arrow copy when one
        exists), the held-out manifest (`<stem>.heldout.jsonl`) and the number of held-out
        groups.
    """
    path = Path(manifest)
    if path.suffix != ".jsonl":
        raise ManifestError(f"{path}: split needs the JSON Lines manifest (.jsonl)")
    full = path.with_name(f"{path.stem}.all.jsonl")
    source = full if full.is_file() else path
    if not source.is_file():
        raise FileNotFoundError(f"manifest {path} does not exist")
    if not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction} must lie in (0, 1)")
    Manifest.load(source)  # validates every row, naming the line at fault
    rows = [ManifestEntry(**row) for _, row in read_json_lines(source)]
    if not rows:
        raise ManifestError(f"{source}: no rows to split")
    groups = sorted({group_of(row.path, pattern) for row in rows}, key=lambda g: _rank(g, seed))
    held = set(groups[: max(1, math.ceil(fraction * len(groups)))])
    if len(held) == len(groups):
        raise ValueError(f"{source}: only {len(groups)} group(s); none would be left to train on")
    if source == path:
        write_manifest(rows, full)
    heldout = path.with_name(f"{path.stem}.heldout.jsonl")
    write_manifest([r for r in rows if group_of(r.path, pattern) in held], heldout)
    arrow = path.with_suffix(ARROW_SUFFIX).is_dir()
    train = [r for r in rows if group_of(r.path, pattern) not in held]
    write_manifest(train, path, arrow=arrow)
    return path, heldout, len(held)


# -- test sets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SegmentOptions:
    """How segments are cut.

    Args:
        sample_rate, channels: the format of the written segments.
        segment_seconds: segment length (the paper's MUSHRA: 5 s).
        per_category: segments per category (the paper's MUSHRA: 50).
        seed: the draws of files, offsets and SNRs.
        rms_db: every segment (and every mixture) is scaled to this RMS in dBFS.
        snr_db: noisy speech: speech-to-noise ratio drawn uniformly in this range.
        min_rms_db: segments quieter than this (before scaling) are redrawn, so no test item
            is silence.
    """

    sample_rate: int = 24000
    channels: int = 1
    segment_seconds: float = 5.0
    per_category: int = 50
    seed: int = 0
    rms_db: float = -20.0
    snr_db: tuple[float, float] = (0.0, 20.0)
    min_rms_db: float = -45.0


class _Pool:
    """Files of one source key, drawn ∝ duration among those at least a segment long."""

    MAX_DRAWS = 100

    def __init__(self, key: str, manifests: list[str | Path], options: SegmentOptions) -> None:
        self.corpus = Corpus.load(manifests)
        self.domain = SOURCE_DOMAINS[key]
        weights = self.corpus.weights(min_duration=options.segment_seconds)
        weights = np.where(self.corpus.column("domain") == self.domain, weights, 0.0)
        if weights.sum() <= 0:
            raise ValueError(
                f"source {key!r} ({', '.join(map(str, manifests))}): no {self.domain} file of "
                f"at least {options.segment_seconds:g} s"
            )
        self.probabilities = weights / weights.sum()
        self.reader = SegmentReader(
            options.sample_rate, options.channels, options.segment_seconds, short_files="skip"
        )
        self.min_rms = 10 ** (options.min_rms_db / 20)

    def draw(self, rng: np.random.Generator) -> torch.Tensor:
        """One segment [channels, frames] louder than `min_rms_db`."""
        for _ in range(self.MAX_DRAWS):
            file = int(rng.choice(len(self.probabilities), p=self.probabilities))
            position = float(rng.random())
            audio, _ = self.reader.resample([self.reader.read(self.corpus.path(file), position)])
            if _rms(audio[0]) > self.min_rms:
                return audio[0]
        raise ValueError(f"{self.MAX_DRAWS} silent segments in a row from the {self.domain} files")


def _rms(audio: torch.Tensor) -> float:
    return float(audio.double().pow(2).mean().sqrt())


def _at_rms(audio: torch.Tensor, rms_db: float) -> torch.Tensor:
    """`audio` scaled to `rms_db` dBFS, then down to a peak of 0.99 if it would clip."""
    audio = audio * (10 ** (rms_db / 20) / max(_rms(audio), 1e-12))
    peak = float(audio.abs().max())
    return audio * (0.99 / peak) if peak > 0.99 else audio


def build_test_set(
    sources: dict[str, list[str | Path]],
    out_dir: str | Path,
    options: SegmentOptions = SegmentOptions(),
    categories: tuple[Category, ...] = PAPER_CATEGORIES,
) -> Path:
    """Write `out_dir/<category>/<category>_<i>.wav` and `out_dir/test.jsonl`.

    Args:
        sources: manifests per source key (`speech`, `noise`, `jamendo`, `music`), each
            filtered to its `SOURCE_DOMAINS` domain; held-out manifests, not training ones.
        out_dir: the test set's folder (`test_set.json` records how it was built).
        options: segment format, count, seed and levels.
        categories: the categories to write (a category whose sources are not given is an
            error naming the key).
    Returns:
        the manifest path.
    """
    out = Path(out_dir)
    pools: dict[str, _Pool] = {}
    for key in dict.fromkeys(k for c in categories for k in (c.source, c.noise) if k):
        if not sources.get(key):
            raise ValueError(f"no manifests for source {key!r}, needed by the test categories")
        pools[key] = _Pool(key, sources[key], options)
    entries = []
    for index, category in enumerate(categories):
        rng = np.random.default_rng([options.seed, index])
        folder = out / category.name
        folder.mkdir(parents=True, exist_ok=True)
        for item in range(options.per_category):
            audio = pools[category.source].draw(rng)
            if category.noise is not None:
                noise = pools[category.noise].draw(rng)
                snr = rng.uniform(*options.snr_db)
                audio = audio + noise * (_rms(audio) / _rms(noise) * 10 ** (-snr / 20))
            audio = _at_rms(audio, options.rms_db)
            path = folder / f"{category.name}_{item:03d}.wav"
            sf.write(path, audio.T.numpy(), options.sample_rate, subtype="PCM_16")
            entries.append(
                ManifestEntry(
                    path=str(path.relative_to(out)),
                    duration=audio.shape[-1] / options.sample_rate,
                    sample_rate=options.sample_rate,
                    channels=options.channels,
                    domain=category.domain,
                    dataset=category.name,
                )
            )
    record = {
        "options": asdict(options),
        "categories": [asdict(c) for c in categories],
        "sources": {k: [str(p) for p in v] for k, v in sources.items()},
    }
    (out / "test_set.json").write_text(json.dumps(record, indent=2))
    return write_manifest(entries, out / "test.jsonl")


DEMO_TEST_OPTIONS = SegmentOptions(segment_seconds=2.0, per_category=4)
"""The demo corpus's held-out files are 3–6 s long: 4 segments of 2 s per category."""


def check_test_manifest(path: str | None, key: str) -> None:
    """The test manifest that setting `key` names exists (None: none given); the error says
    how to build one."""
    if path is not None and not Path(path).exists():
        raise FileNotFoundError(
            f"{key}={path} does not exist; build a test manifest with "
            "`python recipes/test_sets.py build` (docs/evaluation.md), or correct the path"
        )


def ensure_demo_test_set(
    corpus_root: str | Path, options: SegmentOptions = DEMO_TEST_OPTIONS
) -> Path:
    """The paper's four categories cut from the demo corpus's held-out files (`valid.jsonl`:
    speech, general sounds as the noise, synthetic music as both music categories), written
    to `<corpus_root>/test/` on first use; returns its manifest."""
    root = Path(corpus_root)
    manifest = root / "test" / "test.jsonl"
    record = root / "test" / "test_set.json"
    if manifest.is_file() and record.is_file():
        if json.loads(record.read_text())["options"] == json.loads(json.dumps(asdict(options))):
            return manifest
    valid = ensure_demo_corpus(root, sample_rate=options.sample_rate)["valid"]
    return build_test_set({key: [valid] for key in SOURCE_DOMAINS}, root / "test", options)
