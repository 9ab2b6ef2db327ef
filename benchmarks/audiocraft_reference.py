"""audiocraft's own EnCodec training step, as the reference that `training_step.py` times.

One step is `audiocraft.solvers.compression.CompressionSolver.run_step`, unmodified, on
audiocraft's EnCodec 24 kHz model (causal SEANet, 32-level RVQ with quantizer dropout),
MS-STFT discriminator with its own Adam, L1 and multi-scale mel losses and balancer, all
built by audiocraft's own builders from the values of its
`config/solver/compression/encodec_base_24khz.yaml` (with `compression/default.yaml` and
`model/encodec/encodec_base_causal.yaml`, commit 896ec7c). The PyPI package ships without
`config/`, so those values are transcribed below; with `config_dir` (a checkout's `config/`)
the config is composed from the files instead and the transcription is checked against it.

Not timed, as in the issue's comparison: the EMA of the generator weights and the weight-0
"info" losses (mel, SI-SNR), which audiocraft computes without gradients.

Install (not a project dependency): `pip install '.[bench]'` then
`pip install --no-deps audiocraft==1.3.0` (`make bench` does both).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import time
import types
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch.profiler import record_function

# Imported by parts of audiocraft that EnCodec training never runs (LM conditioners, audio
# file I/O, xformers attention, ...): when absent they become empty modules, and `check_stubs`
# fails the benchmark if anything from them was used after the import.
UNRELATED_PACKAGES = (
    "av",
    "demucs",
    "gradio",
    "librosa",
    "num2words",
    "sentencepiece",
    "spacy",
    "torchdiffeq",
    "xformers",
)

# audiocraft's configuration values for `solver=compression/encodec_base_24khz` (the keys its
# builders and `run_step` read), transcribed from the YAML files named in the docstring.
ENCODEC_BASE_24KHZ = """
compression_model: encodec
sample_rate: 24000
channels: 1
encodec: {autoencoder: seanet, quantizer: rvq, sample_rate: 24000, channels: 1, causal: true,
          renormalize: false}
seanet:
  dimension: 128
  channels: 1
  causal: true
  n_filters: 32
  n_residual_layers: 1
  ratios: [8, 5, 4, 2]
  activation: ELU
  activation_params: {alpha: 1.0}
  norm: weight_norm
  norm_params: {}
  kernel_size: 7
  residual_kernel_size: 3
  last_kernel_size: 7
  dilation_base: 2
  pad_mode: constant
  true_skip: true
  compress: 2
  lstm: 2
  disable_norm_outer_blocks: 0
  decoder: {trim_right_ratio: 1.0, final_activation: null, final_activation_params: null}
  encoder: {}
rvq: {n_q: 32, q_dropout: true, bins: 1024, decay: 0.99, kmeans_init: true, kmeans_iters: 50,
      threshold_ema_dead_code: 2, orthogonal_reg_weight: 0.0,
      orthogonal_reg_active_codes_only: false}
losses: {adv: 4.0, feat: 4.0, l1: 0.1, mel: 0.0, msspec: 2.0, sisnr: 0.0}
balancer: {balance_grads: true, ema_decay: 0.999, per_batch_item: true, total_norm: 1.0}
adversarial: {every: 1, adversaries: [msstftd], adv_loss: hinge, feat_loss: l1}
l1: {}
msspec: {sample_rate: 24000, range_start: 6, range_end: 11, n_mels: 64, f_min: 64,
         f_max: null, normalized: true, alphas: false, floor_level: 1.0e-5}
msstftd:
  in_channels: 1
  out_channels: 1
  filters: 32
  norm: weight_norm
  n_ffts: [1024, 2048, 512, 256, 128]
  hop_lengths: [256, 512, 128, 64, 32]
  win_lengths: [1024, 2048, 512, 256, 128]
  activation: LeakyReLU
  activation_params: {negative_slope: 0.3}
optim: {lr: 3.0e-4, max_norm: 0.0, optimizer: adam, adam: {betas: [0.5, 0.9], weight_decay: 0.0}}
"""


class _EmptyModule(types.ModuleType):
    """Stands in for an unrelated package; records any attribute used after the imports."""

    used: list[str] = []
    imports_done = False

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if _EmptyModule.imports_done:
            _EmptyModule.used.append(f"{self.__name__}.{name}")
        return type(name, (), {"__module__": self.__name__})


class _EmptyModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self, packages: tuple[str, ...]) -> None:
        self.packages = packages

    def find_spec(self, fullname, path, target=None):
        if fullname.split(".")[0] in self.packages:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        return _EmptyModule(spec.name)

    def exec_module(self, module):
        module.__path__ = []


def import_audiocraft() -> types.ModuleType:
    """Import audiocraft with the unrelated packages that are not installed stubbed."""
    missing = tuple(name for name in UNRELATED_PACKAGES if importlib.util.find_spec(name) is None)
    sys.meta_path.insert(0, _EmptyModules(missing))
    try:
        import audiocraft
        import audiocraft.solvers.compression  # noqa: F401
    except ImportError as error:
        raise SystemExit(
            f"audiocraft is not importable ({error}); install the reference with "
            "`pip install '.[bench]' && pip install --no-deps audiocraft==1.3.0`"
        ) from error
    _EmptyModule.imports_done = True
    return audiocraft


def check_stubs() -> None:
    if _EmptyModule.used:
        raise SystemExit(f"the reference step used stubbed packages: {sorted(_EmptyModule.used)}")


def audiocraft_config(config_dir: Path | None, device: str) -> tuple[DictConfig, str]:
    """audiocraft's config for the 24 kHz EnCodec solver, and where it came from."""
    values = OmegaConf.create(ENCODEC_BASE_24KHZ)
    values.device = device
    if config_dir is None:
        return values, "values transcribed from audiocraft 896ec7c's config/"
    from hydra import compose, initialize_config_dir

    os.environ.setdefault("USER", "bench")  # its config.yaml interpolates ${oc.env:USER}
    with initialize_config_dir(config_dir=str(config_dir.resolve()), version_base="1.1"):
        composed = compose(
            "config", overrides=["solver=compression/encodec_base_24khz", f"device={device}"]
        )
    expected = OmegaConf.to_container(values, resolve=True)
    differences = _differences(expected, OmegaConf.to_container(composed, resolve=True))
    if differences:
        raise SystemExit(f"{config_dir}: the transcription differs: {'; '.join(differences)}")
    return composed, f"composed from {config_dir} (the transcription agrees)"


def _differences(expected: dict, found: dict, prefix: str = "") -> list[str]:
    """Keys of `expected` (recursively) whose value `found` does not share."""
    differences = []
    for key, value in expected.items():
        other = found.get(key) if isinstance(found, dict) else None
        if isinstance(value, dict) and isinstance(other, dict):
            differences += _differences(value, other, f"{prefix}{key}.")
        elif other != value:
            differences.append(f"{prefix}{key}: audiocraft {other!r}, transcribed {value!r}")
    return differences


class ReferenceStep:
    """audiocraft's training step with its phases timed from outside.

    The phases are probed by wrapping methods of the built objects (the generator's
    `forward`, the adversary's `train_adv` and `forward`, the losses' `forward`, the
    balancer's per-loss `autograd.grad`, the optimizer's `step`); `run_step` itself runs as
    shipped. `phases` maps each phase to seconds since the last `record()`.

    Args:
        cfg: from `audiocraft_config`.
        seed: seeds the weights and the step's own random draws.
    """

    def __init__(self, cfg: DictConfig, seed: int = 0) -> None:
        from audiocraft.losses import balancer as balancer_module
        from audiocraft.models import builders as models
        from audiocraft.solvers import builders
        from audiocraft.solvers.compression import CompressionSolver

        torch.manual_seed(seed)
        self.cfg = cfg
        self.model = models.get_compression_model(cfg)
        self.optimizer = builders.get_optimizer(self.model.parameters(), cfg.optim)
        self.adv_losses = builders.get_adversarial_losses(cfg)
        self.aux_losses = torch.nn.ModuleDict()
        weights = {}
        # As CompressionSolver.__init__ splits them: adversarial, balanced (weight > 0) and
        # info-only (weight 0, left out here).
        for name, weight in cfg.losses.items():
            if name in ("adv", "feat"):
                for adversary in self.adv_losses:
                    weights[f"{name}_{adversary}"] = weight
            elif weight > 0:
                self.aux_losses[name] = builders.get_loss(name, cfg).to(cfg.device)
                weights[name] = weight
        self.balancer = builders.get_balancer(weights, cfg.balancer)
        self.info_losses = torch.nn.ModuleDict()
        self.device = cfg.device
        self.is_training = True
        self.rng = torch.Generator().manual_seed(1234)  # as CompressionSolver.run_epoch
        self._run_step = CompressionSolver.run_step
        self.model.train()
        self.phases: dict[str, float] | None = None
        self._synchronize = cfg.device == "cuda"
        self._probe(balancer_module)

    def record(self) -> None:
        self.phases = defaultdict(float)

    def prime_codebooks(self, audio: torch.Tensor) -> None:
        """Initialise all 32 codebooks before timing (k-means with 1 iteration instead of 50:
        the steady-state step does not depend on how they were seeded), so no timed step
        runs a k-means."""
        quantizer = self.model.quantizer
        codebooks = [m for m in self.model.modules() if hasattr(m, "kmeans_iters")]
        iters = [m.kmeans_iters for m in codebooks]
        dropout, quantizer.q_dropout = quantizer.q_dropout, False
        for codebook in codebooks:
            codebook.kmeans_iters = 1
        with torch.no_grad():
            self.model(audio.to(self.device))
        for codebook, n in zip(codebooks, iters, strict=True):
            codebook.kmeans_iters = n
        quantizer.q_dropout = dropout

    def __call__(self, index: int, audio: torch.Tensor) -> dict[str, Any]:
        return self._run_step(self, index, audio, {})

    # -- phase probes ---------------------------------------------------------------------

    def _probe(self, balancer_module: types.ModuleType) -> None:
        self._time_method(self.model, "forward", "generator_forward")
        for adversary in self.adv_losses.values():
            self._time_method(adversary, "train_adv", "discriminator_update")
            self._time_method(adversary, "forward", "generator_losses")
        for loss in self.aux_losses.values():
            self._time_method(loss, "forward", "generator_losses")
        # The balancer's backward = its per-loss gradients ("balancer") + the generator's
        # backward from the combined gradient ("generator_backward", the rest of it).
        self._time_method(self.balancer, "backward", "generator_backward")
        grad = self._timed(torch.autograd.grad, "balancer", subtract_from="generator_backward")
        balancer_module.autograd = types.SimpleNamespace(grad=grad)
        self._time_method(self.optimizer, "step", "generator_optimizer")

    def _time_method(self, obj: Any, name: str, phase: str) -> None:
        setattr(obj, name, self._timed(getattr(obj, name), phase))

    def _timed(self, function: Callable, phase: str, subtract_from: str | None = None) -> Callable:
        def timed(*args, **kwargs):
            if self.phases is None:
                return function(*args, **kwargs)
            self._sync()
            start = time.perf_counter()
            with record_function(phase):  # for the per-op profile, as our step's ranges
                result = function(*args, **kwargs)
            self._sync()
            seconds = time.perf_counter() - start
            self.phases[phase] += seconds
            if subtract_from is not None:
                self.phases[subtract_from] -= seconds
            return result

        return timed

    def _sync(self) -> None:
        if self._synchronize:
            torch.cuda.synchronize()
