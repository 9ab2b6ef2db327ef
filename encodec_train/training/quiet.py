"""Silence the messages of our libraries that a user of this project cannot act on, each by
its exact text (never whole categories of warnings)."""

from __future__ import annotations

import logging
import warnings

# Lightning's advertisements for its cloud products, printed on every run.
_TIPS = ("💡 Tip: For seamless",)
_WARNINGS = (
    # Our checkpoints are meant to hold the state after the step's updates, which is what
    # Lightning warns that it saves when the optimisation is manual.
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    # Lightning 2.6 uses a torch pytree API that newer torch deprecates.
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # best.ckpt's metric (derived from the trained bandwidths) before the first validation,
    # e.g. a run that stops mid-epoch at trainer.max_steps.
    r"`ModelCheckpoint\(monitor='valid/mel@.*could not find the monitored key",
    # A resumed run writes its checkpoints into its own folder again, by design.
    r"Checkpoint directory .* exists and is not empty",
)


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIPS)


_DROP_TIPS = _DropTips()


def silence_unactionable_messages() -> None:
    """Install the filters (idempotent)."""
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).addFilter(_DROP_TIPS)
    for message in _WARNINGS:
        warnings.filterwarnings("ignore", message=message)
