"""Loss balancer (EnCodec, Sec. 3.4, "Balancer").

Each balanced loss's gradient w.r.t. the decoder output is rescaled so that its share of a
reference norm matches its weight, whatever the loss's natural scale:

    g̃_i = R · λ_i / Σ_j λ_j · g_i / (ε + ⟨‖g_i‖⟩_β)

with R = `total_norm` and ⟨‖g_i‖⟩_β the bias-corrected exponential moving average of the
gradient norms (EnCodec, Eq. 5; audiocraft's `Balancer`).
"""

from collections.abc import Collection, Mapping

import torch
from torch import Tensor, nn

from encodec_train.model.distributed import all_reduce_mean_


class Balancer(nn.Module):
    """Balances losses by their gradients w.r.t. one tensor (the decoder output).

    `combine` returns a surrogate scalar whose gradient w.r.t. `output` is the balanced sum of
    the gradients, so the caller runs one backward (under DDP, Lightning's `manual_backward`)
    and may add unbalanced losses (the commitment loss) to it first.

    The EMA state is kept as buffers (`norm_sums`, `norm_count`), so it travels with the
    owning module's state dict and device. Per-step norms are averaged across ranks before
    they enter the EMA, so every rank holds the same state.

    After each `combine`, `metrics` holds device tensors (no sync): `ratio_<name>`, the loss's
    share of the summed averaged gradient norms before rescaling, and `grad_norm_<name>`, this
    step's gradient norm (averaged across ranks).

    Args:
        weights: λ_i per loss name; all positive (a loss only worth logging stays outside).
        ema_decay: β of the moving average of gradient norms (paper: 0.999).
        total_norm: R, the norm the balanced gradients add up to when they are aligned.
        per_item: norm each batch item's gradient separately and average over the batch,
            rather than one norm over the whole batch.
        epsilon: added to the averaged norms before dividing.
    """

    def __init__(
        self,
        weights: Mapping[str, float],
        ema_decay: float = 0.999,
        total_norm: float = 1.0,
        per_item: bool = True,
        epsilon: float = 1e-12,
    ) -> None:
        super().__init__()
        if not weights:
            raise ValueError("the balancer needs at least one weighted loss")
        not_positive = {name: w for name, w in weights.items() if not w > 0}
        if not_positive:
            raise ValueError(
                f"balancer weights must be positive, got {not_positive}; log a loss you do not "
                "want to train on outside the balancer"
            )
        if not 0 <= ema_decay <= 1:
            raise ValueError(f"ema_decay must be in [0, 1], got {ema_decay}")
        # Sorted, so the buffers' layout does not depend on the config's key order.
        self.names = sorted(weights)
        self.ema_decay = ema_decay
        self.total_norm = total_norm
        self.per_item = per_item
        self.epsilon = epsilon
        weight_values = torch.tensor([float(weights[name]) for name in self.names])
        self.register_buffer("shares", weight_values / weight_values.sum(), persistent=False)
        # Decayed sum of norms and decayed count per loss: their ratio is the bias-corrected
        # EMA. Per loss, because a loss can join later (after a warm-up without it).
        self.register_buffer("norm_sums", torch.zeros(len(self.names)))
        self.register_buffer("norm_count", torch.zeros(len(self.names)))
        self.metrics: dict[str, Tensor] = {}
        self._masks: dict[tuple[bool, ...], Tensor] = {}

    def _gradient_norm(self, grad: Tensor) -> Tensor:
        # In the state's precision (fp32), also when the output is bf16 under autocast.
        dtype = self.norm_sums.dtype
        if self.per_item:
            dims = tuple(range(1, grad.dim()))
            return torch.linalg.vector_norm(grad, dim=dims, dtype=dtype).mean()
        return torch.linalg.vector_norm(grad, dtype=dtype)

    def combine(
        self,
        losses: Mapping[str, Tensor],
        output: Tensor,
        together: Collection[str] = (),
        stand_ins: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """Balanced surrogate loss; updates the EMA of gradient norms and `metrics`.

        Only gradients w.r.t. `output` are computed here (no parameter's `.grad` changes),
        and the losses' graphs above `output` are freed by the last of them: the caller's
        backward from the surrogate only runs the graph below `output`.

        Args:
            losses: scalar losses named in `weights`, each a function of `output`. A subset
                is balanced among itself (shares renormalised; the others' EMA untouched),
                e.g. the reconstruction losses while the adversary warms up.
            output: the tensor to balance at, e.g. decoded audio `[batch, channels, time]`.
            together: names of present losses whose gradients come from one batched backward
                pass (`is_grads_batched`), e.g. two losses of the same discriminator pass;
                the others get one `autograd.grad` each. The gradients are the same.
            stand_ins: for some losses, the tensor they were computed from instead of
                `output`: a leaf holding `output`'s values (`output.detach().requires_grad_()`),
                whose gradient is theirs w.r.t. `output`.
        Returns:
            scalar `(output * combined_grad).sum()`, with `combined_grad` detached, so its
            gradient w.r.t. `output` is `combined_grad`.
        """
        unexpected = sorted(set(losses) - set(self.names))
        if unexpected or not losses:
            raise ValueError(
                f"the balancer weighs {self.names}, got losses {sorted(losses)}: "
                f"unexpected {unexpected}"
            )
        grads = output_gradients(losses, output, together, stand_ins)
        zero = self.norm_sums.new_zeros(())
        # Stacked, not scattered by a mask: no host-device sync.
        norms = torch.stack(
            [self._gradient_norm(grads[name]) if name in grads else zero for name in self.names]
        )
        all_reduce_mean_(norms)
        present = self._present_mask(tuple(name in losses for name in self.names))
        decay = 1 - present * (1 - self.ema_decay)  # absent losses keep their state
        self.norm_sums.mul_(decay).add_(norms)
        self.norm_count.mul_(decay).add_(present)
        averaged_norms = self.norm_sums / self.norm_count.clamp(min=1e-12)
        shares = self.shares * present
        scales = self.total_norm * (shares / shares.sum()) / (self.epsilon + averaged_norms)
        ratios = averaged_norms * present / (averaged_norms * present).sum()
        combined = torch.zeros_like(output)
        self.metrics = {}
        for index, name in enumerate(self.names):
            if name in grads:
                combined += scales[index] * grads[name]
                self.metrics[f"ratio_{name}"] = ratios[index]
                self.metrics[f"grad_norm_{name}"] = norms[index]
        return (output * combined.detach()).sum()

    def _present_mask(self, present: tuple[bool, ...]) -> Tensor:
        """1.0 for the losses present, on the state's device; made once per pattern, so the
        step copies nothing from the host."""
        if present not in self._masks:
            self._masks[present] = torch.tensor(present, dtype=self.norm_sums.dtype).to(
                self.norm_sums.device
            )
        mask = self._masks[present]
        if mask.device != self.norm_sums.device:  # the module moved
            mask = self._masks[present] = mask.to(self.norm_sums.device)
        return mask


def output_gradients(
    losses: Mapping[str, Tensor],
    output: Tensor,
    together: Collection[str] = (),
    stand_ins: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Gradient of each loss w.r.t. `output` (or w.r.t. its stand-in in `stand_ins`, a leaf
    with `output`'s values); the losses named in `together` (when at least two are present,
    with one stand-in) in one batched backward pass, the others one pass each. Graphs above
    each tensor are retained until the last pass to it, which frees them."""
    stand_ins = stand_ins or {}
    batched = [name for name in losses if name in together]
    if len(batched) < 2 or len({id(stand_ins.get(name, output)) for name in batched}) > 1:
        batched = []
    passes = [[name] for name in losses if name not in batched] + ([batched] if batched else [])
    targets = [stand_ins.get(names[0], output) for names in passes]
    grads: dict[str, Tensor] = {}
    for count, (names, target) in enumerate(zip(passes, targets, strict=True), start=1):
        retain = any(later is target for later in targets[count:])
        if len(names) == 1:
            (grads[names[0]],) = torch.autograd.grad(
                losses[names[0]], [target], retain_graph=retain
            )
            continue
        stacked = torch.stack([losses[name] for name in names])
        basis = torch.eye(len(names), dtype=stacked.dtype, device=stacked.device)
        (rows,) = torch.autograd.grad(
            stacked, [target], basis, retain_graph=retain, is_grads_batched=True
        )
        grads.update(zip(names, rows, strict=True))
    return grads
