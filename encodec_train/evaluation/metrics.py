"""Objective quality metrics of a decoded signal against its reference.

Every metric takes `reference` and `degraded` as float tensors `[channels, time]` at one
`sample_rate`, plus the `domain` of the audio (speech / general / music), and returns a float.
Inputs are checked (same shape, finite, reference not silent, rate high enough); a metric
that has no meaning for the input (PESQ on music, any metric of a silent reference) raises
`MetricNotApplicable` with the reason, which reports show instead of a number. A reference
channel is silent when its RMS about its mean is below `SILENCE_DB` (`silent`); SI-SNR leaves
silent channels out of its mean and counts them (`si_snr_mean`, which validation during
training uses too).

The perceptual metrics come from the `eval` extra (`pip install encodec-train[eval]`) and
are imported on first use, so training never needs them:

- PESQ wide-band (ITU-T P.862.2, `pesq`), at 16 kHz, speech only;
- STOI (`pystoi`), at 10 kHz internally, speech only;
- ViSQOL v3 (`visqol-python`): speech mode at 16 kHz for speech, audio mode at 48 kHz for
  music and general audio (the paper's choice); the input is resampled first, since ViSQOL
  does not resample;
- auraloss's multi-resolution STFT distance.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torchaudio.functional as AF
from torch import Tensor

from encodec_train.losses import MultiScaleMelLoss

SILENCE_DB = -60.0
"""A reference channel whose RMS about its mean is below this, in dB relative to full scale
(1.0), is silent: SI-SNR is undefined on it (its projection is zero, or rounding noise), and
no metric scores a clip whose channels all are. 40 dB under the test sets' −20 dBFS level and
far above 16-bit quantisation noise (about −101 dBFS)."""


class MetricNotApplicable(ValueError):
    """The metric means nothing for this input; the message says why."""


def si_snr(degraded: Tensor, reference: Tensor, eps: float = 1e-12) -> Tensor:
    """Scale-invariant signal-to-noise ratio in dB (Le Roux et al., 2019, the paper's SI-SNR).

    Both signals are made zero-mean; the target is the projection of the degraded signal on
    the reference, `s_t = <d, r> r / ||r||²`, the noise `e = d − s_t`, and
    SI-SNR = 10 log10(||s_t||² / (||e||² + eps) + eps). A scaled copy of the reference scores
    very high (limited by `eps`), whatever the scale; an output with nothing of the reference
    in it (zeros, a constant, a signal orthogonal to it) scores the floor 10 log10(eps),
    −120 dB, where eps on both sides of the ratio would give a silent output 0 dB, better
    than a poor codec's. On a silent reference the value means nothing: `si_snr_mean`
    leaves those out.

    Args:
        degraded, reference: `[..., time]`.
    Returns:
        `[...]`, in dB, computed in float64.
    """
    degraded = degraded.double() - degraded.double().mean(-1, keepdim=True)
    reference = reference.double() - reference.double().mean(-1, keepdim=True)
    scale = (degraded * reference).sum(-1, keepdim=True) / (
        reference.pow(2).sum(-1, keepdim=True) + eps
    )
    target = scale * reference
    noise = degraded - target
    return 10 * torch.log10(target.pow(2).sum(-1) / (noise.pow(2).sum(-1) + eps) + eps)


def silent(reference: Tensor, silence_db: float = SILENCE_DB) -> Tensor:
    """`[..., time]` → `[...]` bool: where the reference's RMS about its mean (the part SI-SNR
    projects on) is below `silence_db` dBFS."""
    centred = reference.double() - reference.double().mean(-1, keepdim=True)
    return centred.pow(2).mean(-1) < 10 ** (silence_db / 10)


@dataclass(frozen=True)
class SiSnrMean:
    """SI-SNR over the channels whose reference is not silent.

    Attributes:
        channels: the SI-SNR of each scored channel, `[scored]` float64 (a median reads them).
        silent: channels left out because their reference is silent.
    """

    channels: Tensor
    silent: int

    @property
    def value(self) -> Tensor:
        """The mean in dB (0-dim float64 tensor); NaN when every reference is silent."""
        return self.channels.mean()

    @property
    def scored(self) -> int:
        """Channels in the mean."""
        return self.channels.numel()


def si_snr_mean(degraded: Tensor, reference: Tensor, silence_db: float = SILENCE_DB) -> SiSnrMean:
    """`si_snr` of every channel of `[..., time]` signals, averaged over the channels whose
    reference is not `silent`; those are left out of the mean and counted."""
    quiet = silent(reference, silence_db)
    values = si_snr(degraded, reference)[~quiet]
    return SiSnrMean(values, int(quiet.sum()))


class MelDistance:
    """Magnitude mel spectrograms at one resolution (the paper's linear mel), the scale on
    which mel distances are measured, whatever the training loss compares.

    Linear, not log: a log-mel distance is dominated by the inaudible noise floor of quiet
    bands, which no codebook encodes, and then hides whether more bits help (measured on the
    demo: SI-SNR and linear-mel distance improve from 1.5 to 6 kbps where log-mel does not).
    """

    def __init__(self, sample_rate: int, n_fft: int = 1024, n_mels: int = 64) -> None:
        exponent = n_fft.bit_length() - 1
        if 2**exponent != n_fft:
            raise ValueError(f"n_fft={n_fft} must be a power of 2")
        self.mel = MultiScaleMelLoss(sample_rate, n_mels=n_mels, window_exponents=[exponent])

    def spectrogram(self, audio: Tensor) -> Tensor:
        """[batch, channels, time] → [batch, channels, n_mels, frames]"""
        self.mel.to(audio.device)
        return self.mel.spectrograms(audio.float())[0]

    def __call__(self, degraded: Tensor, reference: Tensor) -> Tensor:
        """Mean absolute difference of the mel spectrograms, per clip: [batch, ...] → [batch]"""
        difference = self.spectrogram(degraded) - self.spectrogram(reference)
        return difference.abs().flatten(1).mean(-1)


def check_pair(reference: Tensor, degraded: Tensor, sample_rate: int) -> None:
    """Refuse inputs no metric can score: mismatched shapes, non-finite values, a silent
    reference (`MetricNotApplicable`)."""
    if reference.dim() != 2 or reference.shape != degraded.shape:
        raise ValueError(
            f"reference {tuple(reference.shape)} and degraded {tuple(degraded.shape)} must "
            "both be [channels, time] of the same length"
        )
    if sample_rate <= 0:
        raise ValueError(f"sample_rate={sample_rate} must be positive")
    if not (torch.isfinite(reference).all() and torch.isfinite(degraded).all()):
        raise ValueError("reference or degraded audio holds NaN or infinite values")
    if silent(reference).all():
        raise MetricNotApplicable(f"the reference is silent (RMS below {SILENCE_DB:g} dBFS)")


def _speech_only(metric: str, domain: str) -> None:
    if domain != "speech":
        raise MetricNotApplicable(f"{metric} is defined for speech only, not {domain}")


def _mono_at(audio: Tensor, sample_rate: int, target_rate: int, name: str) -> np.ndarray:
    """The channel mean of `audio` resampled to `target_rate`, as float64 numpy (metric `name`
    refuses upsampled audio unless it is ViSQOL, whose rates are fixed by its modes)."""
    if sample_rate < target_rate and name != "ViSQOL":
        raise MetricNotApplicable(f"{name} needs audio at ≥ {target_rate} Hz, got {sample_rate}")
    mono = audio.double().mean(0)
    if sample_rate != target_rate:
        mono = AF.resample(mono, sample_rate, target_rate)
    return mono.numpy()


def si_snr_metric(reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """SI-SNR in dB, averaged over the channels whose reference is not silent (`check_pair`
    has refused a clip whose channels all are)."""
    return float(si_snr_mean(degraded, reference).value)


@functools.cache
def _mel_distance(sample_rate: int) -> MelDistance:
    return MelDistance(sample_rate)


def mel_distance(reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """Mean absolute difference of 64-bin linear mel spectrograms (n_fft 1024)."""
    with torch.no_grad():
        return float(_mel_distance(sample_rate)(degraded[None], reference[None])[0])


def pesq_wb(reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """Wide-band PESQ (MOS-LQO, 1.04–4.64) at 16 kHz, channels averaged; speech only."""
    from pesq import NoUtterancesError, pesq

    _speech_only("PESQ", domain)
    ref = _mono_at(reference, sample_rate, 16000, "PESQ")
    deg = _mono_at(degraded, sample_rate, 16000, "PESQ")
    try:
        return float(pesq(16000, ref, deg, "wb"))
    except NoUtterancesError as e:
        raise MetricNotApplicable(f"PESQ found no speech in the reference ({e})") from e


def stoi(reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """Short-time objective intelligibility (0–1), channels averaged; speech only."""
    from pystoi import stoi as pystoi

    _speech_only("STOI", domain)
    ref = _mono_at(reference, sample_rate, 16000, "STOI")
    deg = _mono_at(degraded, sample_rate, 16000, "STOI")
    return float(pystoi(ref, deg, 16000))


VISQOL_MODES = {"speech": ("speech", 16000)}
"""ViSQOL mode and rate per domain; any other domain uses the audio mode at 48 kHz."""


@functools.cache
def _visqol(mode: str):
    """One ViSQOL API per mode and process (building it and its first call are the slow part).

    The speech mode uses the polynomial quality mapping (the lattice model needs the optional
    `ai-edge-litert` runtime), i.e. C++ ViSQOL's `--use_lattice_model=false`.
    """
    from visqol import VisqolApi

    api = VisqolApi()
    if mode == "speech":
        api.create(mode="speech", use_lattice_model=False)
    else:
        api.create(mode="audio")
    return api


def visqol(reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """ViSQOL v3 MOS-LQO (1–5): speech mode at 16 kHz for speech, audio mode at 48 kHz
    otherwise; channels averaged before scoring."""
    mode, rate = VISQOL_MODES.get(domain, ("audio", 48000))
    ref = _mono_at(reference, sample_rate, rate, "ViSQOL")
    deg = _mono_at(degraded, sample_rate, rate, "ViSQOL")
    return float(_visqol(mode).measure_from_arrays(ref, deg, rate).moslqo)


@functools.cache
def _stft_loss():
    import auraloss

    return auraloss.freq.MultiResolutionSTFTLoss()


def stft_distance(reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """auraloss's multi-resolution STFT distance (spectral convergence + log magnitude,
    FFT sizes 1024/2048/512)."""
    with torch.no_grad():
        return float(_stft_loss()(degraded[None].float(), reference[None].float()))


@dataclass(frozen=True)
class Metric:
    """A metric's function, its name in reports and which way is better."""

    compute: Callable[[Tensor, Tensor, int, str], float]
    label: str
    higher_is_better: bool


METRICS: dict[str, Metric] = {
    "si_snr": Metric(si_snr_metric, "SI-SNR (dB)", True),
    "mel_distance": Metric(mel_distance, "mel distance", False),
    "visqol": Metric(visqol, "ViSQOL (MOS-LQO)", True),
    "pesq": Metric(pesq_wb, "PESQ wb", True),
    "stoi": Metric(stoi, "STOI", True),
    "stft_distance": Metric(stft_distance, "MR-STFT distance", False),
}


def metric(name: str) -> Metric:
    """The metric called `name`, or an error listing the known ones."""
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return METRICS[name]


def compute(name: str, reference: Tensor, degraded: Tensor, sample_rate: int, domain: str) -> float:
    """Check the pair, then compute metric `name` (raises `MetricNotApplicable`)."""
    check_pair(reference, degraded, sample_rate)
    return metric(name).compute(reference, degraded, sample_rate, domain)
