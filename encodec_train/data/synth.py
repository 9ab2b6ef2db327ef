"""A small synthetic corpus of speech-like, music-like and general sounds for the demo.

The demo (`python -m encodec_train` with no recipe) and the tests need audio from all three
domains without downloading anything. Each generator below is a pure NumPy/SciPy function of
its parameters and a `numpy.random.Generator`, returning mono float64 audio `[time]` in
[-1, 1]; stereo files are made by panning. `ensure_demo_corpus` writes the corpus once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import soundfile
from scipy import signal

from encodec_train.data.manifest_cli import AudioSource, build_manifest_from_sources

# Formant centre frequencies (Hz) of five vowels, rounded from Peterson & Barney (1952).
VOWEL_FORMANTS = {
    "a": (730.0, 1090.0, 2440.0),
    "e": (530.0, 1840.0, 2480.0),
    "i": (270.0, 2290.0, 3010.0),
    "o": (570.0, 840.0, 2410.0),
    "u": (300.0, 870.0, 2240.0),
}
FORMANT_BANDWIDTHS = (90.0, 110.0, 170.0)
PITCH_RANGE = (0.75, 1.35)
"""Speech pitch stays within these multiples of the speaker's base f0."""

# Harmonic amplitudes (k = 1, 2, ...) and amplitude decay rate (1/s) of the demo instruments.
INSTRUMENTS = {
    "organ": (np.array([1.0, 0.6, 0.4, 0.25, 0.15]), 0.0),
    "pluck": (1.0 / np.arange(1, 9), 3.0),
    "mellow": (np.array([1.0, 0.3, 0.1]), 1.0),
}

DEMO_FILES_PER_DOMAIN = 10
DEMO_VALID_FILES_PER_DOMAIN = 2
DEMO_DATASETS = {"speech": "demo_speech", "music": "demo_music", "general": "demo_general"}
_STAMP = "demo_corpus.json"
_VERSION = 1  # bump when the generators change, so old corpora are rewritten


def _add_at(out: np.ndarray, start: int, event: np.ndarray) -> None:
    """Add `event` into `out` from sample `start` on, cutting what runs past the end."""
    end = min(len(out), start + len(event))
    if end > start:
        out[start:end] += event[: end - start]


def glottal_source(f0: np.ndarray, sample_rate: int, open_quotient: float = 0.6) -> np.ndarray:
    """Glottal flow derivative (Rosenberg pulses) following a per-sample pitch contour.

    Args:
        f0: fundamental frequency in Hz for every sample, `[time]`.
        sample_rate: Hz.
        open_quotient: fraction of each period the glottis is open.
    Returns:
        `[time]`, peak-normalised. Phase accumulation keeps pitch glides click-free.
    """
    phase = np.cumsum(f0 / sample_rate) % 1.0
    rise = 0.6 * open_quotient
    fall = open_quotient - rise
    flow = np.where(
        phase < rise,
        0.5 * (1 - np.cos(np.pi * phase / rise)),
        np.where(phase < open_quotient, np.cos(0.5 * np.pi * (phase - rise) / fall), 0.0),
    )
    # Lip radiation differentiates the flow; it is what gives voiced speech its bright pulses.
    derivative = np.diff(flow, prepend=0.0)
    return derivative / np.abs(derivative).max()


def formant_filter(
    source: np.ndarray,
    formants: tuple[float, ...],
    sample_rate: int,
    bandwidths: tuple[float, ...] = FORMANT_BANDWIDTHS,
) -> np.ndarray:
    """Pass `source` `[time]` through a cascade of two-pole resonators (the vocal tract).

    Each resonator has unit gain at DC, as in Klatt's (1980) cascade synthesiser.
    """
    out = source
    for frequency, bandwidth in zip(formants, bandwidths, strict=True):
        radius = np.exp(-np.pi * bandwidth / sample_rate)
        a = np.array([1.0, -2 * radius * np.cos(2 * np.pi * frequency / sample_rate), radius**2])
        out = signal.lfilter([a.sum()], a, out)
    return out


def pitch_contour(
    duration: float, sample_rate: int, base_f0: float, rng: np.random.Generator
) -> np.ndarray:
    """Smoothly wandering pitch with a falling declination, within `PITCH_RANGE` × `base_f0`.

    Returns `[time]` in Hz.
    """
    n = int(duration * sample_rate)
    knots = rng.uniform(-1, 1, size=max(4, int(duration * 4)))  # ~4 pitch moves a second
    wander = np.interp(np.linspace(0, len(knots) - 1, n), np.arange(len(knots)), knots)
    declination = np.linspace(0.15, -0.1, n)
    low, high = PITCH_RANGE
    return base_f0 * np.clip(1 + 0.15 * wander + declination, low, high)


def speech_like(
    duration: float, sample_rate: int, base_f0: float, rng: np.random.Generator
) -> np.ndarray:
    """Babble of vowel syllables from a source–filter model, with pauses between phrases.

    Syllables last 0.12–0.3 s with raised-cosine envelopes; after a syllable a pause of
    0.15–0.4 s follows with probability 0.25. Returns `[time]`.
    """
    n = int(duration * sample_rate)
    source = glottal_source(pitch_contour(duration, sample_rate, base_f0, rng), sample_rate)
    source = source + 0.02 * rng.standard_normal(n)  # aspiration
    vowels = list(VOWEL_FORMANTS)
    filtered = {v: formant_filter(source, VOWEL_FORMANTS[v], sample_rate) for v in vowels}
    out = np.zeros(n)
    start = int(0.1 * sample_rate)
    while start < n:
        length = int(rng.uniform(0.12, 0.3) * sample_rate)
        stop = min(n, start + length)
        vowel = vowels[rng.integers(len(vowels))]
        _add_at(
            out, start, filtered[vowel][start:stop] * signal.windows.hann(length)[: stop - start]
        )
        start = stop
        if rng.random() < 0.25:
            start += int(rng.uniform(0.15, 0.4) * sample_rate)
    return 0.5 * out / np.abs(out).max()


def note(
    frequency: float,
    duration: float,
    sample_rate: int,
    harmonics: np.ndarray,
    decay: float = 0.0,
    attack: float = 0.01,
) -> np.ndarray:
    """A harmonic tone: partial k at k × `frequency` with amplitude `harmonics[k-1]`.

    Partials above Nyquist are dropped. The envelope is a linear `attack` (s), an exponential
    decay at `decay` (1/s) and a 20 ms release. Returns `[time]`.
    """
    t = np.arange(int(duration * sample_rate)) / sample_rate
    tone = np.zeros_like(t)
    for k, amplitude in enumerate(harmonics, start=1):
        if k * frequency < sample_rate / 2:
            tone += amplitude * np.sin(2 * np.pi * k * frequency * t)
    envelope = np.minimum(1.0, t / attack) * np.exp(-decay * t)
    envelope *= np.clip((duration - t) / 0.02, 0.0, 1.0)
    return tone * envelope


def midi_to_hz(pitch: float) -> float:
    """Equal-tempered frequency of a MIDI note number (69 = A4 = 440 Hz)."""
    return 440.0 * 2 ** ((pitch - 69) / 12)


def music_like(duration: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A chord progression on one instrument with a melody on another. Returns `[2, time]`.

    Chords are major or minor triads in C major; the melody plays scale notes above them.
    The two parts are panned apart so the stereo image is not trivial.
    """
    n = int(duration * sample_rate)
    chord_name, melody_name = rng.choice(list(INSTRUMENTS), size=2, replace=False)
    bar = rng.uniform(0.8, 1.4)
    roots = rng.choice([48, 53, 55, 57], size=int(np.ceil(duration / bar)))  # C F G A
    scale = np.array([60, 62, 64, 65, 67, 69, 71, 72])
    chords = np.zeros(n)
    melody = np.zeros(n)
    for i, root in enumerate(roots):
        start = int(i * bar * sample_rate)
        third = 3 if root == 57 else 4  # A minor, the others major
        for pitch in (root, root + third, root + 7):
            tone = note(midi_to_hz(pitch), bar, sample_rate, *INSTRUMENTS[chord_name])
            _add_at(chords, start, tone)
        for j in range(4):  # four melody notes per bar
            pitch = scale[rng.integers(len(scale))]
            tone = note(midi_to_hz(pitch), bar / 4, sample_rate, *INSTRUMENTS[melody_name])
            _add_at(melody, start + j * len(tone), tone)
    parts = np.stack([chords / np.abs(chords).max(), melody / max(np.abs(melody).max(), 1e-9)])
    mix = np.array([[0.7, 0.3], [0.3, 0.7]]) @ parts
    return 0.5 * mix / np.abs(mix).max()


def noise_burst(
    duration: float,
    sample_rate: int,
    band: tuple[float, float],
    rng: np.random.Generator,
) -> np.ndarray:
    """White noise band-passed to `band` (Hz, 4th-order Butterworth) under a Hann envelope."""
    n = int(duration * sample_rate)
    sos = signal.butter(4, band, btype="bandpass", fs=sample_rate, output="sos")
    return signal.sosfilt(sos, rng.standard_normal(n)) * signal.windows.hann(n)


def impact(duration: float, sample_rate: int, modes: np.ndarray, decay: float) -> np.ndarray:
    """A struck object: decaying sinusoids at inharmonic `modes` (Hz), decay rate `decay` (1/s).

    Higher modes decay faster, as in real plates and bars. Returns `[time]`.
    """
    t = np.arange(int(duration * sample_rate)) / sample_rate
    out = np.zeros_like(t)
    for i, frequency in enumerate(modes):
        out += np.sin(2 * np.pi * frequency * t) * np.exp(-decay * (1 + i) * t) / (1 + i)
    return out


def chirp(duration: float, sample_rate: int, start_hz: float, stop_hz: float) -> np.ndarray:
    """An exponential sine sweep from `start_hz` to `stop_hz` with 10 ms fades. `[time]`."""
    t = np.arange(int(duration * sample_rate)) / sample_rate
    sweep = signal.chirp(t, start_hz, duration, stop_hz, method="logarithmic")
    fade = np.clip(np.minimum(t, duration - t) / 0.01, 0.0, 1.0)
    return sweep * fade


def general_like(duration: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A scene of noise bursts, impacts and chirps at random times over faint noise. `[time]`."""
    n = int(duration * sample_rate)
    out = 0.01 * rng.standard_normal(n)
    nyquist = sample_rate / 2
    for _ in range(int(duration * 2)):
        kind = rng.integers(3)
        length = rng.uniform(0.2, 0.8)
        if kind == 0:
            low = rng.uniform(100, 0.4 * nyquist)
            event = noise_burst(length, sample_rate, (low, low * rng.uniform(1.5, 2.2)), rng)
        elif kind == 1:
            modes = rng.uniform(200, 4000) * np.array([1.0, 2.76, 5.40, 8.93])  # free bar
            event = impact(length, sample_rate, modes[modes < nyquist], rng.uniform(5, 20))
        else:
            low, high = sorted(rng.uniform(100, 0.8 * nyquist, size=2))
            event = chirp(length, sample_rate, low, high)
        start = rng.integers(0, max(1, n - len(event)))
        _add_at(out, start, event / np.abs(event).max())
    return 0.5 * out / np.abs(out).max()


def _demo_file(domain: str, index: int, sample_rate: int, seed: int) -> tuple[np.ndarray, int]:
    """Audio `[time, channels]` and sample rate of file `index` of `domain` in the demo corpus.

    Every fourth file is at 44.1 kHz and every third music or general file is stereo, so
    the loader's resampling and down-mixing are exercised.
    """
    rng = np.random.default_rng([seed, list(DEMO_DATASETS).index(domain), index])
    rate = 44100 if index % 4 == 3 else sample_rate
    duration = float(rng.uniform(3, 6))
    if domain == "speech":
        audio = speech_like(duration, rate, rng.uniform(100, 220), rng)[:, None]
    elif domain == "music":
        audio = music_like(duration, rate, rng).T
        if index % 3:
            audio = audio.mean(axis=1, keepdims=True)
    else:
        audio = general_like(duration, rate, rng)[:, None]
        if index % 3 == 0:  # stereo with a little inter-channel delay
            audio = np.concatenate([audio, np.roll(audio, int(0.0005 * rate))], axis=1)
    return audio, rate


def ensure_demo_corpus(root: Path, sample_rate: int = 24000, seed: int = 0) -> dict[str, Path]:
    """Write the demo corpus under `root` unless it is already there; return its manifests.

    Writes `DEMO_FILES_PER_DOMAIN` files per domain (3–6 s, WAV and FLAC) in
    `root/<domain>/`, then `train.jsonl` and `valid.jsonl` (the last
    `DEMO_VALID_FILES_PER_DOMAIN` files of each domain) with paths relative to `root`.
    Deterministic for a seed; a corpus written with other parameters is rewritten. Files are
    renamed into place, so ranks calling this at once all end with the same corpus.

    Returns:
        `{"train": root/train.jsonl, "valid": root/valid.jsonl}`.
    """
    root = Path(root)
    manifests = {split: root / f"{split}.jsonl" for split in ("train", "valid")}
    stamp = {"sample_rate": sample_rate, "seed": seed, "version": _VERSION}
    stamp_path = root / _STAMP
    if stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        if all(p.is_file() for p in manifests.values()):
            return manifests
    splits: dict[str, list[AudioSource]] = {"train": [], "valid": []}
    for domain, dataset in DEMO_DATASETS.items():
        for index in range(DEMO_FILES_PER_DOMAIN):
            audio, rate = _demo_file(domain, index, sample_rate, seed)
            path = root / domain / f"{domain}_{index:02d}.{'flac' if index % 2 else 'wav'}"
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.stem}.{os.getpid()}{path.suffix}")
            soundfile.write(tmp, audio, rate, subtype="PCM_16")
            os.replace(tmp, path)
            valid = index >= DEMO_FILES_PER_DOMAIN - DEMO_VALID_FILES_PER_DOMAIN
            splits["valid" if valid else "train"].append(AudioSource(path, domain, dataset))
    for split, sources in splits.items():
        build_manifest_from_sources(sources, manifests[split], num_workers=1, relative=True)
    tmp = stamp_path.with_name(f".{_STAMP}.{os.getpid()}")
    tmp.write_text(json.dumps(stamp))
    os.replace(tmp, stamp_path)
    return manifests


def room_response(rt60: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A synthetic room impulse response: a direct path, then Gaussian noise under an
    exponential envelope whose energy falls 60 dB in `rt60` seconds (the diffuse tail of
    Sabine's model), 1.5 × `rt60` long."""
    t = np.arange(round(1.5 * rt60 * sample_rate)) / sample_rate
    envelope = np.exp(-t * 3 * np.log(10) / rt60)
    response = rng.standard_normal(len(t)) * envelope
    response[0] = np.abs(response).max() * 2  # the direct sound
    return (0.5 * response / np.abs(response).max()).astype(np.float32)


def write_room_responses(
    root: Path, rt60s: list[float], sample_rate: int = 16000, seed: int = 0
) -> Path:
    """Write one `room_response` per RT60 into `root/` and their manifest
    `root/impulse_responses.jsonl` (RT60 measured from each file, as the DNS recipe does);
    a stand-in for the DNS Challenge responses where those cannot be downloaded."""
    from encodec_train.data.reverb import write_impulse_responses

    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index, rt60 in enumerate(rt60s):
        path = root / f"room_{index:03d}.wav"
        soundfile.write(path, room_response(rt60, sample_rate, rng), sample_rate)
        paths.append(path)
    manifest = root / "impulse_responses.jsonl"
    write_impulse_responses(paths, manifest)
    return manifest
