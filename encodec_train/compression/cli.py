"""The commands `python -m encodec_train.compress in.wav out.ecdc --checkpoint ... [--lm ...]`
and `python -m encodec_train.decompress in.ecdc out.wav`.

The codec checkpoint can be one of ours, an official `.th` or a Hugging Face folder; the
entropy model one of our LM checkpoints or model files, or the official one. A compressed
file names both (absolute paths), so decompressing needs neither option on the same machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import soundfile as sf
import torch
import torchaudio.functional as AF

from encodec_train.compression.container import EcdcError, read_header
from encodec_train.compression.ecdc import CODERS, SEGMENT_SECONDS, compress, decompress
from encodec_train.compression.models import (
    holds_entropy_model,
    load_codec,
    load_entropy_model,
)
from encodec_train.model import CheckpointMismatchError, EncodecModel
from encodec_train.model.lm import EntropyModel
from encodec_train.user_errors import run_or_exit

ERRORS = (EcdcError, FileNotFoundError, CheckpointMismatchError, ValueError, sf.LibsndfileError)


def read_audio(path: Path, model: EncodecModel) -> torch.Tensor:
    """[channels, time] at the model's rate and channels (resampled; mono ↔ stereo by
    averaging or copying)."""
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    audio = torch.from_numpy(data.T.copy())
    if audio.shape[0] != model.channels:
        if model.channels == 1:
            audio = audio.mean(dim=0, keepdim=True)
        elif audio.shape[0] == 1:
            audio = audio.expand(model.channels, -1)
        else:
            raise ValueError(f"{path}: {audio.shape[0]} channels, the codec takes {model.channels}")
    if rate != model.sample_rate:
        audio = AF.resample(audio, rate, model.sample_rate)
    if audio.shape[-1] == 0:
        raise ValueError(f"{path} holds no audio")
    return audio.contiguous()


def _codec(path: Path) -> EncodecModel:
    """The codec at `path`; an entropy model there is named as one (it is for --lm)."""
    try:
        return load_codec(path)
    except CheckpointMismatchError:
        if holds_entropy_model(path):
            raise CheckpointMismatchError(
                f"{path} is an entropy model's checkpoint: --checkpoint takes the codec, "
                "--lm the entropy model"
            ) from None
        raise


def compress_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m encodec_train.compress", description="Audio file → .ecdc file."
    )
    parser.add_argument("input", type=Path, help="audio file (any format soundfile reads)")
    parser.add_argument("output", type=Path, help="the .ecdc file to write")
    parser.add_argument("--checkpoint", type=Path, required=True, help="the codec")
    parser.add_argument(
        "--bandwidth", type=float, default=None, help="kbps (default: the codec's largest)"
    )
    parser.add_argument("--lm", type=Path, default=None, help="entropy model (range coding)")
    parser.add_argument(
        "--coder",
        choices=CODERS,
        default="range",
        help="with --lm: our deterministic range coder, or the official package's arithmetic "
        "coder (files the official reader decodes, on the machine that wrote them)",
    )
    parser.add_argument(
        "--lm-segment",
        type=float,
        default=None,
        metavar="SECONDS",
        help="with --lm and our coder: restart the entropy model every SECONDS, so that "
        f"decoding runs the segments side by side (default {SEGMENT_SECONDS:g}; 0: once per "
        "chunk)",
    )
    args = parser.parse_args(argv)
    if args.lm is None and (args.coder != "range" or args.lm_segment is not None):
        parser.error("--coder and --lm-segment choose how --lm codes the file: give --lm too")
    if args.coder == "official" and args.lm_segment is not None:
        parser.error("--lm-segment is for our range coder; the official coder restarts per chunk")
    segment = SEGMENT_SECONDS if args.lm_segment is None else args.lm_segment

    def run() -> None:
        model = _codec(args.checkpoint)
        lm = None if args.lm is None else load_entropy_model(args.lm, model.frame_rate)
        metadata = {"ckpt": str(args.checkpoint.resolve())}
        if args.lm is not None:
            metadata["lmckpt"] = str(args.lm.resolve())
        audio = read_audio(args.input, model)
        data = compress(model, audio, args.bandwidth, lm, metadata, args.coder, segment)
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_bytes(data)
        seconds = int(read_header(data, str(args.output))[1]["al"]) / model.sample_rate
        print(f"{args.output}: {len(data)} bytes, {8 * len(data) / seconds / 1000:.3f} kbps")

    run_or_exit(run, ERRORS)


def decompress_main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m encodec_train.decompress", description=".ecdc file → WAV file."
    )
    parser.add_argument("input", type=Path, help="the .ecdc file")
    parser.add_argument("output", type=Path, help="the audio file to write (WAV, 16-bit)")
    parser.add_argument(
        "--checkpoint", type=Path, default=None, help="the codec (default: the file's)"
    )
    parser.add_argument(
        "--lm", type=Path, default=None, help="the entropy model (default: the file's)"
    )
    args = parser.parse_args(argv)

    def run() -> None:
        data = args.input.read_bytes()
        _, metadata, _ = read_header(data, str(args.input))
        model = _codec(_named(args.checkpoint, metadata, "ckpt", "--checkpoint", args.input))
        lm: EntropyModel | None = None
        if metadata["lm"]:
            path = _named(args.lm, metadata, "lmckpt", "--lm", args.input)
            lm = load_entropy_model(path, model.frame_rate)
        audio = decompress(data, model, lm, source=str(args.input))
        args.output.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(args.output), audio.clamp(-1, 1).T.numpy(), model.sample_rate)
        print(
            f"{args.output}: {audio.shape[-1] / model.sample_rate:.2f} s at {model.sample_rate} Hz"
        )

    run_or_exit(run, ERRORS)


def _named(given: Path | None, metadata: dict, key: str, option: str, source: Path) -> Path:
    """The checkpoint given on the command line, else the one the file names."""
    if given is not None:
        return given
    if key not in metadata:
        raise ValueError(f"{source} does not name its {option[2:]}: pass {option}")
    path = Path(metadata[key])
    if not path.exists():
        raise FileNotFoundError(
            f"{source} was written with {path}, which does not exist: pass {option}"
        )
    return path
