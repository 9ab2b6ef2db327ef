"""The demo corpus sounds like what it claims, checked with independent DSP measurements."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
from scipy import signal

from encodec_train.data.manifest import Manifest
from encodec_train.data.synth import (
    VOWEL_FORMANTS,
    chirp,
    ensure_demo_corpus,
    formant_filter,
    glottal_source,
    impact,
    music_like,
    noise_burst,
    note,
    speech_like,
    write_room_responses,
)

SR = 24000


def autocorrelation_pitch(frame: np.ndarray, sample_rate: int) -> float:
    """f0 (Hz) at the highest autocorrelation peak between 50 and 500 Hz."""
    frame = frame - frame.mean()
    ac = np.correlate(frame, frame, "full")[len(frame) - 1 :]
    low, high = sample_rate // 500, sample_rate // 50
    return sample_rate / (low + np.argmax(ac[low:high]))


def voiced_pitches(x: np.ndarray, sample_rate: int, frame: int = 1024) -> np.ndarray:
    """Autocorrelation pitch of every half-overlapping frame louder than -26 dBFS RMS."""
    starts = range(0, len(x) - frame, frame // 2)
    frames = [x[s : s + frame] for s in starts if np.sqrt(np.mean(x[s : s + frame] ** 2)) > 0.05]
    return np.array([autocorrelation_pitch(f, sample_rate) for f in frames])


def spectrum(x: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    return np.fft.rfftfreq(len(x), 1 / sample_rate), np.abs(np.fft.rfft(x * np.hanning(len(x))))


def test_source_filter_tracks_a_pitch_glide() -> None:
    # A glide from 100 to 200 Hz through the formants of /a/: every frame's autocorrelation
    # pitch must match the glide's value at the frame centre.
    f0 = np.linspace(100, 200, 2 * SR)
    voiced = formant_filter(glottal_source(f0, SR), VOWEL_FORMANTS["a"], SR)
    for start in range(0, len(f0) - 1024, 4000):
        expected = f0[start + 512]
        assert autocorrelation_pitch(voiced[start : start + 1024], SR) == pytest.approx(
            expected, rel=0.03
        )


def test_formant_filter_peaks_at_the_formants() -> None:
    impulse = np.zeros(SR)
    impulse[0] = 1.0
    freqs, mag = spectrum(formant_filter(impulse, (500.0, 1500.0, 2500.0), SR), SR)
    peaks, _ = signal.find_peaks(mag)
    top3 = np.sort(freqs[peaks[np.argsort(mag[peaks])[-3:]]])
    np.testing.assert_allclose(top3, [500, 1500, 2500], atol=30)


@pytest.mark.parametrize("base_f0", [110.0, 210.0])
def test_speech_pitch_moves_within_range_and_has_pauses(base_f0: float) -> None:
    x = speech_like(4.0, SR, base_f0, np.random.default_rng(1))
    pitches = voiced_pitches(x, SR)
    assert len(pitches) > 40
    assert pitches.min() >= 0.75 * base_f0 * 0.97 and pitches.max() <= 1.35 * base_f0 * 1.03
    assert pitches.max() / pitches.min() > 1.15  # intonation, not a monotone
    hop = SR // 20
    rms = np.array([np.sqrt(np.mean(x[s : s + hop] ** 2)) for s in range(SR // 5, len(x), hop)])
    assert (rms < 1e-3).sum() >= 3  # at least 150 ms of silence after the lead-in


def test_note_has_its_harmonics_and_drops_those_above_nyquist() -> None:
    freqs, mag = spectrum(note(440.0, 1.0, SR, np.array([1.0, 0.5, 0.25])), SR)
    at = {f: mag[np.argmin(abs(freqs - f))] for f in (440, 880, 1320, 1760, 1000)}
    assert at[880] / at[440] == pytest.approx(0.5, rel=0.05)
    assert at[1320] / at[440] == pytest.approx(0.25, rel=0.05)
    assert at[1760] < 1e-3 * at[440] and at[1000] < 1e-3 * at[440]
    # 5 kHz at 16 kHz: harmonics 2 and 3 (10, 15 kHz) would alias to 6 and 1 kHz.
    freqs, mag = spectrum(note(5000.0, 1.0, 16000, np.ones(3)), 16000)
    alias = max(mag[np.argmin(abs(freqs - f))] for f in (1000, 6000))
    assert alias < 1e-3 * mag.max()


def test_music_peaks_are_harmonics_of_c_major_notes() -> None:
    c_major = {0, 2, 4, 5, 7, 9, 11}
    notes = [440 * 2 ** ((p - 69) / 12) for p in range(36, 96) if p % 12 in c_major]
    for seed in range(3):
        stereo = music_like(5.0, SR, np.random.default_rng(seed))
        assert stereo.shape == (2, 5 * SR)
        assert not np.allclose(stereo[0], stereo[1])
        freqs, mag = spectrum(stereo.mean(axis=0), SR)
        peaks, _ = signal.find_peaks(mag, height=0.2 * mag.max(), distance=50)
        assert len(peaks) >= 6  # chords and melody, not a single tone
        for f in freqs[peaks]:
            assert any(abs(f - k * n) < max(2.0, 0.003 * f) for n in notes for k in range(1, 9))


def test_chirp_sweeps_from_start_to_stop_frequency() -> None:
    x = chirp(1.0, SR, 200.0, 4000.0)

    def zero_crossing_hz(segment: np.ndarray) -> float:
        return np.count_nonzero(np.diff(np.signbit(segment))) / 2 / (len(segment) / SR)

    assert zero_crossing_hz(x[240:1440]) == pytest.approx(200 * (4000 / 200) ** 0.035, rel=0.1)
    assert zero_crossing_hz(x[-1440:-240]) == pytest.approx(4000 / (4000 / 200) ** 0.035, rel=0.1)


def test_noise_burst_stays_in_its_band_and_impact_decays() -> None:
    freqs, mag = spectrum(noise_burst(1.0, SR, (1000.0, 2000.0), np.random.default_rng(0)), SR)
    energy = mag**2
    in_band = energy[(freqs > 800) & (freqs < 2400)].sum() / energy.sum()
    assert in_band > 0.95

    x = impact(1.0, SR, np.array([300.0, 828.0]), decay=10.0)
    quarter = SR // 4
    assert np.sum(x[-quarter:] ** 2) < 1e-3 * np.sum(x[:quarter] ** 2)
    freqs, mag = spectrum(x, SR)
    assert freqs[np.argmax(mag)] == pytest.approx(300, abs=2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    root = tmp_path_factory.mktemp("demo")
    return root, ensure_demo_corpus(root)


def test_demo_manifests_match_the_files(corpus: tuple[Path, dict[str, Path]]) -> None:
    root, manifests = corpus
    assert manifests == {"train": root / "train.jsonl", "valid": root / "valid.jsonl"}
    rows = {split: list(Manifest.load(path)) for split, path in manifests.items()}
    for split, per_domain in (("train", 8), ("valid", 2)):
        domains = [e.domain for e in rows[split]]
        assert {d: domains.count(d) for d in set(domains)} == {
            "speech": per_domain,
            "music": per_domain,
            "general": per_domain,
        }
    entries = rows["train"] + rows["valid"]
    listed = sorted(Path(e.path) for e in entries)
    assert listed == sorted(p for p in root.rglob("*") if p.suffix in (".wav", ".flac"))
    for e in entries:
        info = soundfile.info(e.path)
        assert (e.sample_rate, e.channels) == (info.samplerate, info.channels)
        assert e.duration == pytest.approx(info.frames / info.samplerate)
        assert 3.0 <= e.duration <= 6.0
        assert e.dataset == f"demo_{e.domain}"
        audio, _ = soundfile.read(e.path)
        assert 0.1 < np.abs(audio).max() <= 1.0
    assert {e.sample_rate for e in entries} == {24000, 44100}
    assert {e.channels for e in entries} == {1, 2}
    assert {Path(e.path).suffix for e in entries} == {".wav", ".flac"}
    # Paths are stored relative to the corpus, so the folder can move.
    assert all(not line.startswith('{"path": "/') for line in open(manifests["train"]))


def test_demo_speech_files_have_speech_pitch(corpus: tuple[Path, dict[str, Path]]) -> None:
    for e in Manifest.load(corpus[1]["train"]):
        if e.domain == "speech":
            audio, rate = soundfile.read(e.path)
            pitches = voiced_pitches(audio, rate, frame=int(0.04 * rate))
            assert 70 <= np.median(pitches) <= 300


def test_demo_corpus_is_deterministic_and_written_once(
    corpus: tuple[Path, dict[str, Path]], tmp_path: Path
) -> None:
    root, manifests = corpus
    first = root / "music" / "music_00.wav"
    written = first.stat().st_mtime_ns
    assert ensure_demo_corpus(root) == manifests
    assert first.stat().st_mtime_ns == written

    again = ensure_demo_corpus(tmp_path / "again")
    assert again["train"].read_text() == manifests["train"].read_text()
    for e in Manifest.load(again["train"]):
        relative = Path(e.path).relative_to(tmp_path / "again")
        np.testing.assert_array_equal(soundfile.read(e.path)[0], soundfile.read(root / relative)[0])

    # Other parameters rewrite the corpus in place.
    ensure_demo_corpus(tmp_path / "again", sample_rate=16000, seed=1)
    rates = {e.sample_rate for e in Manifest.load(again["train"])}
    assert rates == {16000, 44100}
    other = soundfile.read(tmp_path / "again" / "general" / "general_03.flac")[0]
    assert other.shape != soundfile.read(root / "general" / "general_03.flac")[0].shape


@pytest.mark.parametrize("rt60", [0.3, 0.8, 1.3])
def test_room_responses_decay_60_db_in_their_rt60(tmp_path: Path, rt60: float) -> None:
    """The energy of the written response falls 60 dB in `rt60` seconds: the slope of a
    least-squares line through its log energy envelope (a computation independent of the
    Schroeder integral the manifest's RT60 comes from), and the manifest agrees."""
    manifest = write_room_responses(tmp_path, [rt60], sample_rate=16000, seed=3)
    audio, rate = soundfile.read(tmp_path / "room_000.wav")
    energy = audio[1:] ** 2  # the tail, without the direct sound
    frame = rate // 100
    envelope = energy[: len(energy) // frame * frame].reshape(-1, frame).mean(axis=1)
    t = (np.arange(len(envelope)) + 0.5) * frame / rate
    kept = t < rt60  # the first 60 dB, well above the float32 noise floor
    slope = np.polyfit(t[kept], 10 * np.log10(envelope[kept]), 1)[0]
    assert -60 / slope == pytest.approx(rt60, rel=0.05)
    row = json.loads(manifest.read_text())
    assert row["path"] == "room_000.wav" and row["rt60"] == pytest.approx(rt60, rel=0.05)
