"""`dry_run=true`: everything a start checks, and the plan of the run, without training.

People run it on a login node before they queue a job: the config, the manifests, the batch
arithmetic, the devices, where the run writes and what it would resume from. It writes
nothing (no run folder, no run id, no demo corpus).
"""

from __future__ import annotations

import copy
import math
import os
from pathlib import Path

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig

from encodec_train.data.manifest import Manifest, ManifestError, total_hours
from encodec_train.evaluation.testsets import check_test_manifest
from encodec_train.model.checkpoint import CheckpointMismatchError
from encodec_train.training.builder import initialize_from
from encodec_train.training.config_checks import ConfigError, check_config, check_manifests
from encodec_train.training.lm_module import CodeShardDataModule, EntropyLMModule
from encodec_train.training.resume import ResumeError, find_run_folder, parse_wandb_ref
from encodec_train.training.run_record import read_run_id
from encodec_train.training.validation import MANIFEST_KEY

# What a failed check raises: each is reported and the dry run goes on with the next part.
CHECK_ERRORS = (
    ConfigError,
    ManifestError,
    ResumeError,
    CheckpointMismatchError,
    FileNotFoundError,
    PermissionError,
)


def plan(cfg: DictConfig) -> tuple[str, int]:
    """The run's plan and every check's finding, as text for the terminal, and the number of
    problems found (a real start fails at the first of them)."""
    lines = ["=== encodec-train dry run (nothing is trained or written) ==="]
    if "id" in cfg.logger.keys():  # W&B: the first real start makes the run id, not this
        cfg = copy.deepcopy(cfg)
        _plan_wandb_run(cfg)
    problems = 0
    parts = (
        lambda: [check_config(cfg)],
        _data_lines,
        _held_out_lines,
        _model_lines,
        _init_lines,
        _device_lines,
        _schedule_lines,
        _output_lines,
    )
    for part in parts:
        try:
            lines += part() if part.__name__ == "<lambda>" else part(cfg)
        except CHECK_ERRORS as error:
            if f"PROBLEM: {error}" not in lines:  # two parts may find the same one
                problems += 1
                lines.append(f"PROBLEM: {error}")
        if problems and part is parts[0]:
            break  # the rest reads the config the first check refused
    lines.append(f"{problems} problem(s) found" if problems else "all checks passed")
    return "\n".join(lines), problems


def _instantiate(node: DictConfig):
    """`instantiate(node)`, raising what its target raised when that is a check's finding
    (Hydra wraps it)."""
    try:
        return instantiate(node)
    except InstantiationException as error:
        if isinstance(error.__cause__, CHECK_ERRORS):
            raise error.__cause__ from None
        raise


def _plan_wandb_run(cfg: DictConfig) -> None:
    """Point the W&B logger's settings at the run the start would log to, without making a
    run id: a `resume=wandb:` reference's run (its entity, project and id), else the run
    folder's id (None: a new one)."""
    cfg.logger.id = read_run_id(cfg.run_dir)
    if str(cfg.resume).startswith("wandb:"):
        try:
            ref = parse_wandb_ref(str(cfg.resume))
        except ResumeError:
            return  # the resume line reports it
        cfg.logger.id, cfg.logger.project, cfg.logger.entity = ref.run_id, ref.project, ref.entity


def _data_lines(cfg: DictConfig) -> list[str]:
    if issubclass(get_class(cfg.data._target_), CodeShardDataModule):
        data = _instantiate(cfg.data)  # finds the shards and reads their headers, as a start
        sets = [("train_root", data.train), ("valid_root", data.valid)]
        return [
            f"data: data.{key}={cfg.data[key]}: {len(shards.paths)} shard(s), {len(shards)} "
            f"windows of {shards.frames} frames ({shards.metadata['bandwidth']} kbps codes)"
            for key, shards in sets
            if shards is not None
        ]
    valid = cfg.data.valid_manifests or []
    manifests = list(dict.fromkeys([*cfg.data.train_manifests, *valid]))
    if cfg.demo_corpus and not all(Path(path).exists() for path in manifests):
        return [f"data: the demo corpus would be synthesised into {cfg.demo_corpus}"]
    check_manifests(cfg.data)
    lines = []
    for path in manifests:
        manifest = Manifest.load(path)
        hours = total_hours(manifest)
        per_domain = ", ".join(f"{d} {h:.2f} h" for d, h in hours.items() if h)
        lines.append(f"data: {path}: {len(manifest)} files ({per_domain})")
    if not valid:
        lines.append("data: validation off (data.valid_manifests is null)")
    try:  # the strategies' pools and the impulse responses, as a start's setup builds them
        instantiate(cfg.data).setup("fit")
    except (ValueError, InstantiationException) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) else error
        raise ConfigError(f"data: {cause}") from None
    return lines


def _held_out_lines(cfg: DictConfig) -> list[str]:
    held_out = cfg.callbacks.get("held_out_validation")
    if held_out is None:
        return []
    check_test_manifest(held_out.manifest, MANIFEST_KEY)
    if held_out.manifest is not None:
        files = len(Manifest.load(held_out.manifest))
        return [
            f"held-out validation: {held_out.manifest}: {files} file(s) every "
            f"{held_out.every_n_steps} updates"
        ]
    if held_out.demo_corpus:
        return [
            f"held-out validation: the demo corpus's test set every {held_out.every_n_steps} updates"
        ]
    return ["held-out validation: off (callbacks.held_out_validation.manifest is null)"]


def _model_lines(cfg: DictConfig) -> list[str]:
    if issubclass(get_class(cfg.module._target_), EntropyLMModule):
        return _entropy_model_lines(cfg)
    generator = instantiate(cfg.model, _convert_="all")
    discriminator = instantiate(cfg.discriminator, _convert_="all")
    copies = len(cfg.model.target_bandwidths) if cfg.training.discriminator_per_bandwidth else 1
    count = sum(p.numel() for p in generator.parameters())
    judge = sum(p.numel() for p in discriminator.parameters())
    return [
        f"model: {cfg.model.sample_rate} Hz, {cfg.model.channels} channel(s), bandwidths "
        f"{list(cfg.model.target_bandwidths)} kbps, {count / 1e6:.2f} M parameters",
        f"discriminator: {copies} × {judge / 1e6:.2f} M parameters",
    ]


def _init_lines(cfg: DictConfig) -> list[str]:
    """`init_from` loaded into the module as a start loads it, so a missing file or the
    weights of another architecture (every tensor named) show up here."""
    if not cfg.get("init_from"):
        return []
    initialize_from(instantiate(cfg.module), cfg.init_from)
    return [f"init_from: {cfg.init_from}: the weights fit the model"]


def _entropy_model_lines(cfg: DictConfig) -> list[str]:
    """The entropy model as a start builds it: from the frozen codec (loaded, so a missing or
    foreign checkpoint is found here), or sized by the code shards."""
    module = _instantiate(cfg.module)
    if module.lm is None:
        module.build_for(_instantiate(cfg.data))
        codes = f"the code shards in data.train_root={cfg.data.train_root}"
    else:
        codes = f"the frozen codec codec_checkpoint={cfg.codec_checkpoint}, computed per batch"
    source = module.source
    count = sum(p.numel() for p in module.lm.parameters())
    return [
        f"entropy model: {cfg.lm.num_layers} layers × {cfg.lm.dim} channels, "
        f"{count / 1e6:.2f} M parameters, {source.codebooks[-1]} codebooks of "
        f"{source.codebook_size} codes, bandwidths {source.bandwidths} kbps",
        f"codes: from {codes}",
    ]


def _device_lines(cfg: DictConfig) -> list[str]:
    trainer = cfg.trainer
    line = (
        f"devices: {trainer.accelerator} × {trainer.devices} per node × {trainer.num_nodes} "
        f"node(s), strategy {trainer.strategy}, precision {trainer.precision}"
    )
    if trainer.accelerator in ("gpu", "cuda"):
        visible = torch.cuda.device_count()
        wanted = trainer.devices if isinstance(trainer.devices, int) else len(trainer.devices)
        if visible < wanted:
            line += (
                f"; this machine sees {visible} GPU(s), so train on the nodes the job "
                f"allocates ({wanted} GPUs each)"
            )
    return [line]


def _schedule_lines(cfg: DictConfig) -> list[str]:
    trainer = cfg.trainer
    epochs, per_epoch = trainer.max_epochs, trainer.limit_train_batches
    if trainer.max_steps and trainer.max_steps > 0:
        total = trainer.max_steps
        if epochs and epochs > 0 and isinstance(per_epoch, int):
            total = min(total, epochs * per_epoch)
    elif epochs and epochs > 0 and isinstance(per_epoch, int):
        total = epochs * per_epoch
    else:
        total = math.inf
    return [
        f"schedule: {total} updates ({epochs} epochs × {per_epoch} updates, max_steps "
        f"{trainer.max_steps}); checkpoint every {cfg.checkpoint_every_n_steps} updates"
    ]


def _output_lines(cfg: DictConfig) -> list[str]:
    run_dir = Path(cfg.run_dir)
    existing = next((p for p in [run_dir, *run_dir.parents] if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        raise PermissionError(f"run_dir={run_dir}: {existing} is not writable")
    state = "holds earlier starts" if (run_dir / "starts").is_dir() else "new"
    lines = [f"run folder: {run_dir} ({state})"]
    lines.append(f"resume: {_resume_plan(cfg)}")
    logger = cfg.logger._target_.rsplit(".", 1)[-1]
    if "Wandb" in logger:
        mode = os.environ.get("WANDB_MODE", "online")
        run_id = cfg.logger.id or "a new id"
        lines.append(
            f"logger: W&B project {cfg.logger.project} ({mode}), run {run_id}, "
            f"checkpoints as artifacts: {cfg.logger.log_checkpoints}"
        )
    else:
        lines.append(f"logger: {logger} in {run_dir}")
    return lines


def _resume_plan(cfg: DictConfig) -> str:
    resume = cfg.resume
    if resume in (None, ""):
        return "none: a fresh start"
    if str(resume).startswith("wandb:"):
        ref = parse_wandb_ref(str(resume))
        folder = find_run_folder(Path(cfg.runs_root), ref.run_id)
        if folder is not None:
            return f"W&B run {ref.run_path}: its local folder {folder}"
        return f"W&B run {ref.run_path}: download artifact {ref.artifact_name}"
    path = Path(cfg.run_dir) / "checkpoints" / "last.ckpt" if resume == "auto" else Path(resume)
    if not path.exists():
        if resume == "auto":
            return "none: no last.ckpt in the run folder, a fresh start"
        raise ResumeError(f"resume={resume}: no such checkpoint")
    step = torch.load(path, map_location="cpu", mmap=True, weights_only=True)["global_step"]
    return f"{path} at step {step}"
