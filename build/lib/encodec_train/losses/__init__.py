"""EnCodec's training losses: reconstruction, adversarial, and the balancer that weighs them."""

from encodec_train.losses.adversarial import (
    AdversarialLoss,
    discriminator_hinge_loss,
    feature_matching_loss,
    generator_adversarial_loss,
)
from encodec_train.losses.balancer import Balancer
from encodec_train.losses.reconstruction import MultiScaleMelLoss, time_l1

__all__ = [
    "AdversarialLoss",
    "Balancer",
    "MultiScaleMelLoss",
    "discriminator_hinge_loss",
    "feature_matching_loss",
    "generator_adversarial_loss",
    "time_l1",
]
