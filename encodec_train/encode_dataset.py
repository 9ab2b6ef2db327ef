"""Encode every file of a manifest at one bandwidth into code shards (what the entropy model
and language models on the codes train on).

    python -m encodec_train.encode_dataset MANIFEST CHECKPOINT OUT_DIR --bandwidth 6

The manifest's rows are cut, in order, into shards of `--files-per-shard` files, written as
`OUT_DIR/shard-<index>.safetensors` (`encodec_train.data.code_shards`). A shard already on
disk is skipped, so a rerun after an interruption continues where it stopped; the settings of
the first run (`OUT_DIR/encoding.json`) must match. `--workers` processes encode shards side
by side, each with its own copy of the model.

Each file is read whole, converted to the model's rate and channels, and zero-padded to a
whole number of frames; its codes are `model.encode` of that padded audio (the codes of
every chunk, in order, for a chunked model). With a causal model, files of at least the
model's start-up length are encoded `--batch-files` at a time, zero-padded to the longest
(causality makes the padding invisible to each file's own frames); the others one by one.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import soundfile as sf
import torch
import torch.nn.functional as F
from tqdm import tqdm

from encodec_train.data.code_shards import CODES_DTYPE, write_code_shard
from encodec_train.data.manifest import Manifest, ManifestEntry
from encodec_train.evaluation.systems import convert, load_codec
from encodec_train.model import EncodecModel
from encodec_train.model.streaming import check_streamable

SETTINGS_FILE = "encoding.json"


@dataclass(frozen=True)
class EncodingSettings:
    """What decides the shards' contents; a resumed run must use the same (paths absolute, so
    a rerun naming the same files by relative or absolute paths is the same run)."""

    manifest: str
    files: int
    checkpoint: str
    bandwidth: float
    files_per_shard: int


def read_audio(entry: ManifestEntry, model: EncodecModel) -> torch.Tensor:
    """The whole file as float32 [channels, time] at the model's rate and channels."""
    try:
        data, rate = sf.read(entry.path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as error:
        raise ValueError(f"cannot read audio file {entry.path}: {error}") from error
    if data.shape[0] == 0:
        raise ValueError(f"audio file {entry.path} is empty")
    audio = torch.from_numpy(data.T.copy())
    return convert(audio, rate, audio.shape[0], model.sample_rate, model.channels)


def batch_start_frames(model: EncodecModel) -> int | None:
    """The fewest frames a file needs to be encoded in a zero-padded batch with the same codes
    as alone (the start-up of a causal model: before it, left padding mirrors frames that the
    batch's padding would change); None when the model cannot be batched so (not causal)."""
    try:
        check_streamable(model)
    except ValueError:
        return None
    return -(-model.streaming_latency().first_codes_samples // model.hop_length)


def encode_files(
    model: EncodecModel, audios: Sequence[torch.Tensor], bandwidth: float, batch_files: int
) -> list[torch.Tensor]:
    """Codes [n_q, frames] of each audio [channels, time], frames = ceil(time / hop)."""
    hop = model.hop_length
    frames = [-(-audio.shape[-1] // hop) for audio in audios]
    start = batch_start_frames(model)
    codes: list[torch.Tensor | None] = [None] * len(audios)
    batchable = [i for i in range(len(audios)) if start is not None and frames[i] >= start]
    batchable.sort(key=lambda i: frames[i])  # similar lengths together: less padding
    alone = [[i] for i in sorted(set(range(len(audios))) - set(batchable))]
    batches = [batchable[b : b + batch_files] for b in range(0, len(batchable), batch_files)]
    for batch in batches + alone:
        length = max(frames[i] for i in batch) * hop
        x = torch.stack([F.pad(audios[i], (0, length - audios[i].shape[-1])) for i in batch])
        param = next(model.parameters())
        encoded = model.encode(x.to(param.device, param.dtype), bandwidth)
        joined = torch.cat([frame.codes for frame in encoded], dim=-1).cpu()
        for row, i in enumerate(batch):
            codes[i] = joined[row, :, : frames[i]]
    return codes


def shard_metadata(model: EncodecModel, settings: EncodingSettings) -> dict:
    return {
        "sample_rate": model.sample_rate,
        "frame_rate": model.frame_rate,
        "bandwidth": settings.bandwidth,
        "n_q": model.num_codebooks(settings.bandwidth),
        "codebook_size": model.quantizer.codebook_size,
        "checkpoint": settings.checkpoint,
        "padding": "each file zero-padded to whole frames",
    }


_worker_model: EncodecModel | None = None


def _load(checkpoint: str, device: str, threads: int) -> EncodecModel:
    torch.set_num_threads(threads)
    return load_codec(checkpoint).to(device).for_inference()


def _init_worker(checkpoint: str, device: str, threads: int) -> None:
    global _worker_model
    _worker_model = _load(checkpoint, device, threads)


def _encode_shard(
    model: EncodecModel,
    path: Path,
    entries: list[ManifestEntry],
    settings: EncodingSettings,
    batch_files: int,
) -> int:
    audios = [read_audio(entry, model) for entry in entries]
    with torch.inference_mode():
        codes = encode_files(model, audios, settings.bandwidth, batch_files)
    items = [(e.path, c.to(CODES_DTYPE)) for e, c in zip(entries, codes, strict=True)]
    write_code_shard(path, items, shard_metadata(model, settings))
    return len(entries)


def _encode_shard_in_worker(job: tuple) -> int:
    return _encode_shard(_worker_model, *job)


def _check_settings(out_dir: Path, settings: EncodingSettings) -> None:
    """Record the settings on the first run; refuse a rerun with others."""
    path = out_dir / SETTINGS_FILE
    if path.is_file():
        recorded = json.loads(path.read_text())
        if recorded != asdict(settings):
            differ = {
                k: (recorded.get(k), v) for k, v in asdict(settings).items() if recorded.get(k) != v
            }
            raise ValueError(
                f"{out_dir} holds shards of another encoding (recorded vs now: {differ}); "
                "use another output folder"
            )
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(settings), indent=2) + "\n")


def encode_dataset(
    manifest: Path,
    checkpoint: Path,
    out_dir: Path,
    bandwidth: float,
    files_per_shard: int = 256,
    batch_files: int = 16,
    workers: int = 0,
    threads: int = 1,
    device: str = "cpu",
    progress: bool = True,
) -> list[Path]:
    """Write the shards of `manifest` not yet in `out_dir`; return every shard's path.

    `workers` = 0 encodes in this process; otherwise that many processes (each with
    `threads` torch threads) take whole shards.
    """
    if files_per_shard < 1 or batch_files < 1:
        raise ValueError("--files-per-shard and --batch-files must be at least 1")
    rows = Manifest.load(manifest)
    entries = list(rows)
    if not entries:
        raise ValueError(f"manifest {manifest} has no rows")
    settings = EncodingSettings(
        str(Path(manifest).resolve()),
        len(entries),
        str(Path(checkpoint).resolve()),
        float(bandwidth),
        files_per_shard,
    )
    model = _load(str(checkpoint), device, threads)
    model.num_codebooks(bandwidth)  # refuses a bandwidth the model does not offer, up front
    _check_settings(out_dir, settings)
    shards = [
        (out_dir / f"shard-{i:06d}.safetensors", entries[start : start + files_per_shard])
        for i, start in enumerate(range(0, len(entries), files_per_shard))
    ]
    todo = [(path, chunk, settings, batch_files) for path, chunk in shards if not path.exists()]
    done = len(entries) - sum(len(job[1]) for job in todo)
    with tqdm(total=len(entries), initial=done, unit="file", disable=not progress) as bar:
        if workers == 0:
            for job in todo:
                bar.update(_encode_shard(model, *job))
        else:
            context = multiprocessing.get_context("spawn")
            init = (str(checkpoint), device, threads)
            with context.Pool(workers, initializer=_init_worker, initargs=init) as pool:
                for count in pool.imap_unordered(_encode_shard_in_worker, todo):
                    bar.update(count)
    return [path for path, _ in shards]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m encodec_train.encode_dataset", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("manifest", type=Path, help="JSON Lines (or Arrow) manifest of audio files")
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="our model file or training checkpoint, an official .th file or a Hugging Face folder",
    )
    parser.add_argument("out_dir", type=Path, help="folder for shard-*.safetensors")
    parser.add_argument("--bandwidth", type=float, required=True, help="kbps, one the model offers")
    parser.add_argument("--files-per-shard", type=int, default=256)
    parser.add_argument("--batch-files", type=int, default=16, help="files encoded together")
    parser.add_argument("--workers", type=int, default=0, help="encoding processes (0: this one)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    try:
        torch.empty(0, device=args.device)
    except (RuntimeError, AssertionError) as error:  # no such device type, no driver, no build
        parser.error(f"--device {args.device} is not usable here: {error}")
    try:
        paths = encode_dataset(
            args.manifest,
            args.checkpoint,
            args.out_dir,
            args.bandwidth,
            args.files_per_shard,
            args.batch_files,
            args.workers,
            args.threads,
            args.device,
        )
    except (ValueError, FileNotFoundError) as error:
        parser.exit(2, f"encode_dataset: error: {error}\n")
    print(f"{len(paths)} shard(s) in {args.out_dir}")


if __name__ == "__main__":
    main()
