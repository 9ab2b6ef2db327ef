"""The systems an evaluation compares: our codec at a bandwidth, and ffmpeg codecs at a bitrate
(`baselines.py`). Each maps a reference clip to its decoded version at the clip's own rate and
channels, with the bitrate it really spent, so every system is scored against the same
reference."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
import torchaudio.functional as AF
from torch import Tensor

from encodec_train.convert import load_codec  # noqa: F401 - loads every system's codec
from encodec_train.model import EncodecModel
from encodec_train.model.bandwidth import bandwidth_per_codebook


@dataclass(frozen=True)
class Coded:
    """A decoded clip `[channels, time]`, the kbps its bitstream cost, and our codec's codes
    (`[n_q, frames]`, the chunks' frames in a row; None for other codecs)."""

    audio: Tensor
    kbps: float
    codes: Tensor | None = None


class System(Protocol):
    """One codec at one setting: `label` names the codec, `setting` the requested kbps."""

    label: str
    setting: float

    def __call__(self, audio: Tensor, sample_rate: int) -> Coded: ...


def convert(audio: Tensor, rate: int, channels: int, new_rate: int, new_channels: int) -> Tensor:
    """`audio` [channels, time] at `rate` to `new_channels` (mean to mono, repeat to more) at
    `new_rate` (torchaudio's sinc resampling)."""
    if channels != new_channels:
        audio = audio.mean(0, keepdim=True) if new_channels == 1 else audio.expand(new_channels, -1)
    if rate != new_rate:
        audio = AF.resample(audio, rate, new_rate)
    return audio


def match_length(audio: Tensor, length: int) -> Tensor:
    """Crop or zero-pad the last axis of `audio` to `length` samples."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return torch.nn.functional.pad(audio, (0, length - audio.shape[-1]))


class CodecSystem:
    """Our `EncodecModel` at `bandwidth` kbps; its bitrate is the codes' nominal rate
    (codebooks × log2(codebook size) bits × frame rate), without entropy coding."""

    def __init__(self, model: EncodecModel, bandwidth: float, label: str) -> None:
        self.model = model
        self.setting = float(bandwidth)
        self.label = label
        per_codebook = bandwidth_per_codebook(model.quantizer.codebook_size, model.frame_rate)
        self.kbps = model.num_codebooks(bandwidth) * per_codebook

    @torch.no_grad()
    def __call__(self, audio: Tensor, sample_rate: int) -> Coded:
        model = self.model
        device = next(model.parameters()).device
        x = convert(audio, sample_rate, audio.shape[0], model.sample_rate, model.channels)
        output = model(x[None].float().to(device), self.setting)
        decoded = output.audio[0].float().cpu()
        back = convert(decoded, model.sample_rate, model.channels, sample_rate, audio.shape[0])
        codes = torch.cat([frame.codes[0] for frame in output.frames], dim=-1).cpu()
        return Coded(match_length(back, audio.shape[-1]), self.kbps, codes)


def find_checkpoints(path: str | Path) -> list[tuple[str, Path]]:
    """(label, checkpoint) pairs for `path`: a checkpoint file (ours `.ckpt`/`.pt`, or an
    official `.th`), a run directory (its `checkpoints/last.ckpt`), a Hugging Face model
    directory (`config.json`), or a sweep directory holding such runs (one pair each, found
    recursively, labelled by their path below it)."""
    path = Path(path)
    if path.is_file():
        run = path.parent.parent if path.parent.name == "checkpoints" else None
        return [(run.name if run is not None else path.stem, path)]
    if not path.is_dir():
        raise FileNotFoundError(f"checkpoint {path}: no such file or directory")
    if (path / "config.json").is_file():
        return [(path.name, path)]
    if (path / "checkpoints" / "last.ckpt").is_file():
        return [(path.name, path / "checkpoints" / "last.ckpt")]
    runs = sorted(p.parent.parent for p in path.rglob("checkpoints/last.ckpt"))
    if not runs:
        raise FileNotFoundError(
            f"checkpoint {path}: a directory with no checkpoints/last.ckpt, no config.json "
            "(Hugging Face) and no run below it"
        )
    return [
        (f"{path.name}/{run.relative_to(path)}", run / "checkpoints" / "last.ckpt") for run in runs
    ]
