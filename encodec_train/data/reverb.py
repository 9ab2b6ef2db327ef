"""Reverberation with room impulse responses (paper §4.1): RT60 estimates, the impulse-response
manifest, and the convolution.

"We add reverberation using room impulse responses provided by the DNS challenge with
probability 0.2, and RT60 in the range [0.3, 1.3] except for the single-source music samples."

An impulse-response manifest is JSON Lines, one response a line: `{"path": ..., "rt60": ...}`,
the path relative to the manifest's folder unless absolute, the RT60 in seconds as estimated
by `rt60` (Schroeder backward integration). `recipes/dns_challenge.py --impulse-responses`
writes one for the DNS Challenge's responses.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio

from encodec_train.data.manifest import ManifestError, read_json_lines

FIT_RANGE_DB = (-5.0, -25.0)
"""The part of the energy decay curve the RT60 is fitted on (T20: from -5 to -25 dB,
extrapolated to 60 dB, ISO 3382), clear of the direct sound and of the noise floor."""


def energy_decay_db(ir: np.ndarray) -> np.ndarray:
    """Schroeder's energy decay curve of float [time] `ir`, in dB relative to its start:
    `10 log10(sum_{s >= t} ir[s]^2 / sum_s ir[s]^2)` (Schroeder 1965, backward integration)."""
    energy = np.cumsum(np.square(ir.astype(np.float64))[::-1])[::-1]
    with np.errstate(divide="ignore"):
        return 10 * np.log10(energy / energy[0])


def rt60(ir: np.ndarray, sample_rate: int, fit_db: tuple[float, float] = FIT_RANGE_DB) -> float:
    """The reverberation time, in seconds, of float [time] `ir`: the least-squares slope of its
    energy decay curve between `fit_db[0]` and `fit_db[1]` dB, extrapolated to a 60 dB decay.

    Raises:
        ValueError: the response is silent, or its decay never reaches `fit_db[1]`.
    """
    if not np.any(ir):
        raise ValueError("silent impulse response")
    decay = energy_decay_db(ir)
    start, stop = np.argmax(decay <= fit_db[0]), np.argmax(decay <= fit_db[1])
    if decay[-1] > fit_db[1] or stop - start < 2:
        raise ValueError(f"the energy decay does not reach {fit_db[1]} dB")
    t = np.arange(start, stop + 1) / sample_rate
    slope = np.polyfit(t, decay[start : stop + 1], 1)[0]  # dB per second, negative
    return -60.0 / slope


def read_impulse_response(path: str | Path) -> tuple[np.ndarray, int]:
    """float32 [time] first channel of an impulse-response file (the channels of a
    multi-microphone response are different positions, not one signal) and its rate."""
    audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
    return audio[:, 0], rate


def write_impulse_responses(paths: Iterable[str | Path], out: str | Path) -> tuple[int, list[str]]:
    """Estimate the RT60 of every response and write the manifest `out` (paths relative to
    its folder when below it). Returns how many were written and the failures, one line each
    (unreadable file, or no measurable decay)."""
    out = Path(out)
    rows, failures = [], []
    for path in paths:
        try:
            ir, rate = read_impulse_response(path)
            value = rt60(ir, rate)
        except (OSError, sf.SoundFileError, ValueError) as e:
            failures.append(f"{path}: {e}")
            continue
        relative = os.path.relpath(path, out.parent)
        shown = str(path) if relative.startswith("..") else relative
        rows.append({"path": shown, "rt60": round(value, 4)})
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    os.replace(tmp, out)
    return len(rows), failures


class Reverb:
    """Impulse responses with an RT60 in range, and their convolution with examples.

    Args:
        paths: the responses' files.
        sample_rate: the model's rate; responses are resampled to it when used.
        probability: chance that an eligible example is reverberated.
    """

    def __init__(self, paths: Sequence[str], sample_rate: int, probability: float) -> None:
        if not 0 <= probability <= 1:
            raise ValueError(f"reverb probability must be in [0, 1], got {probability}")
        self.paths = list(paths)
        self.sample_rate = sample_rate
        self.probability = probability

    @classmethod
    def load(
        cls,
        manifest: str | Path,
        sample_rate: int,
        probability: float,
        rt60_range: Sequence[float] = (0.3, 1.3),
    ) -> Reverb:
        """The responses of `manifest` whose RT60 lies in `rt60_range` (inclusive).

        Raises:
            FileNotFoundError: no such manifest (named).
            ManifestError: a malformed line, or no response in range (named).
        """
        manifest = Path(manifest)
        if not manifest.is_file():
            raise FileNotFoundError(
                f"impulse-response manifest {manifest} does not exist: write it with "
                "`python recipes/dns_challenge.py ... --impulse-responses` or set "
                "data.reverb_probability to 0"
            )
        low, high = rt60_range
        paths = []
        for number, row in read_json_lines(manifest):
            try:
                path, value = str(row["path"]), float(row["rt60"])
            except (KeyError, TypeError, ValueError) as e:
                raise ManifestError(
                    f"{manifest}:{number}: expected {{'path': ..., 'rt60': seconds}} ({e!r})"
                ) from None
            if low <= value <= high:
                paths.append(os.path.normpath(os.path.join(manifest.parent, path)))
        if not paths:
            raise ManifestError(f"{manifest}: no impulse response with an RT60 in {low}-{high} s")
        return cls(paths, sample_rate, probability)

    def __len__(self) -> int:
        return len(self.paths)

    def response(self, index: int) -> torch.Tensor:
        """float32 [time] response `index` at the model's rate (read on every use: a corpus of
        responses can be larger than a worker should hold)."""
        ir, rate = read_impulse_response(self.paths[index])
        ir = torch.from_numpy(ir)
        if rate != self.sample_rate:
            ir = torchaudio.functional.resample(ir, rate, self.sample_rate)
        return ir

    def apply(self, audio: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
        """float32 [channels, time] `audio` convolved with [length] `ir` (by FFT), cut to
        `time` samples and scaled back to the dry audio's RMS, so the example's level (set by
        the normalisation and gains) does not depend on the room's gain."""
        time = audio.shape[-1]
        size = 1 << math.ceil(math.log2(time + len(ir) - 1))
        spectrum = torch.fft.rfft(audio, size) * torch.fft.rfft(ir, size)
        wet = torch.fft.irfft(spectrum, size)[..., :time]
        dry_rms, wet_rms = audio.square().mean().sqrt(), wet.square().mean().sqrt()
        return wet * (dry_rms / wet_rms) if wet_rms > 0 else wet
