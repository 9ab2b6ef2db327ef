"""Which checkpoint a start continues from: its own `last.ckpt`, a path, or a W&B run.

`resume=wandb:<entity>/<project>/<run_id>[:alias]` (or a W&B run URL) looks for that run's
folder under the runs root first (the folder whose `run_id` file holds the id) and continues
there; otherwise it downloads the run's model artifact `model-<run_id>:<alias>` (aliases
`latest`, `best`, `vN`) into this run's folder. Either way the run folder's `run_id` is the
W&B run's, so the logger continues the same W&B run (`resume="allow"`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.utils import get_class
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from encodec_train.training.config_checks import ConfigError

log = logging.getLogger(__name__)

ALIAS = re.compile(r"^(latest|best|v\d+)$")
# The config keys a checkpoint's networks depend on: a resume under other values cannot load.
STRUCTURAL_KEYS = ("model", "discriminator", "training.discriminator_per_bandwidth")


class ResumeError(ValueError):
    """A `resume=` value that names no usable checkpoint; the message says which and why."""


@dataclass(frozen=True)
class WandbRef:
    """A W&B run and one of its checkpoint aliases."""

    entity: str
    project: str
    run_id: str
    alias: str = "latest"

    @property
    def run_path(self) -> str:
        return f"{self.entity}/{self.project}/{self.run_id}"

    @property
    def artifact_name(self) -> str:
        return f"{self.entity}/{self.project}/model-{self.run_id}:{self.alias}"


def parse_wandb_ref(text: str) -> WandbRef:
    """`wandb:<entity>/<project>/<run_id>[:alias]`, or `wandb:` + a run's URL
    (`https://wandb.ai/<entity>/<project>/runs/<run_id>`), alias `latest` when not given."""
    body = text.removeprefix("wandb:")
    body = re.sub(r"^https?://[^/]+/", "", body)
    body, _, alias = body.partition(":")
    alias = alias or "latest"
    parts = [part for part in body.split("/") if part]
    if len(parts) == 4 and parts[2] == "runs":
        parts = [parts[0], parts[1], parts[3]]
    if len(parts) != 3 or not ALIAS.match(alias):
        raise ResumeError(
            f"resume={text}: expected wandb:<entity>/<project>/<run_id>[:latest|:best|:vN] "
            "or wandb:<run URL>[:alias]"
        )
    return WandbRef(parts[0], parts[1], parts[2].split("?")[0], alias)


def find_run_folder(runs_root: Path, run_id: str) -> Path | None:
    """The folder under `runs_root` (sweep points included) whose `run_id` file holds
    `run_id`."""
    if not runs_root.is_dir():
        return None
    for path in sorted(runs_root.glob("**/run_id")):
        if path.read_text().strip() == run_id:
            return path.parent
    return None


def local_checkpoint(run_dir: Path, alias: str) -> Path | None:
    """The checkpoint of `alias` in a run folder: `last.ckpt` for latest, `best.ckpt` for best
    (numbered versions exist only in W&B)."""
    name = {"latest": "last.ckpt", "best": "best.ckpt"}.get(alias)
    path = run_dir / "checkpoints" / name if name else None
    return path if path is not None and path.exists() else None


def resolve_resume(cfg: DictConfig) -> str | None:
    """The checkpoint this start continues from (None: a fresh start). `resume=auto` picks the
    run's own `last.ckpt`; a path is taken as is; a `wandb:` reference is resolved as the
    module docstring says, updating `cfg.run_dir` (and the logger's entity and project) to
    the W&B run's."""
    if cfg.resume in (None, ""):
        return None
    if cfg.resume == "auto":
        last = Path(cfg.run_dir) / "checkpoints" / "last.ckpt"
        return str(last) if last.exists() else None
    if str(cfg.resume).startswith("wandb:"):
        return str(resume_wandb_run(cfg, parse_wandb_ref(str(cfg.resume))))
    if not Path(cfg.resume).exists():
        raise FileNotFoundError(f"resume={cfg.resume}: no such checkpoint")
    return str(cfg.resume)


def resume_wandb_run(cfg: DictConfig, ref: WandbRef) -> Path:
    """Find `ref`'s checkpoint locally, else download it; point the run at the W&B run."""
    if issubclass(get_class(cfg.logger._target_), WandbLogger):  # WandbRunLogger too
        OmegaConf.update(cfg, "logger.project", ref.project)
        OmegaConf.update(cfg, "logger.entity", ref.entity, force_add=True)
        # No name: W&B keeps the run's own (this config's run_name would rename it).
        OmegaConf.update(cfg, "logger.name", None, force_add=True)
    folder = find_run_folder(Path(cfg.runs_root), ref.run_id)
    if folder is not None:
        checkpoint = local_checkpoint(folder, ref.alias)
        if checkpoint is not None:
            check_compatible(_recorded_config(folder), cfg, f"run folder {folder}")
            OmegaConf.update(cfg, "run_dir", str(folder))
            log.info("resume=%s: continuing the local run folder %s", cfg.resume, folder)
            return checkpoint
    id_file = Path(cfg.run_dir) / "run_id"
    if id_file.exists() and id_file.read_text().strip() != ref.run_id:
        raise ResumeError(
            f"run_dir={cfg.run_dir} belongs to W&B run {id_file.read_text().strip()}, not "
            f"{ref.run_id}: choose another run_name (or run_dir) to continue the W&B run into"
        )
    checkpoint = download_checkpoint(ref, Path(cfg.run_dir) / "checkpoints" / "wandb", cfg)
    id_file.write_text(ref.run_id + "\n")  # the logger continues the W&B run
    return checkpoint


def download_checkpoint(ref: WandbRef, destination: Path, cfg: DictConfig) -> Path:
    """Download the model artifact of `ref` through the W&B API into `destination`."""
    api = _api()
    try:
        api.run(ref.run_path)
    except Exception as error:  # noqa: BLE001 - wandb raises several types for "not found"
        raise ResumeError(
            f"resume={cfg.resume}: W&B has no run {ref.run_path} ({error}), and no folder "
            f"under runs_root={cfg.runs_root} holds run_id {ref.run_id}"
        ) from None
    try:
        artifact = api.artifact(ref.artifact_name, type="model")
    except Exception as error:  # noqa: BLE001
        raise ResumeError(
            f"resume={cfg.resume}: run {ref.run_path} has no checkpoint {ref.artifact_name} "
            f"({error}); checkpoints are logged as artifacts by logger=wandb runs"
        ) from None
    recorded = (artifact.metadata or {}).get("config")
    if recorded is not None:
        check_compatible(OmegaConf.create(recorded), cfg, f"artifact {ref.artifact_name}")
    folder = Path(artifact.download(root=str(destination)))
    checkpoints = sorted(folder.glob("*.ckpt"))
    if len(checkpoints) != 1:
        raise ResumeError(f"artifact {ref.artifact_name} holds {len(checkpoints)} .ckpt files")
    log.info("resume=%s: downloaded %s", cfg.resume, checkpoints[0])
    return checkpoints[0]


def _api():
    """`wandb.Api`; the calls made on it are `run`, `artifact`, and the artifact's `metadata`
    and `download` (the boundary tests/training/test_wandb_resume.py doubles)."""
    import wandb

    try:
        return wandb.Api(timeout=30)
    except Exception as error:  # noqa: BLE001 - no network, no login: say what to do
        raise ResumeError(
            f"cannot reach W&B to find the run ({error}); without a network, resume from the "
            "run's local folder (copy it under runs_root) or from its checkpoint path"
        ) from None


def _recorded_config(run_dir: Path) -> DictConfig | None:
    """The config the run's latest start recorded (`starts/<n>/config.yaml`)."""
    starts = [p for p in (run_dir / "starts").glob("*/config.yaml") if p.parent.name.isdigit()]
    if not starts:
        return None
    return OmegaConf.load(max(starts, key=lambda p: int(p.parent.name)))


def check_compatible(recorded: DictConfig | None, cfg: DictConfig, source: str) -> None:
    """Refuse to resume when the structural settings (`STRUCTURAL_KEYS`) differ, naming every
    differing key with both values."""
    if recorded is None:
        return
    differences = []
    for key in STRUCTURAL_KEYS:
        old = _flatten(OmegaConf.select(recorded, key), key)
        new = _flatten(OmegaConf.select(cfg, key), key)
        for name in sorted(old.keys() | new.keys()):
            if old.get(name) != new.get(name):
                differences.append(f"{name}: {old.get(name)!r} there, {new.get(name)!r} here")
    if differences:
        raise ConfigError(
            f"cannot resume from {source}: its config differs from the requested one in "
            + "; ".join(differences)
        )


def _flatten(node: Any, prefix: str) -> dict[str, Any]:
    if isinstance(node, DictConfig):
        return {
            name: value
            for key in node
            for name, value in _flatten(node[key], f"{prefix}.{key}").items()
        }
    if OmegaConf.is_list(node):
        return {prefix: OmegaConf.to_container(node)}
    return {prefix: node}
