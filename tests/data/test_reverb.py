"""Reverberation: RT60 estimates, the impulse-response manifest, the convolution, and which
examples are reverberated (paper §4.1)."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_datamodule import datamodule
from test_dataset import SAMPLE_RATE

from encodec_train.data.dataset import MixtureDataset
from encodec_train.data.manifest import ManifestEntry, ManifestError, write_manifest
from encodec_train.data.mixing import Mixer, MixingStrategy
from encodec_train.data.reverb import Reverb, energy_decay_db, rt60, write_impulse_responses
from encodec_train.data.segments import SegmentReader


def decay(rt60_seconds: float, rate: int, noise: np.random.Generator | None = None) -> np.ndarray:
    """An exponential decay whose energy falls 60 dB in `rt60_seconds`: exp(-t / tau) with
    tau = RT60 / (3 ln 10), optionally modulating white noise; 1.5 RT60 long."""
    t = np.arange(round(1.5 * rt60_seconds * rate)) / rate
    envelope = np.exp(-t / (rt60_seconds / (3 * math.log(10))))
    return envelope if noise is None else envelope * noise.standard_normal(len(t))


@pytest.mark.parametrize("expected", [0.3, 0.55, 1.3])
def test_rt60_of_an_exponential_decay_is_the_closed_form(expected):
    assert rt60(decay(expected, 16000), 16000) == pytest.approx(expected, rel=1e-3)
    # Noise under the same envelope: Schroeder integration smooths the fluctuations.
    noisy = decay(expected, 16000, np.random.default_rng(0))
    assert rt60(noisy, 16000) == pytest.approx(expected, rel=0.03)


def test_energy_decay_curve_of_an_exponential_is_linear_in_db():
    # Energy exp(-2t / tau) falls 10 log10(e^2) = 8.69 dB per tau.
    rate, tau = 8000, 0.05
    t = np.arange(rate) / rate
    curve = energy_decay_db(np.exp(-t / tau))
    assert curve[0] == 0
    assert curve[round(tau * rate)] == pytest.approx(-20 / math.log(10), abs=1e-3)


def test_rt60_refuses_responses_without_a_measurable_decay():
    with pytest.raises(ValueError, match="silent"):
        rt60(np.zeros(100), 16000)
    with pytest.raises(ValueError, match="does not reach"):
        rt60(np.r_[1.0, np.zeros(99)], 16000)  # all energy in the first sample


@pytest.fixture(scope="module")
def responses(tmp_path_factory) -> Path:
    """Responses of RT60 0.2, 0.5, 1.0 and 1.6 s (16 kHz WAV), their manifest written by
    `write_impulse_responses`, plus a silent file it must leave out."""
    root = tmp_path_factory.mktemp("rir")
    rng = np.random.default_rng(1)
    paths = []
    for value in (0.2, 0.5, 1.0, 1.6):
        paths.append(root / "rooms" / f"rt{value}.wav")
        paths[-1].parent.mkdir(exist_ok=True)
        sf.write(paths[-1], decay(value, 16000, rng).astype(np.float32) * 0.5, 16000)
    sf.write(root / "rooms" / "silent.wav", np.zeros(1600, dtype=np.float32), 16000)
    out = root / "responses.jsonl"
    written, failures = write_impulse_responses([*paths, root / "rooms" / "silent.wav"], out)
    assert written == 4 and len(failures) == 1 and "silent.wav" in failures[0]
    return out


def test_manifest_records_each_rt60_and_load_keeps_the_range(responses):
    rows = [json.loads(line) for line in responses.read_text().splitlines()]
    assert [row["path"] for row in rows] == [f"rooms/rt{v}.wav" for v in (0.2, 0.5, 1.0, 1.6)]
    assert [row["rt60"] for row in rows] == pytest.approx([0.2, 0.5, 1.0, 1.6], rel=0.05)
    reverb = Reverb.load(responses, 8000, 0.2, (0.3, 1.3))
    assert [Path(p).name for p in reverb.paths] == ["rt0.5.wav", "rt1.0.wav"]
    assert Path(reverb.paths[0]).is_absolute()
    # Resampled to the model's rate: 1.5 x 0.5 s at 8 kHz.
    assert reverb.response(0).shape == (6000,)


def test_load_names_a_missing_or_unusable_manifest(responses, tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        Reverb.load(tmp_path / "nothing.jsonl", 8000, 0.2)
    with pytest.raises(ManifestError, match="no impulse response with an RT60 in 2.0-3.0"):
        Reverb.load(responses, 8000, 0.2, (2.0, 3.0))
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"path": "a.wav"}\n')
    with pytest.raises(ManifestError, match="bad.jsonl:1"):
        Reverb.load(bad, 8000, 0.2)


def test_apply_is_the_convolution_cut_to_length_at_the_dry_level():
    rng = np.random.default_rng(2)
    audio = rng.standard_normal((2, 1000)).astype(np.float32) * 0.1
    ir = decay(0.05, 8000, rng).astype(np.float32)
    wet = Reverb([], 8000, 0.2).apply(torch.from_numpy(audio), torch.from_numpy(ir)).numpy()
    expected = np.stack([np.convolve(channel, ir)[:1000] for channel in audio])
    expected *= np.sqrt(np.mean(audio**2) / np.mean(expected**2))
    np.testing.assert_allclose(wet, expected, atol=1e-5)


# --- which examples are reverberated ---


def write_files(root: Path, domain: str, count: int) -> Path:
    """`count` 2-second noisy tones of one domain at the model's rate; their manifest."""
    rng = np.random.default_rng(3)
    t = np.arange(2 * SAMPLE_RATE) / SAMPLE_RATE
    entries = []
    for i in range(count):
        audio = 0.1 * np.sin(2 * np.pi * (300 + 40 * i) * t) + 0.02 * rng.standard_normal(len(t))
        sf.write(root / f"{domain}{i}.wav", audio.astype(np.float32), SAMPLE_RATE)
        entries.append(ManifestEntry(f"{domain}{i}.wav", 2.0, SAMPLE_RATE, 1, domain, domain))
    return write_manifest(entries, root / f"{domain}.jsonl")


def batches(manifest: Path, strategy: MixingStrategy, reverb: Reverb) -> torch.Tensor:
    """640 examples; gains fixed and levels low, so nothing clips and the draws match."""
    mixer = Mixer(gain_db=(0.0, 0.0), loudness="segment", clipping="scale")
    reader = SegmentReader(SAMPLE_RATE, 1, segment_seconds=0.25)
    dataset = MixtureDataset.from_manifests(
        [manifest], reader, mixer, [strategy], 64, 0, 0, reverb=reverb
    )
    return torch.cat([dataset.batch(b)["audio"] for b in range(10)])


def reverberated(manifest: Path, strategy: MixingStrategy, responses: Path, p: float):
    """bool [examples]: which examples differ from the same stream without reverberation."""
    dry = batches(manifest, strategy, Reverb.load(responses, SAMPLE_RATE, 0.0))
    wet = batches(manifest, strategy, Reverb.load(responses, SAMPLE_RATE, p))
    return (wet != dry).flatten(1).any(dim=1)


def test_the_fraction_reverberated_is_the_probability(responses, tmp_path):
    manifest = write_files(tmp_path, "speech", 3)
    changed = reverberated(manifest, MixingStrategy("one", 1.0, 1), responses, 0.2)
    n = len(changed)
    assert abs(changed.float().mean().item() - 0.2) < 5 * math.sqrt(0.2 * 0.8 / n)


def test_single_source_music_is_never_reverberated_but_music_in_a_mixture_is(responses, tmp_path):
    manifest = write_files(tmp_path, "music", 3)
    alone = reverberated(manifest, MixingStrategy("s1", 1.0, 1), responses, 1.0)
    assert not alone.any()
    mixed = reverberated(manifest, MixingStrategy("pair", 1.0, 2), responses, 1.0)
    assert mixed.all()


def test_data_module_loads_the_responses_and_names_a_missing_manifest(responses, tmp_path):
    corpus = str(write_files(tmp_path, "speech", 3))
    manifests = {"train": corpus, "valid": corpus}
    one = {"strategies": [MixingStrategy("one", 1.0, 1)]}
    data = datamodule(manifests, reverb_probability=0.2, impulse_responses=str(responses), **one)
    data.setup("fit")
    assert data.train_dataset.reverb is data.valid_dataset.reverb is data.reverb
    assert len(data.reverb) == 2 and data.reverb.probability == 0.2
    assert data.train_dataset.batch(0)["audio"].shape == (2, 1, 2000)
    missing = datamodule(
        manifests, reverb_probability=0.2, impulse_responses="no/rirs.jsonl", **one
    )
    with pytest.raises(FileNotFoundError, match="no/rirs.jsonl"):
        missing.setup("fit")
    with pytest.raises(ValueError, match="impulse_responses"):
        datamodule(manifests, reverb_probability=0.2)
