"""The EnCodec GAN as a LightningModule (paper §3.4): one step trains the discriminator
(with some probability) on (fake, real), then the generator on the balanced sum of its losses.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from torch import nn

from encodec_train.data.datamodule import AudioDataModule
from encodec_train.evaluation.metrics import si_snr_mean
from encodec_train.losses import AdversarialLoss, Balancer, MultiScaleMelLoss, time_l1
from encodec_train.losses.adversarial import DiscriminatorInput
from encodec_train.model import EncodecModel
from encodec_train.model.distributed import all_gather_uneven
from encodec_train.training.ema import WeightEMA
from encodec_train.training.phases import StepPhases
from encodec_train.training.run_module import TrainingRunModule
from encodec_train.training.speed import SpeedOptions, compile_networks

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]
BANDWIDTH_SAMPLING = ("target_bandwidths", "codebooks")
# Both come from one pass through the discriminator: their gradients can share a backward.
ADVERSARIAL_LOSSES = ("adversarial", "feature_matching")


@dataclass(frozen=True)
class StepPlan:
    """What one training step does, drawn before it starts.

    Attributes:
        n_q: codebooks used (from the drawn bandwidth, or drawn directly).
        update_discriminator: whether the discriminator trains this step.
        bandwidth_index: the drawn bandwidth's index in `target_bandwidths` (0 when the
            number of codebooks is drawn directly): which discriminator judges this step
            when there is one per bandwidth.
    """

    n_q: int
    update_discriminator: bool
    bandwidth_index: int = 0


class CodecGANModule(TrainingRunModule):
    """Trains an `EncodecModel` against a discriminator.

    Args:
        generator: the codec.
        discriminator: maps audio to (logits, feature maps) per scale.
        balancer: weighs the time, mel, adversarial and feature-matching losses.
        mel_loss: the multi-scale mel loss.
        generator_optimizer, discriminator_optimizer: factories `params -> Optimizer`
            (Hydra `_partial_: true`).
        generator_loss: "hinge" (paper) or "negative_mean" (audiocraft).
        feature_matching: "relative" (paper) or "l1" (audiocraft).
        discriminator_update_prob: chance that a step also trains the discriminator.
        bandwidth_sampling: "target_bandwidths" (paper: one of the model's bandwidths, uniform)
            or "codebooks" (audiocraft: a number of codebooks uniform in 1..n_q).
        seed: seeds the bandwidth and discriminator draws, identical on every rank.
        generator_grad_clip, discriminator_grad_clip: max gradient norm (None: no clipping).
        ema_decay: keep an EMA of the generator weights for validation and export (None: off).
        discriminator_per_bandwidth: one discriminator per target bandwidth, all starting
            from `discriminator`'s weights; each step evaluates and trains only the drawn
            bandwidth's (paper §3.4). Needs `bandwidth_sampling="target_bandwidths"`.
        log_every_n_steps: how often the running means of the metrics are logged.
        adversary_start_step: generator updates made before the adversarial and feature
            matching losses join the generator's objective; until then the balancer weighs
            the time and mel losses alone, while the discriminator trains as usual, so that
            it is past chance when its gradients start to count (0: from the first step, as
            the paper).
        speed: how the step computes (`SpeedOptions`, docs/speed.md), never what.
        si_snr_silence_db: validation's SI-SNR leaves out, and counts, the reference channels
            whose RMS is below this (dBFS; `evaluation.metrics.si_snr_mean`).
    """

    def __init__(
        self,
        generator: EncodecModel,
        discriminator: nn.Module,
        balancer: Balancer,
        mel_loss: MultiScaleMelLoss,
        generator_optimizer: OptimizerFactory,
        discriminator_optimizer: OptimizerFactory,
        *,
        # No defaults: the values live in the config (`training:`, `loss:`, the recipes).
        generator_loss: str,
        feature_matching: str,
        discriminator_update_prob: float,
        bandwidth_sampling: str,
        seed: int,
        generator_grad_clip: float | None,
        discriminator_grad_clip: float | None,
        ema_decay: float | None,
        log_every_n_steps: int,
        adversary_start_step: int,
        discriminator_per_bandwidth: bool,
        speed: SpeedOptions | Mapping[str, Any],
        si_snr_silence_db: float,
    ) -> None:
        super().__init__(seed, log_every_n_steps)
        if not 0.0 <= discriminator_update_prob <= 1.0:
            raise ValueError(
                f"discriminator_update_prob={discriminator_update_prob} must lie in [0, 1]"
            )
        if bandwidth_sampling not in BANDWIDTH_SAMPLING:
            raise ValueError(
                f"bandwidth_sampling={bandwidth_sampling!r}: choose one of {BANDWIDTH_SAMPLING}"
            )
        self.automatic_optimization = False
        self.generator = generator
        if discriminator_per_bandwidth and bandwidth_sampling != "target_bandwidths":
            raise ValueError(
                "discriminator_per_bandwidth needs bandwidth_sampling='target_bandwidths' "
                f"(got {bandwidth_sampling!r}): a discriminator belongs to a bandwidth"
            )
        copies = len(generator.target_bandwidths) if discriminator_per_bandwidth else 1
        self.speed = speed if isinstance(speed, SpeedOptions) else SpeedOptions(**speed)
        self.adversarial = AdversarialLoss(
            discriminator,
            generator_loss,
            feature_matching,
            copies,
            fused_batches=self.speed.fused_discriminator_batches,
        )
        if self.speed.channels_last:
            self.adversarial.to(memory_format=torch.channels_last)
        if self.speed.compile is not None:
            judges = [self.adversarial.judge(index) for index in range(copies)]
            compile_networks(generator, judges, self.speed.compile)
        self.balancer = balancer
        self.mel_loss = mel_loss
        self.generator_optimizer = generator_optimizer
        self.discriminator_optimizer = discriminator_optimizer
        self.discriminator_update_prob = discriminator_update_prob
        self.bandwidth_sampling = bandwidth_sampling
        self.generator_grad_clip = generator_grad_clip
        self.discriminator_grad_clip = discriminator_grad_clip
        if adversary_start_step < 0:
            raise ValueError(f"adversary_start_step={adversary_start_step} must be ≥ 0")
        self.adversary_start_step = adversary_start_step
        self.ema = WeightEMA(generator, ema_decay) if ema_decay is not None else None
        self.si_snr_silence_db = si_snr_silence_db
        # This rank's per-channel validation SI-SNR in the current epoch, per bandwidth.
        self.validation_si_snr: dict[float, list[torch.Tensor]] = {}
        # Profiler ranges around the step's phases; benchmarks time them.
        self.phases = StepPhases()

    # -- optimisation ---------------------------------------------------------------------

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        return [
            self.generator_optimizer(self.generator.parameters()),
            self.discriminator_optimizer(self.adversarial.discriminator.parameters()),
        ]

    def draw_step_plan(self) -> StepPlan:
        """This step's number of codebooks and whether the discriminator trains, both from
        the module's seeded generator (so every rank draws the same)."""
        model = self.generator
        index = 0
        if self.bandwidth_sampling == "codebooks":
            n_q = int(torch.randint(1, model.quantizer.n_q + 1, (1,), generator=self.rng))
        else:
            index = int(torch.randint(len(model.target_bandwidths), (1,), generator=self.rng))
            n_q = model.num_codebooks(model.target_bandwidths[index])
        update_discriminator = (
            float(torch.rand((), generator=self.rng)) < self.discriminator_update_prob
        )
        return StepPlan(n_q, update_discriminator, index)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        real, mask = batch["audio"], batch["mask"]
        generator_opt, discriminator_opt = self.optimizers()
        plan = self.draw_step_plan()
        adversary_on = self.global_step >= self.adversary_start_step

        # k-means and dead-code replacement draw from the module's generator too.
        with self.phases("generator_forward"):
            output = self.generator(real, n_q=plan.n_q, generator=self.rng)
            # Padding past the end of short files is neither learnt nor judged.
            fake = output.audio * mask

        metrics: dict[str, torch.Tensor] = {}
        judged = None  # what the discriminator judges, computed once per step when needed
        # With `judge_before_update`: the generator's adversarial losses from the update's
        # own pass, and the stand-in for `fake` their gradients are taken at.
        early_losses: dict[str, torch.Tensor] = {}
        stand_ins: dict[str, torch.Tensor] = {}
        if plan.update_discriminator:
            with self.phases("discriminator_update"):
                # Through Lightning (precision, strategy, hooks), but `global_step` keeps
                # counting generator updates, one per batch: `max_steps` and checkpoints count
                # updates.
                uncounted_step(discriminator_opt)
                backward = partial(
                    self._backward,
                    optimizer=discriminator_opt,
                    max_norm=self.discriminator_grad_clip,
                )
                if self.speed.judge_before_update and adversary_on:
                    stand_in = fake.detach().requires_grad_()
                    stand_ins = dict.fromkeys(ADVERSARIAL_LOSSES, stand_in)
                    loss, *both = self.adversarial.losses_before_update(
                        *self._discriminator_inputs(stand_in, real), index=plan.bandwidth_index
                    )
                    early_losses = dict(zip(ADVERSARIAL_LOSSES, both, strict=True))
                    discriminator_opt.zero_grad(set_to_none=True)
                    # Gradients for the discriminator only (none for the stand-in); the
                    # balancer's passes below reuse the graph, so the step waits for them.
                    judge = self.adversarial.judge(plan.bandwidth_index)
                    backward(loss, retain_graph=True, inputs=list(judge.parameters()))
                    metrics["discriminator_loss"] = loss.detach()
                else:
                    judged = self._discriminator_inputs(fake, real)
                    metrics["discriminator_loss"] = self.adversarial.train_adversary(
                        *judged, discriminator_opt, backward=backward, index=plan.bandwidth_index
                    )
                self.train_metrics.add(self.adversarial.metrics, "discriminator/")
                self.train_metrics.add(
                    {"grad_norm": gradient_norm(self.adversarial.discriminator)}, "discriminator/"
                )

        with self.phases("generator_losses"):
            if adversary_on and not early_losses and judged is None:
                judged = self._discriminator_inputs(fake, real)
            losses = self.generator_objective(
                fake,
                real,
                adversarial=adversary_on and not early_losses,
                index=plan.bandwidth_index,
                judged=judged,
            )
            losses.update(early_losses)
        with self.phases("balancer"):
            together = ADVERSARIAL_LOSSES if self.speed.batched_adversarial_gradients else ()
            balanced = self.balancer.combine(losses, fake, together, stand_ins)
        if early_losses:
            with self.phases("discriminator_update"):
                discriminator_opt.step()
        with self.phases("generator_backward"):
            generator_opt.zero_grad(set_to_none=True)
            self._backward(
                balanced + output.commitment_loss, generator_opt, self.generator_grad_clip
            )
            metrics["grad_norm_encoder"] = gradient_norm(self.generator.encoder)
            metrics["grad_norm_decoder"] = gradient_norm(self.generator.decoder)
        with self.phases("generator_optimizer"):
            generator_opt.step()
            if self.ema is not None:
                self.ema.update(self.generator)

        metrics.update({f"loss_{name}": value for name, value in losses.items()})
        metrics["loss_commitment"] = output.commitment_loss
        metrics["discriminator_updated"] = torch.tensor(float(plan.update_discriminator))
        metrics["codebooks"] = torch.tensor(float(plan.n_q))
        self.train_metrics.add(metrics, "train/")
        self.train_metrics.add(self.balancer.metrics, "balancer/")
        self.train_metrics.add(output.metrics, "quantizer/")
        if self.global_step % self.log_every_n_steps == 0:
            self._log_running_means(batch_size=real.shape[0])

    def generator_objective(
        self,
        fake: torch.Tensor,
        real: torch.Tensor,
        adversarial: bool = True,
        index: int = 0,
        judged: tuple[DiscriminatorInput, DiscriminatorInput] | None = None,
    ) -> dict[str, torch.Tensor]:
        """The balanced losses of the generator (paper eq. 4, without the commitment term);
        without `adversarial`, the reconstruction losses alone. `index`: the bandwidth whose
        discriminator judges (when there is one per bandwidth); `judged`: what it judges for
        (fake, real) when already computed this step (default: the audio itself).

        The target's mel spectrograms are computed once here and shared by the mel loss.
        """
        target_spectrograms = self.mel_loss.spectrograms(real)
        losses = {
            "time": time_l1(fake, real),
            "mel": self.mel_loss(fake, target_spectrograms),
        }
        if adversarial:
            losses["adversarial"], losses["feature_matching"] = self.adversarial.generator_losses(
                *(judged or (fake, real)), index
            )
        return losses

    def _discriminator_inputs(
        self, fake: torch.Tensor, real: torch.Tensor
    ) -> tuple[DiscriminatorInput, DiscriminatorInput]:
        """(fake, real) as the discriminator judges them this step: their spectrograms,
        computed once (the real one without a graph), or the audio itself."""
        if not self.speed.shared_spectrograms:
            return fake, real
        with torch.no_grad():
            real_spectrograms = self.adversarial.spectrograms(real)
        return self.adversarial.spectrograms(fake), real_spectrograms

    def _backward(
        self, loss: torch.Tensor, optimizer, max_norm: float | None, **kwargs: Any
    ) -> None:
        """Backward through Lightning (`kwargs` go to `Tensor.backward`), then clip the
        gradients of `optimizer`'s parameters."""
        self.manual_backward(loss, **kwargs)
        if max_norm is not None:
            self.clip_gradients(
                optimizer, gradient_clip_val=max_norm, gradient_clip_algorithm="norm"
            )

    def logged_counts(self) -> dict[str, float]:
        """The data module's totals: unreadable files replaced, clipped mixtures redrawn, and
        those still clipped after the redraws (only our data module counts them; a benchmark
        may feed a plain loader)."""
        data = self.trainer.datamodule
        if not isinstance(data, AudioDataModule):
            return {}
        return {
            "data/skipped_files": float(data.skipped_files),
            "data/rejected_mixtures": float(data.rejected_mixtures),
            "data/scaled_mixtures": float(data.scaled_mixtures),
        }

    # -- validation -----------------------------------------------------------------------

    def evaluation_generator(self) -> EncodecModel:
        """The EMA weights when kept, else the trained generator."""
        return self.ema.module if self.ema is not None else self.generator

    def on_validation_epoch_start(self) -> None:
        self.validation_si_snr = {}

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        real, mask = batch["audio"], batch["mask"]
        generator = self.evaluation_generator()
        target_spectrograms = self.mel_loss.spectrograms(real)
        segments = real.shape[0]
        for bandwidth in generator.target_bandwidths:
            fake = generator(real, bandwidth).audio * mask
            si_snr = si_snr_mean(fake, real, self.si_snr_silence_db)
            self.validation_si_snr.setdefault(bandwidth, []).append(si_snr.channels)
            # (value, weight in the epoch's mean): SI-SNR is the evaluation's, per channel
            # whose reference is not silent, so an all-silent batch (NaN) weighs nothing.
            values = {
                "mel": (self.mel_loss(fake, target_spectrograms), segments),
                "time": (time_l1(fake, real), segments),
                "si_snr": (si_snr.value.float().nan_to_num(), si_snr.scored),
            }
            for name, (value, weight) in values.items():
                self.log(
                    f"valid/{name}@{bandwidth:g}kbps", value, batch_size=weight, sync_dist=True
                )
            self.log(
                f"valid/si_snr_silent@{bandwidth:g}kbps",
                float(si_snr.silent),
                batch_size=segments,
                reduce_fx="sum",
                sync_dist=True,
            )

    def on_validation_epoch_end(self) -> None:
        """`valid/si_snr_median@<kbps>kbps` over every rank's scored channels: one segment the
        codec decodes to near silence (−60 dB or less) moves the mean by dBs, not the median."""
        # Every rank takes part in each gather, whatever its batches held.
        for bandwidth in self.evaluation_generator().target_bandwidths:
            parts = self.validation_si_snr.get(bandwidth, [])
            local = torch.cat(parts) if parts else torch.zeros(0, dtype=torch.float64)
            channels = all_gather_uneven(local.to(self.device))
            median = channels.quantile(0.5) if channels.numel() else channels.new_tensor(math.nan)
            # Every rank holds the same value: "max" passes it through the sync unchanged.
            self.log(
                f"valid/si_snr_median@{bandwidth:g}kbps",
                median.float(),
                sync_dist=True,
                reduce_fx="max",
            )

    # -- checkpoints ----------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Everything beyond the networks and optimizers that an exact resume needs, and the
        model config so `EncodecModel.from_checkpoint` needs no config files."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["model_config"] = self.generator.config
        if self.ema is not None:
            checkpoint["generator_ema"] = self.ema.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.ema is not None and "generator_ema" in checkpoint:
            self.ema.load_state_dict(checkpoint["generator_ema"])

    def on_fit_start(self) -> None:
        if self.ema is not None:
            self.ema.to(self.device)


def uncounted_step(optimizer: LightningOptimizer) -> None:
    """Let `optimizer`'s next step bypass Lightning's step counter (this batch only).

    In manual optimisation every LightningOptimizer step advances `global_step`; the loop
    re-installs its counting hooks at each batch, so this lasts for the current one.
    """
    optimizer._on_before_step = optimizer._on_after_step = _do_nothing


def _do_nothing() -> None:
    pass


def gradient_norm(module: nn.Module) -> torch.Tensor:
    """L2 norm of all the gradients of `module`'s parameters (a device tensor, no sync)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(grads)
