"""A fast inference copy of a model: weight norm folded into plain weights, a faster ELU,
parameters frozen, eval mode, optionally compiled.

The copy is a separate model built from the original's config and weights, so the original
keeps training, saving checkpoints and loading official weights as before. (A `deepcopy`
would not do: parametrized modules of a deep copy share their generated class with the
original's, and removing the copy's weight norm would break the original.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.nn.utils import parametrize

if TYPE_CHECKING:
    from encodec_train.model.encodec import EncodecModel


class InferenceELU(nn.ELU):
    """ELU from n = alpha·(exp(min(x, 0)) − 1): the same function (to float rounding, ~6e-8
    here) in about a third of `F.elu`'s time on CPU (whose `expm1` is not vectorised), where
    ELU is ~40% of a pass. For alpha ≤ 1 it is max(x, n) (n = 0 for x > 0, n ≥ x for x ≤ 0),
    one pass less than relu(x) + n. In-place on its own temporaries, so inference only."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        negative = x.clamp(max=0).exp_().sub_(1)
        if self.alpha != 1.0:
            negative.mul_(self.alpha)
        if self.alpha <= 1.0:
            return torch.maximum(x, negative)
        return negative.add_(x.clamp(min=0))


def _replace_elu(module: nn.Module) -> None:
    for name, child in module.named_children():
        if type(child) is nn.ELU:
            setattr(module, name, InferenceELU(child.alpha))
        else:
            _replace_elu(child)


def fold_weight_norm_(module: nn.Module) -> nn.Module:
    """Replace every weight-norm parametrization in `module` by the plain weight g·v/‖v‖."""
    for child in module.modules():
        if parametrize.is_parametrized(child, "weight"):
            parametrize.remove_parametrizations(child, "weight", leave_parametrized=True)
    return module


def inference_copy(model: EncodecModel, compile: bool = False) -> EncodecModel:
    """A copy of `model` for inference only: folded weight norm, `InferenceELU`, frozen
    parameters, eval mode. Its codes and audio equal the original's in eval mode (audio to
    float rounding). With `compile`, the encoder's and decoder's forward passes go through
    `torch.compile`: the first call compiles for its length, a call with another length
    compiles once more for any length (torch's automatic dynamic shapes).

    Streaming works over the copy too (`copy.streaming()`), with its folded weights.
    """
    device = next(model.parameters()).device
    copy = type(model)(**model.config).to(device)
    copy.load_state_dict(model.state_dict())
    fold_weight_norm_(copy)
    _replace_elu(copy)
    copy.eval().requires_grad_(False)
    if compile:
        copy.encoder.compile()
        copy.decoder.compile()
    return copy
