#!/usr/bin/env python3
"""Train with any overrides and print the training-health table (every probe of the run).

    .venv/bin/python tools/training_health.py                      # the demo, as `make demo`
    .venv/bin/python tools/training_health.py trainer.max_epochs=10 health.every_n_steps=20

Each row is one probe of `TrainingHealth` on its fixed batch: level-0 codebook perplexity,
encoder temporal variation, own/other mel distance ratio, the discriminator's hinge loss
and accuracy, and the mel distance at every bandwidth. Used to find why a codec collapses
(docs/training.md, "Training health").
"""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir

from encodec_train import CONFIG_DIR
from encodec_train.training.builder import fit
from encodec_train.training.callbacks import TrainingHealth

CONF_DIR = CONFIG_DIR


def health_table(callback: TrainingHealth) -> str:
    """The callback's reports as a Markdown table."""
    bandwidths = sorted(callback.reports[0].distance_per_bandwidth) if callback.reports else []
    header = ["step", "L0 perplexity", "enc. temporal var.", "own/other", "D loss", "D acc."]
    header += [f"mel distance @{b:g} kbps" for b in bandwidths]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in callback.reports:
        cells = [
            str(r.step),
            f"{r.level0_perplexity:.1f}",
            f"{r.encoder_temporal_variation:.3f}",
            f"{r.own_other_ratio:.3f}",
            f"{r.discriminator_loss:.3f}" if r.discriminator_loss is not None else "-",
            f"{r.discriminator_accuracy:.2f}" if r.discriminator_accuracy is not None else "-",
        ]
        cells += [f"{r.distance_per_bandwidth[b]:.3f}" for b in bandwidths]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    _, trainer, _ = fit(cfg)
    callback = next(c for c in trainer.callbacks if isinstance(c, TrainingHealth))
    print(health_table(callback))
    print(
        "problems reported at the last probe (found on health.patience probes in a row):",
        "; ".join(callback.problems) or "none",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
