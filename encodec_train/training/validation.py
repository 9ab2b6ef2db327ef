"""Validation on a fixed held-out test set during training: the paper's metrics at every
training bandwidth, codebook usage per level, audio examples and spectrograms.

Runs on the main rank inside `torch.random.fork_rng`, with the evaluation generator in eval
mode, so it neither trains the codebooks nor moves any random stream: a run with validation
resumes exactly as one without.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger

from encodec_train.data.manifest import Manifest
from encodec_train.evaluation.metrics import MelDistance
from encodec_train.evaluation.runner import mean_or_none, read_clip, score
from encodec_train.evaluation.systems import CodecSystem
from encodec_train.evaluation.testsets import check_test_manifest, ensure_demo_test_set
from encodec_train.model.quantizer import perplexity
from encodec_train.training.health import eval_mode

log = logging.getLogger(__name__)

PREFIX = "heldout"
MANIFEST_KEY = "callbacks.held_out_validation.manifest"


class HeldOutValidation(L.Callback):
    """Every `every_n_steps` updates, code every file of a held-out test manifest at every
    training bandwidth and log under `heldout/`: mel distance and SI-SNR each time (and how
    many files SI-SNR left out for a silent reference), the `perceptual_metrics` (ViSQOL,
    PESQ) every `perceptual_every` validations, and per level of the codebooks the share of
    codes used and their perplexity. The first file of each
    category, for up to `examples` categories, is written (and sent to W&B) as audio and a
    mel-spectrogram image.

    Args:
        every_n_steps: validation interval in generator updates (0: never).
        manifest: the held-out test manifest (`recipes/test_sets.py`); None: the demo
            corpus's test set when `demo_corpus` is set, else validation is off.
        demo_corpus: the demo corpus folder (`${demo_corpus}`), or None.
        perceptual_every: validations between two runs of `perceptual_metrics` (0: never).
        perceptual_metrics: the slow metrics (names in `evaluation.metrics.METRICS`).
        examples: categories whose first file is written as audio and spectrograms.
        output_dir: where `step_<k>/` folders of examples go.
    """

    def __init__(
        self,
        every_n_steps: int,
        manifest: str | None,
        demo_corpus: str | None,
        perceptual_every: int,
        perceptual_metrics: list[str],
        examples: int,
        output_dir: str | Path,
    ) -> None:
        self.every_n_steps = every_n_steps
        self.manifest = manifest
        self.demo_corpus = demo_corpus
        self.perceptual_every = perceptual_every
        self.perceptual_metrics = list(perceptual_metrics)
        self.examples = examples
        self.output_dir = Path(output_dir)
        self.validations = 0
        self.latest: dict[str, float] = {}
        """The values of the last validation (the run's status.json keeps them)."""
        self._entries: Manifest | None = None

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        # A missing manifest fails at start-up, not at the first validation.
        if stage == "fit":
            check_test_manifest(self.manifest, MANIFEST_KEY)
        if stage == "fit" and self.manifest is None and self.demo_corpus is None:
            log.info(
                "held-out validation is off: set callbacks.held_out_validation.manifest to a "
                "test manifest (docs/evaluation.md)"
            )

    def entries(self) -> Manifest | None:
        """The test files (the demo's test set is written on first use), or None: off."""
        if self._entries is None and self.manifest is not None:
            self._entries = Manifest.load(self.manifest)
        elif self._entries is None and self.demo_corpus is not None:
            self._entries = Manifest.load(ensure_demo_test_set(self.demo_corpus))
        return self._entries

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        if self.entries() is None:
            return
        values = self.validate(pl_module, step)
        self.latest = values
        for logger in trainer.loggers:
            logger.log_metrics(values, step=step)

    @torch.no_grad()
    def validate(self, pl_module, step: int) -> dict[str, float]:
        """One validation of `pl_module.evaluation_generator()`; returns the logged values."""
        self.validations += 1
        perceptual = self.perceptual_every > 0 and self.validations % self.perceptual_every == 0
        names = ["mel_distance", "si_snr", *(self.perceptual_metrics if perceptual else [])]
        generator = pl_module.evaluation_generator()
        bandwidths = generator.target_bandwidths
        scores: dict[tuple[str, float], list[float | None]] = {}
        counts = torch.zeros(generator.quantizer.n_q, generator.quantizer.codebook_size)
        examples: list[tuple[str, int, dict[str, torch.Tensor]]] = []
        entries = self.entries()
        firsts: dict[str, int] = {}  # the first file of each category
        for index, entry in enumerate(entries):
            firsts.setdefault(entry.dataset, index)
        shown = set(list(firsts.values())[: self.examples])
        with torch.random.fork_rng(devices=[]), eval_mode(generator):
            for index, entry in enumerate(entries):
                reference, rate = read_clip(entry)
                decoded = {"reference": reference}
                for bandwidth in bandwidths:
                    coded = CodecSystem(generator, bandwidth, "validation")(reference, rate)
                    decoded[f"{bandwidth:g}kbps"] = coded.audio
                    result = score(
                        reference.numpy(), coded.audio.numpy(), rate, entry.domain, names
                    )
                    for name, value in result.values.items():
                        scores.setdefault((name, bandwidth), []).append(value)
                    if bandwidth == bandwidths[-1]:
                        for level, codes in enumerate(coded.codes):
                            counts[level] += torch.bincount(codes, minlength=counts.shape[1])
                if index in shown:
                    examples.append((Path(entry.path).stem, rate, decoded))
        values = {}
        for (name, bandwidth), found in scores.items():
            mean = mean_or_none(found)
            if mean is not None:
                values[f"{PREFIX}/{name}@{bandwidth:g}kbps"] = mean
            if name == "si_snr":  # the files it left out: their reference is silent
                values[f"{PREFIX}/si_snr_silent@{bandwidth:g}kbps"] = float(found.count(None))
        for level, histogram in enumerate(counts):
            values[f"{PREFIX}/codebook_usage/level_{level}"] = float((histogram > 0).float().mean())
            values[f"{PREFIX}/codebook_perplexity/level_{level}"] = float(perplexity(histogram))
        self._write_examples(pl_module, step, examples)
        return values

    def _write_examples(
        self, pl_module, step: int, examples: list[tuple[str, int, dict[str, torch.Tensor]]]
    ) -> None:
        import soundfile as sf

        folder = self.output_dir / f"step_{step:07d}"
        audio_paths, image_paths = [], []
        for stem, rate, decoded in examples:
            folder.mkdir(parents=True, exist_ok=True)
            for name, audio in decoded.items():
                path = folder / f"{stem}_{name}.wav"
                sf.write(path, audio.clamp(-1, 1).T.numpy(), rate, subtype="PCM_16")
                audio_paths.append(path)
            image_paths.append(spectrogram_image(decoded, rate, folder / f"{stem}_mel.png"))
        logger = pl_module.logger
        if isinstance(logger, WandbLogger) and examples:
            rates = [int(rate) for _, rate, decoded in examples for _ in decoded]
            logger.log_audio(
                key=f"{PREFIX}/examples",
                audios=[str(p) for p in audio_paths],
                caption=[p.stem for p in audio_paths],
                sample_rate=rates,
                step=step,
            )
            logger.log_image(
                key=f"{PREFIX}/spectrograms",
                images=[str(p) for p in image_paths],
                caption=[p.stem for p in image_paths],
                step=step,
            )


def spectrogram_image(clips: dict[str, torch.Tensor], sample_rate: int, path: Path) -> Path:
    """One log-mel spectrogram panel per clip (`[channels, time]`, channels averaged), stacked
    in a PNG at `path`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mel = MelDistance(sample_rate)
    figure, axes = plt.subplots(len(clips), 1, figsize=(7, 1.6 * len(clips)), squeeze=False)
    for axis, (name, audio) in zip(axes[:, 0], clips.items(), strict=True):
        spectrogram = mel.spectrogram(audio.mean(0, keepdim=True)[None])[0, 0]
        axis.imshow(np.log10(spectrogram.numpy() + 1e-5), origin="lower", aspect="auto")
        axis.set_ylabel(name)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path
