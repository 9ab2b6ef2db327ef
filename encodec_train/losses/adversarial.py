"""Adversarial losses (EnCodec, Sec. 3.4): hinge losses and relative feature matching.

`AdversarialLoss` owns the discriminator and its update, so a training step only asks "train
the adversary on (fake, real) with this optimizer" and "give me the generator's losses"
(as audiocraft's `AdversarialLoss.train_adv`). The caller supplies the backward (Lightning's
`manual_backward`, which handles precision and DDP) and the optimizer to step.
"""

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize

GeneratorLoss = Literal["hinge", "negative_mean"]
FeatureMatching = Literal["relative", "l1"]
GENERATOR_LOSSES: tuple[GeneratorLoss, ...] = ("hinge", "negative_mean")
FEATURE_MATCHINGS: tuple[FeatureMatching, ...] = ("relative", "l1")


def _check_choice(what: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(choices)}")


def discriminator_hinge_loss(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]
) -> Tensor:
    """Hinge loss of the discriminator, averaged over scales (EnCodec, Eq. 3).

    Args:
        real_logits: one logit tensor per scale for real audio.
        fake_logits: one logit tensor per scale for decoded audio.
    Returns:
        scalar, mean over scales k of `mean(relu(1 - D_k(x))) + mean(relu(1 + D_k(x̂)))`.
    """
    per_scale = [
        F.relu(1 - real).mean() + F.relu(1 + fake).mean()
        for real, fake in zip(real_logits, fake_logits, strict=True)
    ]
    return torch.stack(per_scale).mean()


def logit_metrics(
    real_logits: Sequence[Tensor], fake_logits: Sequence[Tensor]
) -> dict[str, Tensor]:
    """What shows whether the discriminator learns: its mean logit on real and on decoded
    audio, and its accuracy (real > 0, decoded < 0), each averaged over scales; detached.

    At initialisation both means are ≈ 0 and the accuracy ≈ 0.5.
    """
    real_mean = torch.stack([real.detach().float().mean() for real in real_logits]).mean()
    fake_mean = torch.stack([fake.detach().float().mean() for fake in fake_logits]).mean()
    accuracy = torch.stack(
        [
            0.5 * ((real.detach() > 0).float().mean() + (fake.detach() < 0).float().mean())
            for real, fake in zip(real_logits, fake_logits, strict=True)
        ]
    ).mean()
    return {"real_logit": real_mean, "fake_logit": fake_mean, "accuracy": accuracy}


def generator_adversarial_loss(
    fake_logits: Sequence[Tensor], kind: GeneratorLoss = "hinge"
) -> Tensor:
    """Adversarial loss of the generator, averaged over scales.

    Args:
        fake_logits: one logit tensor per scale for decoded audio.
        kind: "hinge", the paper's ℓg = mean(relu(1 - D_k(x̂))) (EnCodec, Eq. 2), or
            "negative_mean", audiocraft's -mean(D_k(x̂)).
    Returns:
        scalar loss.
    """
    _check_choice("generator loss", kind, GENERATOR_LOSSES)
    if kind == "hinge":
        per_scale = [F.relu(1 - fake).mean() for fake in fake_logits]
    else:
        per_scale = [-fake.mean() for fake in fake_logits]
    return torch.stack(per_scale).mean()


def feature_matching_loss(
    fake_maps: Sequence[Sequence[Tensor]],
    real_maps: Sequence[Sequence[Tensor]],
    kind: FeatureMatching = "relative",
) -> Tensor:
    """Feature matching loss, averaged over layers and scales.

    Args:
        fake_maps: per scale, the discriminator's feature maps for decoded audio.
        real_maps: the same for real audio (no gradient needed).
        kind: "relative", the paper's ℓfeat (EnCodec, Eq. 2): the L1 distance of each layer
            divided by the mean absolute value of the real feature map; or "l1", the plain
            mean L1 distance (audiocraft).
    Returns:
        scalar, mean over scales k of the mean over layers l of `mean|D_k^l(x) - D_k^l(x̂)|`
        (divided by `mean|D_k^l(x)|` when relative).
    """
    _check_choice("feature matching", kind, FEATURE_MATCHINGS)
    per_scale = []
    for fake_scale, real_scale in zip(fake_maps, real_maps, strict=True):
        per_layer = []
        for fake, real in zip(fake_scale, real_scale, strict=True):
            distance = F.l1_loss(fake, real)
            per_layer.append(distance / real.abs().mean() if kind == "relative" else distance)
        per_scale.append(torch.stack(per_layer).mean())
    return torch.stack(per_scale).mean()


@contextmanager
def _frozen(module: nn.Module) -> Iterator[None]:
    """Turn off `requires_grad` of the module's parameters for the duration.

    The generator's losses then backpropagate through the discriminator to the audio without
    building gradients for (or touching the `.grad` of) the discriminator's parameters.
    """
    previous = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in previous:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, requires_grad in previous:
            p.requires_grad_(requires_grad)


DiscriminatorInput = Tensor | list[Tensor]
"""What a discriminator judges: audio `[batch, channels, time]`, or the per-scale
`spectrograms` of a discriminator that has them (`MultiScaleSTFTDiscriminator`)."""


def _detach(x: DiscriminatorInput) -> DiscriminatorInput:
    return [z.detach() for z in x] if isinstance(x, list) else x.detach()


def _concatenate(a: DiscriminatorInput, b: DiscriminatorInput) -> DiscriminatorInput:
    """`a` then `b` along the batch (per scale for spectrograms)."""
    if isinstance(a, list):
        return [torch.cat(pair) for pair in zip(a, b, strict=True)]
    return torch.cat([a, b])


class AdversarialLoss(nn.Module):
    """The adversarial part of EnCodec's objective, owning its discriminator(s).

    With `copies` > 1 it holds one discriminator per bandwidth (paper §3.4: "a dedicated
    discriminator per bandwidth"), all starting from the given one's weights; each call names
    the bandwidth's index, and only that discriminator is evaluated and trained. Their
    weights are `discriminator.<index>.*` in the state dict (a single one: `discriminator.*`).

    Args:
        discriminator: maps audio `[batch, channels, time]` to `(logits, feature_maps)` per
            scale, e.g. `MultiScaleSTFTDiscriminator`.
        generator_loss: "hinge" (paper) or "negative_mean" (audiocraft).
        feature_matching: "relative" (paper) or "l1" (audiocraft).
        copies: discriminators to hold (one per bandwidth), or 1.
        fused_batches: the discriminator's update judges decoded and real audio as one batch
            (one pass instead of two; the same maths, docs/speed.md).
    """

    def __init__(
        self,
        discriminator: nn.Module,
        generator_loss: GeneratorLoss = "hinge",
        feature_matching: FeatureMatching = "relative",
        copies: int = 1,
        fused_batches: bool = False,
    ) -> None:
        super().__init__()
        # Checked here too, so a typo in the config fails at start-up, not at the first step.
        _check_choice("generator loss", generator_loss, GENERATOR_LOSSES)
        _check_choice("feature matching", feature_matching, FEATURE_MATCHINGS)
        if copies < 1:
            raise ValueError(f"copies={copies}: at least one discriminator")
        self.discriminator = (
            discriminator
            if copies == 1
            else nn.ModuleList(
                [discriminator, *(copy.deepcopy(discriminator) for _ in range(copies - 1))]
            )
        )
        self.generator_loss = generator_loss
        self.feature_matching = feature_matching
        self.fused_batches = fused_batches
        self.metrics: dict[str, Tensor] = {}

    @property
    def copies(self) -> int:
        return len(self.discriminator) if isinstance(self.discriminator, nn.ModuleList) else 1

    def judge(self, index: int = 0) -> nn.Module:
        """The discriminator of bandwidth `index` (the only one when there is one)."""
        return self.discriminator[index] if self.copies > 1 else self.discriminator

    def spectrograms(self, x: Tensor) -> DiscriminatorInput:
        """The discriminators' per-scale input spectrograms of audio `x` (the STFT has no
        weights, so every copy shares them), or `x` itself for a discriminator without a
        `spectrograms` method. Computed once per signal and step, they serve both the
        update and the generator's losses."""
        judge = self.judge(0)
        return judge.spectrograms(x) if hasattr(judge, "spectrograms") else x

    def _evaluate(self, x: DiscriminatorInput, index: int) -> tuple[list, list]:
        judge = self.judge(index)
        return judge.judge(x) if isinstance(x, list) else judge(x)

    def discriminator_loss(
        self, fake: DiscriminatorInput, real: DiscriminatorInput, index: int = 0
    ) -> Tensor:
        """Hinge loss to train the discriminator; `fake` is detached here.

        Args:
            fake: decoded audio `[batch, channels, time]` (or its `spectrograms`).
            real: original audio `[batch, channels, time]` (or its `spectrograms`).
        Returns:
            scalar loss; its gradient reaches only the discriminator. `metrics` then holds
            the mean real and fake logits and the accuracy (device tensors, no sync).
        """
        fake_logits, _, real_logits, _ = self._judge_pair(_detach(fake), real, index)
        self.metrics = logit_metrics(real_logits, fake_logits)
        return discriminator_hinge_loss(real_logits, fake_logits)

    def _judge_pair(
        self, fake: DiscriminatorInput, real: DiscriminatorInput, index: int
    ) -> tuple[list, list, list, list]:
        """Logits and feature maps of `fake` and of `real`: one batch with `fused_batches`,
        else one pass each."""
        # Weight norm recomputed per pass: caching it would sum the passes' weight gradients
        # before its backward instead of after, which rounds differently.
        if not self.fused_batches:
            return (*self._evaluate(fake, index), *self._evaluate(real, index))
        logits, maps = self._evaluate(_concatenate(fake, real), index)
        logits = [scale.chunk(2) for scale in logits]
        maps = [[layer.chunk(2) for layer in scale] for scale in maps]
        return (
            [fake_half for fake_half, _ in logits],
            [[fake_half for fake_half, _ in scale] for scale in maps],
            [real_half for _, real_half in logits],
            [[real_half for _, real_half in scale] for scale in maps],
        )

    def losses_before_update(
        self, fake: DiscriminatorInput, real: DiscriminatorInput, index: int = 0
    ) -> tuple[Tensor, Tensor, Tensor]:
        """The discriminator's loss and the generator's adversarial and feature-matching
        losses from ONE evaluation of (fake, real): the generator is judged by the
        discriminator before this step's update (speed switch `judge_before_update`; the
        paper's order judges it after, with a second evaluation).

        Args:
            fake: a stand-in for the decoded audio (or its `spectrograms`) that does not
                lead back to the generator (e.g. `audio.detach().requires_grad_()`), so the
                discriminator loss's backward reaches the discriminator alone, while the
                generator's losses have gradients w.r.t. the stand-in.
            real: original audio (or its `spectrograms`).
        Returns:
            `(discriminator_loss, adversarial, feature_matching)`; `metrics` holds the logit
            statistics. Every backward through them must run before the discriminator's
            optimizer steps (the graph holds its weights).
        """
        fake_logits, fake_maps, real_logits, real_maps = self._judge_pair(fake, real, index)
        self.metrics = logit_metrics(real_logits, fake_logits)
        real_maps = [[layer.detach() for layer in scale] for scale in real_maps]
        return (
            discriminator_hinge_loss(real_logits, fake_logits),
            generator_adversarial_loss(fake_logits, self.generator_loss),
            feature_matching_loss(fake_maps, real_maps, self.feature_matching),
        )

    def train_adversary(
        self,
        fake: DiscriminatorInput,
        real: DiscriminatorInput,
        optimizer: torch.optim.Optimizer,
        backward: Callable[[Tensor], None],
        index: int = 0,
    ) -> Tensor:
        """One update of the discriminator on (fake, real); `fake` is detached here.

        Args:
            fake: decoded audio `[batch, channels, time]` (or its `spectrograms`).
            real: original audio `[batch, channels, time]` (or its `spectrograms`).
            optimizer: the discriminator's optimizer (a LightningOptimizer in training).
            backward: runs the backward pass of a loss (and any gradient clipping).
        Returns:
            the hinge loss (detached); `metrics` holds its logit statistics.
        """
        loss = self.discriminator_loss(fake, real, index)
        optimizer.zero_grad(set_to_none=True)
        backward(loss)
        optimizer.step()
        return loss.detach()

    def generator_losses(
        self, fake: DiscriminatorInput, real: DiscriminatorInput, index: int = 0
    ) -> tuple[Tensor, Tensor]:
        """Adversarial and feature matching losses of the generator.

        Args:
            fake: decoded audio `[batch, channels, time]` (or its `spectrograms`), attached to
                the generator's graph.
            real: original audio `[batch, channels, time]` (or its `spectrograms`).
        Returns:
            `(adversarial, feature_matching)` scalars; their gradients reach `fake` but not the
            discriminator's parameters.
        """
        # Two passes: only the decoded audio's needs a graph. The weights (no gradient here)
        # are computed once for both.
        with _frozen(self.judge(index)), parametrize.cached():
            fake_logits, fake_maps = self._evaluate(fake, index)
            with torch.no_grad():
                _, real_maps = self._evaluate(real, index)
        return (
            generator_adversarial_loss(fake_logits, self.generator_loss),
            feature_matching_loss(fake_maps, real_maps, self.feature_matching),
        )
