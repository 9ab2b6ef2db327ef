"""The batch stream: reproducible per (seed, rank, batch), resumable, robust to bad files."""

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fake_corpora import PAPER_STRATEGIES
from torch.utils.data import DataLoader

from encodec_train.data.dataset import Corpus, MixtureDataset
from encodec_train.data.manifest import ManifestEntry, write_manifest
from encodec_train.data.mixing import Mixer
from encodec_train.data.segments import SegmentReader

SAMPLE_RATE = 8000
"""Model rate of these tests: small batches keep them fast."""


def write_corpus(root: Path, name: str = "train", garbage: int = 0) -> Path:
    """A manifest of 2-second tones in every domain, at 44.1 and 48 kHz, mono and stereo
    (distinct frequencies, so every file is recognisable), plus `garbage` unreadable .flac
    files; returns the manifest's path."""
    rng = np.random.default_rng(0)
    entries = []
    for i, domain in enumerate(["speech", "music", "general"] * 3):
        rate, channels = (44100, 1) if i % 2 else (48000, 2)
        t = np.arange(2 * rate) / rate
        audio = 0.3 * np.sin(2 * np.pi * (200 + 50 * i) * t) + 0.01 * rng.standard_normal(len(t))
        path = root / f"{name}_{i}.flac"
        sf.write(path, np.repeat(audio[:, None], channels, axis=1), rate)
        entries.append(ManifestEntry(path.name, 2.0, rate, channels, domain, f"{domain}_set"))
    for i in range(garbage):
        path = root / f"{name}_garbage_{i}.flac"
        path.write_bytes(b"\x00garbage" * 512)
        entries.append(ManifestEntry(path.name, 30.0, 44100, 1, "speech", "speech_set"))
    return write_manifest(entries, root / f"{name}.jsonl")


def make_dataset(manifest: Path, seed: int = 0, stream: int = 0, batches=None) -> MixtureDataset:
    reader = SegmentReader(SAMPLE_RATE, 1, segment_seconds=0.5)
    return MixtureDataset.from_manifests(
        [manifest], reader, Mixer(), PAPER_STRATEGIES, 4, seed, stream, batches
    )


def take(loader, count: int) -> list[dict]:
    iterator = iter(loader)
    return [next(iterator) for _ in range(count)]


def assert_same(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x["audio"], y["audio"], atol=0, rtol=0)
        torch.testing.assert_close(x["mask"], y["mask"], atol=0, rtol=0)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("corpus"))


def test_batch_format(manifest):
    batch = make_dataset(manifest).batch(0)
    assert batch["audio"].shape == (4, 1, 4000) and batch["audio"].dtype == torch.float32
    assert batch["mask"].shape == (4, 1, 4000) and batch["mask"].dtype == torch.float32
    assert batch["mask"].eq(1).all()  # no short files here
    assert 0 < batch["audio"].abs().max() <= 1.0
    assert batch["skipped_files"] == 0


def test_same_seed_same_batches_other_rank_or_seed_other_batches(manifest):
    reference = [make_dataset(manifest).batch(b) for b in range(3)]
    assert_same(reference, [make_dataset(manifest).batch(b) for b in range(3)])
    for other in (make_dataset(manifest, stream=1), make_dataset(manifest, seed=1)):
        for b in range(3):
            assert not torch.equal(other.batch(b)["audio"], reference[b]["audio"])
    assert not torch.equal(reference[0]["audio"], reference[1]["audio"])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_mid_stream_gives_the_following_batches(manifest, num_workers):
    uninterrupted = take(DataLoader(make_dataset(manifest), batch_size=None), 7)
    resumed_dataset = make_dataset(manifest)
    resumed_dataset.start = 3
    resumed = take(DataLoader(resumed_dataset, batch_size=None, num_workers=num_workers), 4)
    assert_same(resumed, uninterrupted[3:])


def test_finite_batches_are_shared_among_workers_in_order(manifest):
    dataset = make_dataset(manifest, batches=range(1, 10, 2))
    batches = list(DataLoader(dataset, batch_size=None, num_workers=2))
    assert_same(batches, [dataset.batch(b) for b in (1, 3, 5, 7, 9)])


def test_garbage_file_is_logged_counted_and_replaced(tmp_path, caplog):
    manifest = write_corpus(tmp_path, garbage=1)
    dataset = make_dataset(manifest)
    with caplog.at_level(logging.WARNING, logger="encodec_train.data.dataset"):
        batches = take(DataLoader(dataset, batch_size=None), 20)
    failed = sum(b["skipped_files"] for b in batches)
    # 30 s of garbage against 18 s of tones: most non-music draws hit it first.
    assert failed > 10
    assert "train_garbage_0.flac" in caplog.text
    assert all(torch.isfinite(b["audio"]).all() and b["mask"].eq(1).all() for b in batches)
    # Known-bad files are redrawn without re-reading, with the same draws: same batches, same
    # counts, whichever worker built them and whatever it met before.
    again = take(DataLoader(make_dataset(manifest), batch_size=None, num_workers=2), 20)
    assert_same(again, batches)
    assert [b["skipped_files"] for b in again] == [b["skipped_files"] for b in batches]


def test_short_files_are_padded_and_masked(tmp_path):
    entries = []
    for i, domain in enumerate(["speech", "music", "general"]):
        path = tmp_path / f"short_{i}.wav"
        sf.write(path, 0.3 * np.ones(2000 + 500 * i), SAMPLE_RATE)  # under 0.5 s
        entries.append(ManifestEntry(path.name, 0.1, SAMPLE_RATE, 1, domain, domain))
        path = tmp_path / f"short_{i}_b.wav"
        sf.write(path, 0.3 * np.ones(1000), SAMPLE_RATE)
        entries.append(ManifestEntry(path.name, 0.1, SAMPLE_RATE, 1, domain, domain))
    dataset = make_dataset(write_manifest(entries, tmp_path / "short.jsonl"))
    batch = dataset.batch(0)
    lengths = batch["mask"].sum(dim=(1, 2))
    assert set(lengths.tolist()) <= {1000.0, 2000.0, 2500.0, 3000.0}
    real = batch["mask"].bool().expand_as(batch["audio"])
    assert batch["audio"][~real].eq(0).all() and batch["audio"][real].ne(0).all()


def test_missing_manifest_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.jsonl"):
        Corpus.load([tmp_path / "nowhere.jsonl"])
