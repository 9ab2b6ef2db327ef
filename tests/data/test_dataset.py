"""The batch stream: reproducible per (seed, rank, batch), resumable, robust to bad files."""

import logging
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from fake_corpora import PAPER_STRATEGIES
from torch.utils.data import DataLoader

from encodec_train.data.dataset import Corpus, MixtureDataset
from encodec_train.data.manifest import ManifestEntry, write_manifest
from encodec_train.data.mixing import Mixer, MixingStrategy
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


# --- paper §4.1: loudness per file, clipped mixtures rejected ---

ONE_SOURCE = [MixingStrategy("one", 1.0, 1)]


def write_one_file(root: Path, audio: np.ndarray) -> Path:
    """A manifest of one mono float WAV at the model's rate (no resampling, exact values)."""
    sf.write(root / "one.wav", audio, SAMPLE_RATE, subtype="FLOAT")
    entry = ManifestEntry("one.wav", len(audio) / SAMPLE_RATE, SAMPLE_RATE, 1, "speech", "x")
    return write_manifest([entry], root / "one.jsonl")


def one_file_dataset(manifest: Path, mixer: Mixer, batch_size: int) -> MixtureDataset:
    reader = SegmentReader(SAMPLE_RATE, 1, segment_seconds=0.5)
    return MixtureDataset.from_manifests([manifest], reader, mixer, ONE_SOURCE, batch_size, 0, 0)


@pytest.fixture(scope="module")
def square_wave(tmp_path_factory) -> Path:
    """2 s of a +-0.5 square wave: RMS = peak, over any segment and over the file."""
    samples = np.arange(2 * SAMPLE_RATE)
    return write_one_file(tmp_path_factory.mktemp("square"), np.where(samples // 10 % 2, 0.5, -0.5))


@pytest.mark.parametrize("loudness", ["file", "segment"])
def test_clipped_mixtures_are_rejected_and_redrawn_at_the_computed_rate(square_wave, loudness):
    # Normalised to 0 dBFS RMS, a square wave peaks at 10 ** (gain / 20): it clips exactly when
    # its gain, uniform in [-10, 6] dB, is above 0, so with probability p = 6 / 16. Each example
    # is rejected once with probability p, twice with p^2 (two redraws allowed), and is still
    # clipped after both redraws, so scaled, with probability p^3.
    p, redraws, batches, batch_size = 6 / 16, 2, 20, 64
    mixer = Mixer(rms_db=0.0, loudness=loudness, clipping="reject", max_redraws=redraws)
    dataset = one_file_dataset(square_wave, mixer, batch_size)
    built = [dataset.batch(b) for b in range(batches)]
    n = batches * batch_size
    rejected = np.array([b["rejected_mixtures"] for b in built]).sum()
    scaled = np.array([b["scaled_mixtures"] for b in built]).sum()
    mean, var = p + p**2, p + 3 * p**2 - (p + p**2) ** 2  # rejections per example: 0, 1 or 2
    assert abs(rejected / n - mean) < 5 * math.sqrt(var / n)
    assert abs(scaled / n - p**3) < 5 * math.sqrt(p**3 * (1 - p**3) / n)
    peaks = torch.cat([b["audio"].abs().amax(dim=(1, 2)) for b in built])
    assert peaks.max() <= 1.0 + 1e-6
    # Accepted examples are untouched (peak 10 ** (gain / 20) < 1); only the scaled reach 1.
    assert int((peaks > 1 - 1e-6).sum()) == scaled


def test_scale_mode_scales_every_clipped_mixture_and_rejects_none(square_wave):
    p, batches, batch_size = 6 / 16, 10, 64
    dataset = one_file_dataset(square_wave, Mixer(rms_db=0.0, clipping="scale"), batch_size)
    built = [dataset.batch(b) for b in range(batches)]
    n = batches * batch_size
    assert sum(b["rejected_mixtures"] for b in built) == 0
    scaled = sum(b["scaled_mixtures"] for b in built)
    assert abs(scaled / n - p) < 5 * math.sqrt(p * (1 - p) / n)


def test_a_batch_without_clipping_is_the_same_whether_rejecting_or_scaling(manifest):
    reader = SegmentReader(SAMPLE_RATE, 1, segment_seconds=0.5)
    batches = {}
    for clipping in ("reject", "scale"):
        dataset = MixtureDataset.from_manifests(
            [manifest], reader, Mixer(clipping=clipping), PAPER_STRATEGIES, 4, 0, 0
        )
        batches[clipping] = [dataset.batch(b) for b in range(3)]
        assert all(b["rejected_mixtures"] == b["scaled_mixtures"] == 0 for b in batches[clipping])
    assert_same(batches["reject"], batches["scale"])


@pytest.fixture(scope="module")
def loud_then_quiet(tmp_path_factory) -> tuple[Path, float]:
    """10 s: 5 s of a sine with RMS 0.1 (-20 dBFS), then 5 s with RMS 0.01 (-40 dBFS). 200 Hz
    at 8 kHz: every 0.5 s segment within a half holds whole cycles, so its RMS is exact.
    Returns the manifest and the file's RMS, computed here from the samples."""
    t = np.arange(10 * SAMPLE_RATE) / SAMPLE_RATE
    amplitude = np.where(t < 5, 0.1, 0.01) * math.sqrt(2)
    audio = (amplitude * np.sin(2 * np.pi * 200 * t)).astype(np.float32)
    file_rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    return write_one_file(tmp_path_factory.mktemp("halves"), audio), file_rms


def example_rms(loudness: str, manifest: Path) -> np.ndarray:
    mixer = Mixer(gain_db=(0.0, 0.0), rms_db=-20.0, min_rms_db=-60.0, loudness=loudness)
    dataset = one_file_dataset(manifest, mixer, 32)
    audio = torch.cat([dataset.batch(b)["audio"] for b in range(4)])
    return audio.square().mean(dim=(1, 2)).sqrt().numpy()


def test_file_loudness_keeps_quiet_passages_quiet(loud_then_quiet):
    manifest, file_rms = loud_then_quiet
    levels = example_rms("file", manifest)
    # One scale for the whole file, 0.1 / file RMS: the halves keep their 20 dB difference.
    scale = 0.1 / file_rms
    in_quiet_half = np.isclose(levels, 0.01 * scale, rtol=1e-3)
    in_loud_half = np.isclose(levels, 0.1 * scale, rtol=1e-3)
    assert in_quiet_half.sum() > 20 and in_loud_half.sum() > 20  # of 128; each half ~47%
    assert levels.min() == pytest.approx(0.01 * scale, rel=1e-3)
    assert levels.max() == pytest.approx(0.1 * scale, rel=1e-3)


def test_segment_loudness_boosts_quiet_passages(loud_then_quiet):
    manifest, _ = loud_then_quiet
    # Every segment, from the -40 dBFS half too, comes out at -20 dBFS.
    np.testing.assert_allclose(example_rms("segment", manifest), 0.1, rtol=1e-3)


def test_file_rms_is_computed_once_per_file_and_process(loud_then_quiet, monkeypatch):
    manifest, file_rms = loud_then_quiet
    reader = SegmentReader(SAMPLE_RATE, 1, segment_seconds=0.5)
    calls = []
    original = reader.file_rms
    monkeypatch.setattr(reader, "file_rms", lambda path: calls.append(path) or original(path))
    dataset = MixtureDataset.from_manifests([manifest], reader, Mixer(), ONE_SOURCE, 8, 0, 0)
    for b in range(3):
        dataset.batch(b)
    assert len(calls) == 1
    assert dataset._file_rms[0] == pytest.approx(file_rms, rel=1e-5)
