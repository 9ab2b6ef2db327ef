"""Residual vector quantizer (paper §3.2): a stack of EMA codebooks, each quantising the
residual the previous ones left, with a straight-through estimator and a commitment loss.

Module names (`vq.layers.<n>._codebook`) match the official checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from encodec_train.model.bandwidth import bits_per_code
from encodec_train.model.codebook import EuclideanCodebook, update_codebooks


def perplexity(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a histogram of code counts: the number of equally used codes it
    amounts to (1: one code; the codebook size: all used equally)."""
    probs = counts / counts.sum()
    return torch.exp(-(probs * torch.log(probs.clamp(min=1e-12))).sum())


@dataclass
class QuantizerOutput:
    """What one training/eval pass of the quantizer returns.

    Attributes:
        quantized: straight-through quantized latent, [batch, dim, frames].
        codes: [n_q, batch, frames].
        commitment_loss: scalar, ‖z_c − q_c(z_c)‖² combined over levels (0 in eval mode).
        metrics: per level, on the device: `codebook_usage/<level>` (fraction of the codes this
            batch used), `codebook_perplexity/<level>` (exp of the entropy of the code counts)
            and `codebook_replaced/<level>` (dead codes replaced by this step's update).
    """

    quantized: torch.Tensor
    codes: torch.Tensor
    commitment_loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


class VectorQuantization(nn.Module):
    """One quantisation level: a codebook plus the straight-through estimator."""

    def __init__(self, dim: int, codebook_size: int, **codebook_kwargs) -> None:
        super().__init__()
        self._codebook = EuclideanCodebook(dim, codebook_size, **codebook_kwargs)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, dim, frames] → [batch, frames]"""
        return self._codebook.encode(x.transpose(1, 2))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """[batch, frames] → [batch, dim, frames]"""
        return self._codebook.decode(codes).transpose(1, 2)


class ResidualVQLayers(nn.Module):
    """The stack of quantisation levels, applied to successive residuals."""

    def __init__(
        self, num_quantizers: int, dim: int, codebook_size: int, **codebook_kwargs
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            VectorQuantization(dim, codebook_size, **codebook_kwargs) for _ in range(num_quantizers)
        )


COMMITMENT_GRADIENTS = ("first_level", "every_level")


class ResidualVectorQuantizer(nn.Module):
    """Residual VQ whose number of active levels follows a target bandwidth.

    Args:
        dimension: latent size D.
        n_q: levels at the highest bandwidth.
        codebook_size: codes per level (1024 = 10 bits).
        decay, epsilon, kmeans_init, kmeans_iters, dead_code_threshold: see `EuclideanCodebook`.
        commitment_weight: weight of the commitment loss (1 in the paper).
        commitment_reduction: "sum" over levels (paper eq. for ℓw) or "mean" over levels
            (the official code).
        commitment_gradient: which of the commitment terms reach the encoder.
            "first_level" (the official code and audiocraft): each level quantises the
            residual the straight-through estimator leaves, which carries no gradient, so
            only level 1's term ‖z − q_1(z)‖² moves the encoder. "every_level": every
            level's residual keeps its path to the encoder, so all terms of the paper's sum
            do; the decoder's gradient still reaches the encoder once, through one
            straight-through estimator over the whole quantised latent.
    """

    def __init__(
        self,
        dimension: int = 128,
        n_q: int = 32,
        codebook_size: int = 1024,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        dead_code_threshold: float = 2.0,
        commitment_weight: float = 1.0,
        commitment_reduction: str = "sum",
        commitment_gradient: str = "first_level",
    ) -> None:
        super().__init__()
        if commitment_reduction not in ("sum", "mean"):
            raise ValueError(f"commitment_reduction={commitment_reduction!r}: use 'sum' or 'mean'")
        if commitment_gradient not in COMMITMENT_GRADIENTS:
            raise ValueError(
                f"commitment_gradient={commitment_gradient!r}: use one of {COMMITMENT_GRADIENTS}"
            )
        self.commitment_gradient = commitment_gradient
        bits_per_code(codebook_size)  # refuses a size that is not a power of 2
        self.n_q = n_q
        self.dimension = dimension
        self.codebook_size = codebook_size
        self.commitment_weight = commitment_weight
        self.commitment_reduction = commitment_reduction
        self.vq = ResidualVQLayers(
            n_q,
            dimension,
            codebook_size,
            decay=decay,
            epsilon=epsilon,
            kmeans_init=kmeans_init,
            kmeans_iters=kmeans_iters,
            dead_code_threshold=dead_code_threshold,
        )

    def encode(self, x: torch.Tensor, n_q: int) -> torch.Tensor:
        """Latent [batch, dim, frames] → codes [n_q, batch, frames] (no state change).

        fp32 even under autocast, as `forward`: distances in bf16 pick other codes.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            residual = x.float()
            codes = []
            for layer in self.vq.layers[:n_q]:
                level_codes = layer.encode(residual)
                residual = residual - layer.decode(level_codes)
                codes.append(level_codes)
            return torch.stack(codes)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [n_q, batch, frames] → latent [batch, dim, frames]."""
        out = self.vq.layers[0].decode(codes[0])
        for layer, level_codes in zip(self.vq.layers[1:], codes[1:], strict=False):
            out = out + layer.decode(level_codes)
        return out

    def forward(
        self, x: torch.Tensor, n_q: int, generator: torch.Generator | None = None
    ) -> QuantizerOutput:
        """Quantise [batch, dim, frames] with `n_q` levels; in training mode also update the
        codebooks (k-means on the first batch, then EMA, then dead-code replacement) and
        compute the commitment loss.

        The codebooks' random draws come from `generator` (a CPU generator; None: torch's
        default), one draw per k-means initialisation or replacement on every rank, so a
        generator seeded alike on all ranks stays alike (see `EuclideanCodebook`).

        Runs in fp32 even under autocast: the EMA statistics and distances need the precision.
        """
        with torch.autocast(device_type=x.device.type, enabled=False):
            return self._quantize(x.float(), n_q, generator)

    def _quantize(
        self, x: torch.Tensor, n_q: int, generator: torch.Generator | None
    ) -> QuantizerOutput:
        batch, dim, frames = x.shape
        residual = x
        quantized_out = torch.zeros_like(x)
        codes, losses, updates = [], [], []
        codebooks = [layer._codebook for layer in self.vq.layers[:n_q]]
        # A level's update changes only its own codebook, after it has quantised: once all
        # are initialised, the updates wait for the last level and share one all-reduce.
        # A step that runs k-means keeps the level-by-level order of the random draws.
        deferred = self.training and all(codebook.is_initialized() for codebook in codebooks)
        pending: list[tuple[torch.Tensor, torch.Tensor]] = []
        for codebook in codebooks:
            flat = residual.detach().transpose(1, 2).reshape(-1, dim)
            if self.training and not deferred and not codebook.is_initialized():
                codebook.initialize(flat, generator)
            level_codes = codebook.encode(flat)
            quantized = codebook.decode(level_codes).view(batch, frames, dim).transpose(1, 2)
            if deferred:
                pending.append((flat, level_codes))
            elif self.training:
                updates.append(codebook.update(flat, level_codes, generator))
            if self.training:
                losses.append(F.mse_loss(residual, quantized.detach()))
                if self.commitment_gradient == "first_level":
                    # Straight-through estimator: the decoder's gradient reaches the encoder
                    # as is, and the next residual carries none.
                    quantized = residual + (quantized - residual).detach()
                else:
                    quantized = quantized.detach()  # the residual keeps its gradient path
            residual = residual - quantized
            quantized_out = quantized_out + quantized
            codes.append(level_codes.view(batch, frames))
        if pending:
            samples, pending_codes = zip(*pending, strict=True)
            updates = update_codebooks(codebooks, samples, pending_codes, generator)
        metrics = {}
        for level, (counts, replaced) in enumerate(updates):
            metrics[f"codebook_usage/{level}"] = (counts > 0).float().mean()
            metrics[f"codebook_perplexity/{level}"] = perplexity(counts)
            metrics[f"codebook_replaced/{level}"] = replaced
        if self.training and self.commitment_gradient == "every_level":
            # One straight-through estimator for the whole latent.
            quantized_out = x + (quantized_out - x).detach()
        if losses:
            stacked = torch.stack(losses)
            reduced = stacked.sum() if self.commitment_reduction == "sum" else stacked.mean()
            commitment = self.commitment_weight * reduced
        else:
            commitment = x.new_zeros(())
        return QuantizerOutput(quantized_out, torch.stack(codes), commitment, metrics)
