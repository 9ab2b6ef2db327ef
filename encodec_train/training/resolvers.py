"""The interpolation functions the Hydra configs use, registered once on import."""

from __future__ import annotations

from omegaconf import OmegaConf

from encodec_train.training.config_checks import per_rank_batch
from encodec_train.training.run_record import run_id


def highest_bandwidth(bandwidths: list[float]) -> str:
    """The highest of `bandwidths` as the validation metrics name it (`24`, `1.5`)."""
    return f"{max(bandwidths):g}"


def sweep_point(overrides: list[str], excludes: list[str]) -> str:
    """A sweep point's folder name: its command-line overrides, sorted, without the keys in
    `excludes` (`+`/`~` prefixes ignored), `/` replaced so a value never nests folders."""
    kept = sorted(
        override.replace("/", "_")
        for override in overrides
        if override.split("=", 1)[0].lstrip("+~") not in excludes
    )
    return ",".join(kept) or "defaults"


RESOLVERS = {
    # `${run_id:${run_dir}}`: the W&B run id of the run folder (logger configs).
    "run_id": run_id,
    # `${per_rank_batch:${training.global_batch_size},${trainer.devices},${trainer.num_nodes}}`
    "per_rank_batch": per_rank_batch,
    # `valid/mel@${highest_bandwidth:${model.target_bandwidths}}kbps` (the best checkpoint's).
    "highest_bandwidth": highest_bandwidth,
    # `${sweep_point:${hydra:overrides.task},${sweep_name_excludes}}` (hydra.sweep.subdir).
    "sweep_point": sweep_point,
}
for _name, _function in RESOLVERS.items():
    OmegaConf.register_new_resolver(_name, _function, replace=True)
