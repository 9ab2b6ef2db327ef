"""Adversarial losses on hand-computed values."""

import pytest
import torch
from torch import Tensor, nn

from encodec_train.discriminator import MultiScaleSTFTDiscriminator
from encodec_train.losses.adversarial import (
    AdversarialLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)


def t(*values: float) -> Tensor:
    return torch.tensor(values)


def test_discriminator_hinge_hand_computed() -> None:
    # Scale 1: real relu(1 - [0.5, 2]) = [0.5, 0] -> 0.25; fake relu(1 + [-2, 0]) = [0, 1] -> 0.5.
    # Scale 2: real relu(1 - 3) = 0; fake relu(1 + 1) = 2. Mean over scales: (0.75 + 2) / 2.
    loss = discriminator_hinge_loss([t(0.5, 2.0), t(3.0)], [t(-2.0, 0.0), t(1.0)])
    assert loss.item() == pytest.approx(1.375)


def test_generator_losses_hand_computed() -> None:
    fake_logits = [t(-1.0, 0.5), t(2.0)]
    # relu(1 - [-1, 0.5]) = [2, 0.5] -> 1.25; relu(1 - 2) = 0. Mean over scales 0.625.
    assert generator_adversarial_loss(fake_logits, "hinge").item() == pytest.approx(0.625)
    # -mean: 0.25 and -2. Mean over scales -0.875.
    assert generator_adversarial_loss(fake_logits, "negative_mean").item() == pytest.approx(-0.875)


def test_feature_matching_hand_computed() -> None:
    real = [[t(1.0, -3.0), t(4.0)], [t(2.0, 2.0)]]
    fake = [[t(2.0, -1.0), t(0.0)], [t(1.0, 4.0)]]
    # L1 distances: scale 1 layers 1.5 and 4, scale 2 1.5; mean |real|: 2, 4, 2.
    relative = (((1.5 / 2) + (4 / 4)) / 2 + 1.5 / 2) / 2
    plain = ((1.5 + 4) / 2 + 1.5) / 2
    assert feature_matching_loss(fake, real, "relative").item() == pytest.approx(relative)
    assert feature_matching_loss(fake, real, "l1").item() == pytest.approx(plain)


class _ScaledIdentity(nn.Module):
    """Toy two-scale discriminator: logits a·x and 2a·x, feature maps [x, a·x] and [a·x]."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(2.0))

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        return [self.a * x, 2 * self.a * x], [[x, self.a * x], [self.a * x]]


def test_adversarial_loss_on_toy_discriminator() -> None:
    adversarial = AdversarialLoss(_ScaledIdentity())
    real = torch.tensor([1.0, -1.0])
    fake = torch.tensor([0.5, 0.25], requires_grad=True)

    # Discriminator, a = 2: real logits [2, -2] and [4, -4]; fake logits [1, 0.5] and [2, 1].
    # Scale 1: mean([0, 3]) + mean([2, 1.5]) = 3.25; scale 2: mean([0, 5]) + mean([3, 2]) = 5.
    d_loss = adversarial.discriminator_loss(fake, real)
    assert d_loss.item() == pytest.approx((3.25 + 5) / 2)
    d_loss.backward()
    assert fake.grad is None  # fake was detached
    assert adversarial.discriminator.a.grad is not None

    adversarial.discriminator.a.grad = None
    adv, feat = adversarial.generator_losses(fake, real)
    # Hinge: mean(relu(1 - [1, 0.5])) = 0.25, mean(relu(1 - [2, 1])) = 0 -> 0.125.
    assert adv.item() == pytest.approx(0.125)
    # Maps real [x, 2x] | [2x], fake the same of [0.5, 0.25]: |Δx| = [0.5, 1.25], mean 0.875,
    # mean |x| = 1; every layer's relative distance is 0.875 (the factor 2 cancels).
    assert feat.item() == pytest.approx(0.875)
    (adv + feat).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert adversarial.discriminator.a.grad is None  # the generator step leaves D untouched
    assert adversarial.discriminator.a.requires_grad  # and restores it afterwards


def test_adversarial_loss_with_ms_stft_discriminator() -> None:
    adversarial = AdversarialLoss(
        MultiScaleSTFTDiscriminator(in_channels=2, filters=4, n_ffts=(256, 128)),
        generator_loss="negative_mean",
        feature_matching="l1",
    )
    fake = torch.randn(2, 2, 512, requires_grad=True)
    real = torch.randn(2, 2, 512)
    losses = [adversarial.discriminator_loss(fake, real), *adversarial.generator_losses(fake, real)]
    assert all(loss.dim() == 0 and torch.isfinite(loss) for loss in losses)


def test_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown generator loss 'lsgan'"):
        AdversarialLoss(_ScaledIdentity(), generator_loss="lsgan")
    with pytest.raises(ValueError, match="unknown feature matching 'l2'"):
        AdversarialLoss(_ScaledIdentity(), feature_matching="l2")
