"""Code shards: the codes of many audio files at one bandwidth, in one safetensors file.

`python -m encodec_train.encode_dataset` writes them; the entropy model and downstream
language models train on windows of them through `CodeShardDataset`.

A shard holds one int16 tensor `codes/<i>` of shape [n_q, frames] per audio file, and in its
safetensors metadata (string → string) two JSON values: `sources`, the audio paths in item
order, and `metadata`, the encoding settings (`SHARD_METADATA_KEYS`) shared by every item.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

SHARD_METADATA_KEYS = (
    "sample_rate",
    "frame_rate",
    "bandwidth",
    "n_q",
    "codebook_size",
    "checkpoint",
)
"""What a shard's metadata must say: how the codes were made and how to read them."""
SHARD_PATTERN = "shard-*.safetensors"
CODES_DTYPE = torch.int16


def _tensor_name(index: int) -> str:
    return f"codes/{index:06d}"


def _check_metadata(metadata: Mapping[str, Any], where: str) -> dict[str, Any]:
    missing = [key for key in SHARD_METADATA_KEYS if key not in metadata]
    if missing:
        raise ValueError(f"{where}: shard metadata lacks {missing} (needs {SHARD_METADATA_KEYS})")
    return dict(metadata)


def write_code_shard(
    path: Path, items: Sequence[tuple[str, torch.Tensor]], metadata: Mapping[str, Any]
) -> None:
    """Write `items` (source audio path, int16 codes [n_q, frames]) and `metadata` to one
    safetensors file at `path`.

    The file appears whole or not at all (written beside it, then renamed), so an interrupted
    encoding run never leaves a truncated shard that a resumed run would take as done.
    """
    path = Path(path)
    metadata = _check_metadata(metadata, str(path))
    tensors = {}
    for index, (source, codes) in enumerate(items):
        where = f"{path}: item {index} ({source})"
        if codes.dtype != CODES_DTYPE or codes.dim() != 2:
            raise ValueError(
                f"{where}: codes must be int16 [n_q, frames], got {codes.dtype} "
                f"{tuple(codes.shape)}"
            )
        if codes.shape[0] != metadata["n_q"]:
            raise ValueError(
                f"{where}: {codes.shape[0]} codebooks but metadata n_q={metadata['n_q']}"
            )
        if (
            codes.numel()
            and not 0 <= int(codes.min()) <= int(codes.max()) < metadata["codebook_size"]
        ):
            raise ValueError(
                f"{where}: codes outside [0, {metadata['codebook_size']}) "
                f"(min {int(codes.min())}, max {int(codes.max())})"
            )
        tensors[_tensor_name(index)] = codes.contiguous()
    header = {
        "sources": json.dumps([source for source, _ in items]),
        "metadata": json.dumps(metadata),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    save_file(tensors, str(partial), metadata=header)
    os.replace(partial, path)


def read_shard_header(handle: Any, path: Path) -> tuple[list[str], dict[str, Any]]:
    """(source audio paths, checked encoding metadata) from the header of the shard at `path`,
    open as `handle` (`safetensors.safe_open`), without reading its codes."""
    header = handle.metadata() or {}
    if "sources" not in header or "metadata" not in header:
        raise ValueError(f"{path} is not a code shard (no 'sources'/'metadata' in its header)")
    sources = json.loads(header["sources"])
    return sources, _check_metadata(json.loads(header["metadata"]), str(path))


def read_code_shard(path: Path) -> tuple[list[tuple[str, torch.Tensor]], dict[str, Any]]:
    """The items (source audio path, int16 codes [n_q, frames]) and metadata of a shard."""
    path = Path(path)
    with safe_open(str(path), framework="pt") as handle:
        sources, metadata = read_shard_header(handle, path)
        items = [(source, handle.get_tensor(_tensor_name(i))) for i, source in enumerate(sources)]
    return items, metadata


def shard_paths(root: Path) -> list[Path]:
    """The shards in `root`, in name order."""
    return sorted(Path(root).glob(SHARD_PATTERN))


class CodeShardDataset(torch.utils.data.Dataset):
    """Fixed windows of `frames` frames over the items of every shard in `root`.

    Each item of `f` frames gives floor(f / frames) windows side by side, starting at an
    offset drawn once from `seed` in [0, f mod frames], so a different seed shows other
    window boundaries while a given seed always gives the same dataset. Items shorter than
    `frames` give no window. Every shard must share the same metadata apart from `checkpoint`
    (`metadata` is the first shard's). Windows are read from the files on access (memory-mapped
    by safetensors), so the dataset holds only its index.

    Args:
        root: folder of `shard-*.safetensors` files.
        frames: window length in frames.
        seed: draws the windows' offsets.
    """

    def __init__(self, root: Path, frames: int, seed: int = 0) -> None:
        if frames < 1:
            raise ValueError(f"frames={frames}: a window needs at least one frame")
        self.root = Path(root)
        self.frames = frames
        self.paths = shard_paths(self.root)
        if not self.paths:
            raise FileNotFoundError(f"no {SHARD_PATTERN} files in {self.root}")
        rng = np.random.default_rng(seed)
        self.metadata: dict[str, Any] = {}
        windows: list[tuple[int, int, int]] = []  # (shard, item, start frame)
        for shard, path in enumerate(self.paths):
            with safe_open(str(path), framework="pt") as handle:
                sources, metadata = read_shard_header(handle, path)
                self._check_same(metadata, path)
                for item in range(len(sources)):
                    length = handle.get_slice(_tensor_name(item)).get_shape()[1]
                    count = length // frames
                    offset = int(rng.integers(0, length - count * frames + 1)) if count else 0
                    windows += [(shard, item, offset + w * frames) for w in range(count)]
        if not windows:
            raise ValueError(f"{self.root}: no item has {frames} frames or more")
        self.windows = np.asarray(windows, dtype=np.int64)

    def _check_same(self, metadata: dict[str, Any], path: Path) -> None:
        if not self.metadata:
            self.metadata = metadata
            return
        for key in SHARD_METADATA_KEYS:
            if key != "checkpoint" and metadata[key] != self.metadata[key]:
                raise ValueError(
                    f"{path}: {key}={metadata[key]!r} differs from {self.paths[0]}'s "
                    f"{self.metadata[key]!r}; a dataset reads shards of one encoding"
                )

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> torch.Tensor:
        """LongTensor [n_q, frames]: window `index`."""
        shard, item, start = (int(v) for v in self.windows[index])
        with safe_open(str(self.paths[shard]), framework="pt") as handle:
            window = handle.get_slice(_tensor_name(item))[:, start : start + self.frames]
        return window.long()
