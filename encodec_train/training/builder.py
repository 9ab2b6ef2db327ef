"""Builds the LightningModule, data module and Trainer from a composed Hydra config."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
from hydra.utils import get_class, instantiate
from lightning.pytorch.callbacks import ProgressBar
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig

from encodec_train.convert import load_pretrained
from encodec_train.losses import AdversarialLoss
from encodec_train.model.checkpoint import CheckpointMismatchError, load_weights
from encodec_train.training.codec_module import CodecGANModule
from encodec_train.training.config_checks import check_config, check_manifests
from encodec_train.training.quiet import silence_unactionable_messages
from encodec_train.training.resume import resolve_resume
from encodec_train.training.run_record import record_start, run_id, start_record
from encodec_train.training.slurm import cluster_plugins
from encodec_train.training.wandb_run import WandbRunLogger, check_reachable

log = logging.getLogger(__name__)


def prepare_data(cfg: DictConfig) -> None:
    """Check the config, synthesise the demo corpus when asked, then check the manifests."""
    log.info(check_config(cfg))
    if cfg.demo_corpus:
        from encodec_train.data.synth import ensure_demo_corpus

        ensure_demo_corpus(Path(cfg.demo_corpus), sample_rate=cfg.model.sample_rate, seed=cfg.seed)
    check_manifests(cfg.data)
    if issubclass(get_class(cfg.logger._target_), WandbLogger) and not cfg.logger.get("offline"):
        check_reachable()


def build_module(cfg: DictConfig) -> CodecGANModule:
    """The GAN module as the `module` group wires it (+ the weights of `init_from`)."""
    module = instantiate(cfg.module)
    if cfg.init_from:
        initialize_from(module, cfg.init_from)
    return module


def initialize_from(module: CodecGANModule, path: str | Path) -> None:
    """Load generator (and discriminator, when present) weights for fine-tuning; optimizer
    state and step start afresh."""
    weights = load_pretrained(path, module.generator)
    load_weights(module.generator, weights.generator, f"init_from={path}")
    if weights.discriminator is not None:
        load_discriminators(module.adversarial, weights.discriminator, f"init_from={path}")
    if module.ema is not None:
        module.ema.module.load_state_dict(module.generator.state_dict())
    log.info("initialised from %s", path)


def load_discriminators(adversarial: AdversarialLoss, state: dict, source: str) -> None:
    """Load discriminator weights saved with as many discriminators as `adversarial` holds,
    or one discriminator's weights into each of them (fine-tuning per-bandwidth
    discriminators from a run, or a checkpoint, that had a single one)."""
    saved_copies = len({key.split(".")[0] for key in state if key.split(".")[0].isdigit()})
    if saved_copies == adversarial.copies or (saved_copies == 0 and adversarial.copies == 1):
        load_weights(adversarial.discriminator, state, f"{source} (discriminator)")
        return
    if saved_copies:
        raise CheckpointMismatchError(
            f"{source}: the checkpoint holds {saved_copies} discriminators, the run "
            f"{adversarial.copies}; start with training.discriminator_per_bandwidth as it "
            "was, or from a checkpoint with a single discriminator"
        )
    for index in range(adversarial.copies):
        load_weights(adversarial.judge(index), state, f"{source} (discriminator {index})")


def build_trainer(cfg: DictConfig) -> L.Trainer:
    """Trainer with the `callbacks` group's callbacks and the `logger` group's logger."""
    callbacks = [instantiate(node, _convert_="all") for node in cfg.callbacks.values()]
    if not cfg.trainer.enable_progress_bar:
        callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
    return L.Trainer(
        **cfg.trainer,
        logger=instantiate(cfg.logger),
        callbacks=callbacks,
        plugins=cluster_plugins(),
        default_root_dir=str(cfg.run_dir),
        log_every_n_steps=cfg.training.log_every_n_steps,
    )


def fit(cfg: DictConfig) -> tuple[CodecGANModule, L.Trainer, L.LightningDataModule]:
    """Everything `python -m encodec_train` does before the summary: check, build, train."""
    silence_unactionable_messages()
    prepare_data(cfg)
    checkpoint = resolve_resume(cfg)  # may move run_dir to a W&B run's folder
    L.seed_everything(cfg.seed, workers=True)
    module = build_module(cfg)
    datamodule = instantiate(cfg.data)
    run_id(cfg.run_dir)  # every run has its id, whatever it logs to
    trainer = build_trainer(cfg)
    if trainer.is_global_zero:
        record = start_record(cfg)
        record_start(cfg, record)
        for logger in trainer.loggers:
            if isinstance(logger, WandbRunLogger):
                logger.record_run(record)
    # Our checkpoints hold only tensors and plain data.
    trainer.fit(module, datamodule=datamodule, ckpt_path=checkpoint, weights_only=True)
    return module, trainer, datamodule
