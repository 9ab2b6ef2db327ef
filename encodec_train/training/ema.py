"""Exponential moving average of a module's weights (used for validation and export)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    """Keeps `ema = decay · ema + (1 − decay) · weights` for every floating-point parameter of
    `module`, and copies its buffers (codebooks) as they are.

    The averaged copy is not a submodule of anything, so DDP and optimizers never see it.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(module).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        # One foreach kernel for all the weights, one for all the buffers.
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in module.parameters()]
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        torch._foreach_copy_(list(self.module.buffers()), list(module.buffers()))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)

    def to(self, device: torch.device) -> WeightEMA:
        self.module.to(device)
        return self
