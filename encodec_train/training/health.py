"""Training health: is the codec encoding its input, and is the adversary learning?

A codec can lower every loss while decoding the same average sound whatever it is given
(a constant encoder, one code used). These signals show that within a few dozen steps:

- `temporal_variation`: how much the encoder's latent moves over time (≈ 0: constant encoder);
- `code_perplexity`: how many codes a level really uses (≈ 1: one code);
- `input_specificity`: each clip's reconstruction distance to its own input over its distance
  to the other clips' inputs (≈ 1: the output does not depend on the input);
- per-bandwidth distances, which must fall as bits are added;
- the discriminator's accuracy on real vs. decoded audio (≈ 0.5: it is not learning).

`HealthCheck` turns them into warnings with thresholds from the config (`health:` group).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from encodec_train.evaluation.metrics import MelDistance
from encodec_train.losses.adversarial import discriminator_hinge_loss, logit_metrics
from encodec_train.model.quantizer import perplexity


def temporal_variation(latent: Tensor) -> Tensor:
    """Standard deviation over time of each latent channel, averaged, over the latent's
    overall standard deviation: [batch, dim, frames] → scalar in [0, 1]-ish.

    A latent that only differs between channels (a per-channel constant) scores 0.
    """
    over_time = latent.float().std(dim=-1).mean()
    return over_time / latent.float().std().clamp(min=1e-12)


def code_perplexity(codes: Tensor, codebook_size: int) -> Tensor:
    """`perplexity` of the histogram of `codes` (one level's codes, any shape)."""
    return perplexity(torch.bincount(codes.flatten(), minlength=codebook_size).float())


@contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """`module` in eval mode for the duration (codebooks do not learn), then as it was."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def pairwise_distances(fake_spectrograms: Tensor, real_spectrograms: Tensor) -> Tensor:
    """Mean absolute difference between every decoded clip i and every input clip j.

    Args:
        fake_spectrograms, real_spectrograms: `[batch, ...]` (e.g. mel spectrograms).
    Returns:
        `[batch, batch]`, entry (i, j) = mean |fake_i - real_j|.
    """
    fake = fake_spectrograms.flatten(1)
    real = real_spectrograms.flatten(1)
    return (fake[:, None, :] - real[None, :, :]).abs().mean(-1)


def input_specificity(distances: Tensor) -> Tensor:
    """Mean distance of each reconstruction to its own input over its mean distance to the
    other inputs (`distances` from `pairwise_distances`, batch ≥ 2): < 1 when the codec
    encodes its input, 1 when the output ignores it."""
    batch = distances.shape[0]
    if batch < 2:
        raise ValueError("input specificity needs at least two clips")
    own = distances.diagonal().mean()
    other = (distances.sum() - distances.diagonal().sum()) / (batch * (batch - 1))
    return own / other.clamp(min=1e-12)


@dataclass
class HealthReport:
    """Health signals of one probe, as plain floats (step, then one entry per signal)."""

    step: int
    level0_perplexity: float
    encoder_temporal_variation: float
    own_other_ratio: float
    distance_per_bandwidth: dict[float, float]
    discriminator_accuracy: float | None = None
    discriminator_loss: float | None = None

    def as_metrics(self) -> dict[str, float]:
        metrics = {
            "health/level0_perplexity": self.level0_perplexity,
            "health/encoder_temporal_variation": self.encoder_temporal_variation,
            "health/own_other_ratio": self.own_other_ratio,
        }
        for bandwidth, distance in self.distance_per_bandwidth.items():
            metrics[f"health/mel_distance@{bandwidth:g}kbps"] = distance
        if self.discriminator_accuracy is not None:
            metrics["health/discriminator_accuracy"] = self.discriminator_accuracy
            metrics["health/discriminator_loss"] = self.discriminator_loss
        return metrics


@dataclass
class HealthCheck:
    """Thresholds past which a run is reported as collapsed or stuck (config group `health`).

    Args:
        start_step: no warning before this step (an untrained codec looks collapsed).
        min_level0_perplexity: fewer effectively used level-0 codes means one code
            carries everything.
        min_encoder_temporal_variation: a latent that moves less than this over time is
            (nearly) constant.
        max_own_other_ratio: reconstructions must be this much closer to their own input
            than to other clips.
        min_bandwidth_gain: the highest bandwidth's distance must be at least this fraction
            below the lowest one's.
        min_discriminator_accuracy: a discriminator at chance (0.5) is not learning.
    """

    start_step: int = 100
    min_level0_perplexity: float = 2.0
    min_encoder_temporal_variation: float = 0.05
    max_own_other_ratio: float = 0.9
    min_bandwidth_gain: float = 0.01
    min_discriminator_accuracy: float = 0.55

    def problems(self, report: HealthReport, adversary_start_step: int = 0) -> dict[str, str]:
        """What looks collapsed in `report`: signal name → one sentence (empty: healthy). The
        discriminator is judged from `start_step` steps after it joined training."""
        if report.step < self.start_step:
            return {}
        found = {}
        if report.level0_perplexity < self.min_level0_perplexity:
            found["perplexity"] = (
                f"level-0 codebook perplexity {report.level0_perplexity:.2f} < "
                f"{self.min_level0_perplexity:g}: the first codebook uses almost one code"
            )
        if report.encoder_temporal_variation < self.min_encoder_temporal_variation:
            found["temporal_variation"] = (
                f"encoder temporal variation {report.encoder_temporal_variation:.3f} < "
                f"{self.min_encoder_temporal_variation:g}: the encoder output is nearly constant"
            )
        if report.own_other_ratio > self.max_own_other_ratio:
            found["own_other_ratio"] = (
                f"own/other distance ratio {report.own_other_ratio:.3f} > "
                f"{self.max_own_other_ratio:g}: reconstructions do not depend on their input"
            )
        distances = [
            report.distance_per_bandwidth[b] for b in sorted(report.distance_per_bandwidth)
        ]
        if len(distances) > 1 and distances[-1] > distances[0] * (1 - self.min_bandwidth_gain):
            found["bandwidth_gain"] = (
                f"mel distance {distances[-1]:.4f} at the highest bandwidth is not "
                f"{self.min_bandwidth_gain:.0%} below {distances[0]:.4f} at the lowest: "
                "more bits do not help"
            )
        accuracy = report.discriminator_accuracy
        judged = report.step >= adversary_start_step + self.start_step
        if accuracy is not None and judged and accuracy < self.min_discriminator_accuracy:
            found["discriminator_accuracy"] = (
                f"discriminator accuracy {accuracy:.3f} < {self.min_discriminator_accuracy:g}: "
                "the discriminator is not learning"
            )
        return found


@dataclass
class PersistentProblems:
    """Reports a problem only once `patience` consecutive probes found it.

    One probe is a handful of clips: a borderline reading (the highest bandwidth 0.0960 vs
    the lowest 0.0959) flickers from probe to probe while the codec is healthy, whereas a
    collapse persists. `streaks` counts, per signal, the consecutive probes that found it.
    """

    patience: int = 2
    streaks: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.patience < 1:
            raise ValueError(f"health patience={self.patience}: must be at least 1 probe")

    def update(self, found: dict[str, str]) -> list[str]:
        """Record one probe's `HealthCheck.problems`; return those seen `patience` times in a
        row."""
        self.streaks = {signal: self.streaks.get(signal, 0) + 1 for signal in found}
        return [text for signal, text in found.items() if self.streaks[signal] >= self.patience]


@torch.no_grad()
def probe_health(
    generator: torch.nn.Module,
    discriminator: torch.nn.Module | None,
    audio: Tensor,
    step: int,
    distance: MelDistance,
) -> HealthReport:
    """Health signals of `generator` (an `EncodecModel`) on a fixed probe batch.

    Runs in eval mode, so codebooks do not learn from the probe.

    Args:
        generator: the codec.
        discriminator: maps audio to (logits per scale, feature maps); None skips its accuracy.
        audio: `[batch ≥ 2, channels, time]`, the same clips at every probe.
        step: the training step, recorded in the report.
        distance: the mel scale distances are measured on.
    """
    with eval_mode(generator):
        latent = generator.encoder(audio)
        real = distance.spectrogram(audio)
        outputs, distances = {}, {}
        for bandwidth in generator.target_bandwidths:
            outputs[bandwidth] = generator(audio, bandwidth)
            distances[bandwidth] = pairwise_distances(
                distance.spectrogram(outputs[bandwidth].audio), real
            )
        top = generator.target_bandwidths[-1]
        codes = outputs[top].frames[0].codes[:, 0]  # level 0 of the first chunk
        accuracy = hinge = None
        if discriminator is not None:
            real_logits, _ = discriminator(audio)
            fake_logits, _ = discriminator(outputs[top].audio)
            accuracy = float(logit_metrics(real_logits, fake_logits)["accuracy"])
            hinge = float(discriminator_hinge_loss(real_logits, fake_logits))
        return HealthReport(
            step=step,
            level0_perplexity=float(code_perplexity(codes, generator.quantizer.codebook_size)),
            encoder_temporal_variation=float(temporal_variation(latent)),
            own_other_ratio=float(input_specificity(distances[top])),
            distance_per_bandwidth={b: float(d.diagonal().mean()) for b, d in distances.items()},
            discriminator_accuracy=accuracy,
            discriminator_loss=hinge,
        )
