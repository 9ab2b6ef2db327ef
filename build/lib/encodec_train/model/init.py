"""Weight initialisations of the codec's convolutions and LSTMs.

PyTorch's default initialisation (the official EnCodec's) draws each filter with norm about
1/√3 and a random bias: the signal shrinks ~0.58× per convolution while every bias adds a
constant, so at initialisation the encoder's output is almost entirely bias — a latent that
does not depend on the input (measured in docs/training.md, "Training health").
`unit_norm_` starts every filter at unit norm and every bias at zero instead, so the signal
keeps its scale through the network and the latent is a function of the input from step 0.
The same holds for the discriminator's 2-D convolutions: its logits start away from 0.
Initialisation only: parameter names and shapes, hence checkpoints, do not change.
"""

from __future__ import annotations

import torch
from torch import nn

INITS = ("pytorch", "unit_norm")


@torch.no_grad()
def unit_norm_(model: nn.Module) -> None:
    """Unit-norm filters (per slice of the weight's first axis, as weight norm does) and zero
    biases for every conv of `model`; zero biases for its LSTMs. Works with and without
    weight-norm parametrizations."""
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d, nn.Conv2d)):
            if module.bias is not None:
                module.bias.zero_()
            parametrizations = getattr(module, "parametrizations", None)
            if parametrizations is not None and hasattr(parametrizations, "weight"):
                # Weight norm: weight = g · v / ‖v‖, so g = 1 gives unit-norm filters.
                parametrizations.weight.original0.fill_(1.0)
            else:
                # Normed over all but the first axis, as weight norm does (`dim=0`).
                weight = module.weight
                dims = tuple(range(1, weight.dim()))
                weight.div_(
                    torch.linalg.vector_norm(weight, dim=dims, keepdim=True).clamp(min=1e-12)
                )
        elif isinstance(module, nn.LSTM):
            for name, parameter in module.named_parameters():
                if name.startswith("bias"):
                    parameter.zero_()


def initialize_(model: nn.Module, init: str) -> None:
    """Apply the named initialisation ("pytorch" keeps the default one)."""
    if init not in INITS:
        raise ValueError(f"init={init!r}: choose one of {INITS}")
    if init == "unit_norm":
        unit_norm_(model)
