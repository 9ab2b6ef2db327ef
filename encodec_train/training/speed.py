"""Speed switches of the training step (docs/speed.md): each one off gives the plain step.

All but `compile` and `judge_before_update` leave the maths as it is;
`benchmarks/training_step.py` measures what each buys, `tests/training/test_speed_exactness.py`
checks that the losses and updates stay the same with each one on and off.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

COMPILE_BACKENDS = ("inductor", "aot_eager", "eager")


@dataclass(frozen=True)
class SpeedOptions:
    """How the training step computes, not what.

    Attributes:
        shared_spectrograms: the discriminator's input spectrograms of the decoded and the
            real audio are computed once per step and judged by the update and by the
            generator's losses (else each pass computes its own STFTs).
        fused_discriminator_batches: the discriminator's update judges decoded and real
            audio as one batch (one pass through each conv instead of two).
        batched_adversarial_gradients: the balancer takes the gradients of the adversarial
            and feature-matching losses w.r.t. the decoded audio in one batched backward pass
            through the discriminator (`is_grads_batched`) instead of one pass each.
        channels_last: the discriminator's 2-D convs run in the channels-last memory layout
            (NHWC), which oneDNN (CPU) and cuDNN (tensor cores) prefer.
        judge_before_update: on steps that update the discriminator, the generator's
            adversarial and feature-matching losses come from the update's own evaluation of
            (fake, real), i.e. from the discriminator before this step's update, instead of a
            second evaluation after it (the paper's order). One forward pass through the
            discriminator fewer per step; not the same algorithm (docs/speed.md).
        compile: `torch.compile` backend for the generator's encoder and decoder and the
            discriminator's conv stacks ("inductor", or "aot_eager"/"eager" to debug), or
            None. Compiled kernels may round differently from eager ones.
    """

    shared_spectrograms: bool
    fused_discriminator_batches: bool
    batched_adversarial_gradients: bool
    channels_last: bool
    judge_before_update: bool
    compile: str | None

    def __post_init__(self) -> None:
        if self.compile is not None and self.compile not in COMPILE_BACKENDS:
            raise ValueError(
                f"module.speed.compile={self.compile!r}: use null or one of {COMPILE_BACKENDS}"
            )


def compile_networks(generator: nn.Module, discriminators: list[nn.Module], backend: str) -> None:
    """Compile in place, parameter names unchanged (checkpoints stay the same): the
    generator's encoder and decoder (`nn.Module.compile`; its quantizer updates codebooks
    with data-dependent steps and stays eager), and the `judge` of each scale of each
    MS-STFT discriminator (its conv stack, also called from `forward`; the STFT stays eager)."""
    # The balancer's per-loss gradients retain the graph through the compiled networks, which
    # AOTAutograd's donated buffers forbid (its error names this switch).
    torch._functorch.config.donated_buffer = False
    generator.encoder.compile(backend=backend)
    generator.decoder.compile(backend=backend)
    for discriminator in discriminators:
        for scale in discriminator.discriminators:
            scale.judge = torch.compile(scale.judge, backend=backend)
