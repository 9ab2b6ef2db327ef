"""Training the entropy model (paper §3.3) as a LightningModule, on the codes of a frozen codec
computed on the fly from the codec's own data pipeline, or read from code shards
(`encodec_train.data.code_shards`, written by `python -m encodec_train.encode_dataset`).

Each step draws one of the bandwidths (its number of codebooks K) and minimises the
cross-entropy of the first K codebooks' codes, in bits per frame; its sum over the levels,
times the frame rate, is the bitrate that range coding with the model reaches.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from safetensors import safe_open
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from encodec_train.compression.models import load_codec
from encodec_train.data.code_shards import CodeShardDataset, read_shard_header, shard_paths
from encodec_train.data.datamodule import AudioDataModule, ResumableDataLoader
from encodec_train.model import EncodecModel
from encodec_train.model.bandwidth import bits_per_code, codebooks_for_bandwidth
from encodec_train.model.lm import EntropyModel, bits_per_frame
from encodec_train.training.run_module import TrainingRunModule

LMFactory = Callable[..., EntropyModel]
OptimizerFactory = Callable[[Any], torch.optim.Optimizer]


class CodeSource:
    """What the codes are: their frame rate, codebook size, bandwidths offered (kbps) and
    codebooks at each, and, for codes computed on the fly, the frozen codec."""

    def __init__(
        self,
        frame_rate: int,
        codebook_size: int,
        bandwidths: Sequence[float],
        codec: EncodecModel | None = None,
    ) -> None:
        self.frame_rate = frame_rate
        self.codebook_size = codebook_size
        self.bandwidths = sorted(float(b) for b in bandwidths)
        self.codebooks = [
            codebooks_for_bandwidth(b, codebook_size, frame_rate) for b in self.bandwidths
        ]
        self.codec = codec

    @classmethod
    def from_codec(cls, codec: EncodecModel, bandwidths: Sequence[float] | None) -> CodeSource:
        """The codes of `codec` (its fast frozen copy encodes them), at `bandwidths` (None:
        its target bandwidths)."""
        frozen = codec.for_inference()
        bandwidths = bandwidths or codec.target_bandwidths
        for bandwidth in bandwidths:
            codec.num_codebooks(bandwidth)  # refuses one the codec does not offer
        return cls(codec.frame_rate, codec.quantizer.codebook_size, bandwidths, frozen)

    @classmethod
    def from_shards(
        cls, metadata: dict[str, Any], bandwidths: Sequence[float] | None
    ) -> CodeSource:
        """The codes of a shard dataset, at `bandwidths` up to the shards' own (the codes of
        a lower bandwidth are the first codebooks of a residual VQ's codes; None: the shards'
        bandwidth alone)."""
        source = cls(
            metadata["frame_rate"], metadata["codebook_size"], bandwidths or [metadata["bandwidth"]]
        )
        if source.codebooks[-1] > metadata["n_q"]:
            raise ValueError(
                f"module.bandwidths={list(bandwidths)}: the shards hold {metadata['n_q']} "
                f"codebooks ({metadata['bandwidth']} kbps), fewer than {source.bandwidths[-1]} "
                "kbps needs"
            )
        return source

    def raw_kbps(self, codebooks: int) -> float:
        """The bitrate of `codebooks` codebooks bit-packed (no entropy model)."""
        return codebooks * bits_per_code(self.codebook_size) * self.frame_rate / 1000


class EntropyLMModule(TrainingRunModule):
    """Trains an `EntropyModel` on a codec's codes.

    Args:
        lm: builds the model given `n_q` and `codebook_size` (Hydra `_partial_: true`), which
            come from the codes.
        optimizer: factory `params -> Optimizer` (Hydra `_partial_: true`).
        codec_checkpoint: the frozen codec whose codes are learnt from audio batches (one of
            our checkpoints or model files, an official `.th`, a Hugging Face folder); None
            when the data module gives code shards.
        bandwidths: the bandwidths (kbps) that steps draw from, uniformly (None: the codec's
            target bandwidths, or the shards' bandwidth); with shards, any up to theirs.
        seed: seeds the bandwidth draws.
        grad_clip: max gradient norm (None: no clipping).
        log_every_n_steps: how often the running means of the metrics are logged.
    """

    throughput_unit = "sequences"
    checkpoint_loader = "encodec_train.compression.models.load_entropy_model"
    """What loads the model from this module's checkpoints (the run summary says it)."""

    def __init__(
        self,
        lm: LMFactory,
        optimizer: OptimizerFactory,
        *,
        codec_checkpoint: str | None,
        bandwidths: Sequence[float] | None,
        seed: int,
        grad_clip: float | None,
        log_every_n_steps: int,
    ) -> None:
        super().__init__(seed, log_every_n_steps)
        self.lm_factory = lm
        self.optimizer_factory = optimizer
        self.codec_checkpoint = codec_checkpoint
        self.bandwidths = None if bandwidths is None else list(bandwidths)
        self.grad_clip = grad_clip
        self.source: CodeSource | None = None
        self.lm: EntropyModel | None = None
        if codec_checkpoint is not None:
            self._build(CodeSource.from_codec(load_codec(codec_checkpoint), self.bandwidths))

    def _build(self, source: CodeSource) -> None:
        self.source = source
        self.lm = self.lm_factory(n_q=source.codebooks[-1], codebook_size=source.codebook_size)

    def setup(self, stage: str) -> None:
        """With code shards, the model's size comes from the shards' metadata; with audio,
        the data must be at the codec's rate and channels."""
        datamodule = self.trainer.datamodule
        if self.codec is not None and isinstance(datamodule, AudioDataModule):
            reader, codec = datamodule.reader, self.codec
            if (reader.sample_rate, reader.channels) != (codec.sample_rate, codec.channels):
                raise ValueError(
                    f"the data is read at {reader.sample_rate} Hz, {reader.channels} channel(s); "
                    f"the codec {self.codec_checkpoint} takes {codec.sample_rate} Hz, "
                    f"{codec.channels}: choose the recipe of its model (24khz_lm, 48khz_lm)"
                )
        if self.lm is None:
            self.build_for(datamodule)

    def build_for(self, datamodule: L.LightningDataModule) -> None:
        """Without a codec, build the model for the code shards `datamodule` gives (their
        metadata sizes it); any other data module is refused."""
        if not isinstance(datamodule, CodeShardDataModule):
            raise ValueError(
                "module.codec_checkpoint is null, so the codes must come from code shards "
                f"(data: code_shards); the data module is {type(datamodule).__name__}"
            )
        self._build(CodeSource.from_shards(datamodule.metadata, self.bandwidths))

    @property
    def codec(self) -> EncodecModel | None:
        # Kept out of the module's children: the frozen codec is not trained nor saved.
        return None if self.source is None else self.source.codec

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.lm.parameters())

    def on_fit_start(self) -> None:
        if self.codec is not None:
            self.codec.to(self.device)

    on_validation_start = on_fit_start

    # -- codes --------------------------------------------------------------------------

    @torch.no_grad()
    def codes_of(self, batch: dict[str, torch.Tensor] | torch.Tensor):
        """(codes [B, n_q, T], frame mask [B, T] or None) of a batch: audio encoded by the
        frozen codec at its largest bandwidth, or a batch of code windows.

        A chunked codec (48 kHz) gives the codes of its first chunk: a training segment is
        one chunk (the 10 ms tail chunk that the 1% overlap adds is left out)."""
        if isinstance(batch, torch.Tensor):
            return batch, None
        codec = self.codec
        frame = codec.encode(batch["audio"])[0]
        codes = frame.codes
        mask = batch["mask"][:, 0, :: codec.hop_length][:, : codes.shape[-1]]
        return codes, mask

    def draw_codebooks(self) -> int:
        """This step's codebooks: one of the bandwidths, uniformly (module generator)."""
        index = int(torch.randint(len(self.source.codebooks), (1,), generator=self.rng))
        return self.source.codebooks[index]

    # -- training -----------------------------------------------------------------------

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        codes, mask = self.codes_of(batch)
        levels = self.draw_codebooks()
        codes = codes[:, :levels]
        per_level = bits_per_frame(self.lm.logits(codes), codes, mask)
        loss = per_level.sum()
        metrics = {
            "bits_per_frame": loss.detach(),
            "kbps": loss.detach() * self.source.frame_rate / 1000,
            "codebooks": torch.tensor(float(levels)),
        }
        metrics.update({f"bits_level_{k}": v.detach() for k, v in enumerate(per_level)})
        self.train_metrics.add(metrics, "train/")
        if self.global_step % self.log_every_n_steps == 0:
            self._log_running_means(codes.shape[0])
        return loss

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        if self.grad_clip is not None:
            self.clip_gradients(optimizer, self.grad_clip, "norm")

    # -- validation ---------------------------------------------------------------------

    def validation_step(self, batch, batch_idx: int) -> None:
        """Bits per frame and kbps with the model at every bandwidth, beside the bit-packed
        kbps, and the reduction in percent."""
        codes, mask = self.codes_of(batch)
        for bandwidth, levels in zip(self.source.bandwidths, self.source.codebooks, strict=True):
            subset = codes[:, :levels]
            bits = bits_per_frame(self.lm.logits(subset), subset, mask).sum()
            kbps = bits * self.source.frame_rate / 1000
            raw = self.source.raw_kbps(levels)
            values = {"bits_per_frame": bits, "kbps": kbps, "reduction": 100 * (1 - kbps / raw)}
            for name, value in values.items():
                self.log(
                    f"valid/{name}@{bandwidth:g}kbps",
                    value,
                    batch_size=codes.shape[0],
                    sync_dist=True,
                )

    # -- checkpoints --------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The model config (so `EntropyModel.from_checkpoint` needs nothing else) and the
        code source, beside the W&B run id and the random streams."""
        super().on_save_checkpoint(checkpoint)
        checkpoint["lm_config"] = self.lm.config
        checkpoint["codec_checkpoint"] = self.codec_checkpoint
        checkpoint["frame_rate"] = self.source.frame_rate


class ShuffledWindows(IterableDataset):
    """Endless batches of `windows`, reshuffled every pass; batch `b` is a pure function of
    `(seed, b)`, so the stream resumes at any batch (`start`) whatever the number of workers
    (worker w of W builds batches start + w, start + w + W, ...).

    Yields LongTensor [batch_size, n_q, frames].
    """

    def __init__(self, windows: CodeShardDataset, batch_size: int, seed: int) -> None:
        super().__init__()
        if len(windows) < batch_size:
            raise ValueError(f"{len(windows)} windows, fewer than one batch of {batch_size}")
        self.windows, self.batch_size, self.seed = windows, batch_size, seed
        self.per_pass = len(windows) // batch_size
        self.start = 0
        """First batch index; set before iterating to resume."""

    def __iter__(self):
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        order, order_pass = None, None
        for batch in itertools.islice(itertools.count(self.start), worker, None, workers):
            epoch, index = divmod(batch, self.per_pass)
            if epoch != order_pass:
                order = np.random.default_rng([self.seed, epoch]).permutation(len(self.windows))
                order_pass = epoch
            chosen = order[index * self.batch_size : (index + 1) * self.batch_size]
            yield torch.stack([self.windows[int(i)] for i in chosen])


class CodeShardDataModule(L.LightningDataModule):
    """Windows of pre-extracted codes (`CodeShardDataset`) in shuffled batches that resume
    mid-epoch (the batches taken are counted into the checkpoint).

    Args:
        train_root: folder of the training shards.
        valid_root: folder of held-out shards (None: no validation).
        segment_seconds: window length, in seconds of audio (frames at the shards' rate).
        batch_size: windows per batch.
        num_workers: DataLoader workers.
        seed: the window offsets and the shuffling.
        valid_batches: validation batches at most.
    """

    def __init__(
        self,
        train_root: str,
        valid_root: str | None,
        segment_seconds: float,
        batch_size: int,
        num_workers: int,
        seed: int,
        valid_batches: int,
    ) -> None:
        super().__init__()
        paths = shard_paths(Path(train_root))
        if not paths:
            raise FileNotFoundError(f"data.train_root={train_root}: no code shards there")
        with safe_open(str(paths[0]), framework="pt") as handle:
            _, metadata = read_shard_header(handle, paths[0])
        frames = max(1, round(segment_seconds * metadata["frame_rate"]))
        self.train = CodeShardDataset(Path(train_root), frames, seed)
        self.valid = None if valid_root is None else CodeShardDataset(Path(valid_root), frames)
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.valid_batches = valid_batches
        self.metadata = self.train.metadata
        self.batches_consumed = 0

    def train_dataloader(self) -> ResumableDataLoader:
        return ResumableDataLoader(
            ShuffledWindows(self.train, self.batch_size, self.seed),
            lambda: self.batches_consumed,
            num_workers=self.num_workers,
        )

    def val_dataloader(self) -> DataLoader | list:
        if self.valid is None:
            return []
        count = min(len(self.valid), self.valid_batches * self.batch_size)
        subset = torch.utils.data.Subset(self.valid, range(count))
        return DataLoader(subset, batch_size=self.batch_size, num_workers=self.num_workers)

    def on_before_batch_transfer(self, batch: torch.Tensor, dataloader_idx: int) -> torch.Tensor:
        if self.trainer.training:
            self.batches_consumed += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"batches_consumed": self.batches_consumed}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.batches_consumed = state_dict["batches_consumed"]
