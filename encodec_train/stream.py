"""Stream audio through a causal codec chunk by chunk, as a live encoder and decoder would.

    python -m encodec_train.stream CHECKPOINT INPUT.wav --bandwidth 6 --audio out.wav
    some-recorder | python -m encodec_train.stream CHECKPOINT - --codes codes.i16 --audio -

Reads a WAV (or any soundfile format) block by block, or raw PCM from stdin (`-`; format
`--raw-format`, at the model's rate), pushes each `--chunk-ms` chunk through the streaming
encoder and decoder (`EncodecModel.streaming`), and writes what each push returns at once:
codes to `--codes` (raw int16, frame after frame, n_q values each) and audio to `--audio` (a
WAV file, or `-` for raw PCM on stdout in the input's raw format). The output audio has the
input's length. On stderr: the real-time factor (compute time / audio time), the compute time
per chunk, and the model's algorithmic latency.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch

from encodec_train.evaluation.systems import convert, load_codec
from encodec_train.model import EncodecModel

RAW_FORMATS = {"float32": np.float32, "int16": np.int16}
INT16_SCALE = 32768.0


def wav_chunks(path: Path, model: EncodecModel, chunk: int) -> Iterator[np.ndarray]:
    """Blocks [time, channels] float32 of a file at the model's rate."""
    info = sf.info(str(path))
    if info.samplerate != model.sample_rate:
        raise ValueError(
            f"{path} is at {info.samplerate} Hz, the model streams {model.sample_rate} Hz; "
            "resample it first (a stream cannot resample chunk by chunk exactly)"
        )
    yield from sf.blocks(str(path), blocksize=chunk, dtype="float32", always_2d=True)


def raw_chunks(
    stream: BinaryIO, raw_format: str, channels: int, chunk: int
) -> Iterator[np.ndarray]:
    """Blocks [time, channels] float32 of interleaved raw PCM read from `stream`."""
    dtype = np.dtype(RAW_FORMATS[raw_format])
    frame_bytes = dtype.itemsize * channels
    pending = b""
    while True:
        data = stream.read(chunk * frame_bytes)
        if not data:
            break
        data = pending + data
        whole = len(data) - len(data) % frame_bytes
        data, pending = data[:whole], data[whole:]
        block = np.frombuffer(data, dtype=dtype).reshape(-1, channels).astype(np.float32)
        yield block / INT16_SCALE if raw_format == "int16" else block
    if pending:
        raise ValueError(f"stdin ended inside a sample frame ({len(pending)} stray bytes)")


def _to_model(block: np.ndarray, model: EncodecModel) -> torch.Tensor:
    """[time, channels] → [1, model channels, time] (mixed down to mono, or copied to stereo)."""
    audio = torch.from_numpy(np.ascontiguousarray(block.T))
    rate = model.sample_rate
    return convert(audio, rate, audio.shape[0], rate, model.channels)[None]


class AudioSink:
    """Decoded audio written as it comes: a WAV file, or raw PCM on stdout."""

    def __init__(self, target: str, model: EncodecModel, raw_format: str) -> None:
        self.raw_format = raw_format
        self.stdout = sys.stdout.buffer if target == "-" else None
        self.file = (
            None
            if self.stdout
            else sf.SoundFile(target, "w", model.sample_rate, model.channels, "FLOAT")
        )

    def write(self, audio: torch.Tensor) -> None:
        block = audio[0].T.numpy()
        if self.file is not None:
            self.file.write(block)
            return
        if self.raw_format == "int16":
            block = np.clip(np.round(block * INT16_SCALE), -INT16_SCALE, INT16_SCALE - 1)
        self.stdout.write(block.astype(RAW_FORMATS[self.raw_format]).tobytes())
        self.stdout.flush()

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


def stream_file(
    model: EncodecModel,
    blocks: Iterator[np.ndarray],
    bandwidth: float,
    codes_out: BinaryIO | None,
    audio_out: AudioSink | None,
) -> dict[str, float]:
    """Push every block through the streams, write codes and audio as they come; return the
    timings (seconds): audio duration, total compute, and each chunk's compute (wall clock and
    this thread's CPU time: on a busy machine the wall clock is the larger)."""
    chunk_seconds, chunk_cpu, received, emitted = [], [], 0, 0

    def handle(codes: torch.Tensor, audio: torch.Tensor | None) -> None:
        nonlocal emitted
        if codes_out is not None and codes.shape[-1]:
            codes_out.write(codes[0].T.contiguous().to(torch.int16).numpy().tobytes())
            codes_out.flush()
        if audio_out is not None and audio is not None and audio.shape[-1]:
            audio = audio[..., : max(0, received - emitted)]  # the input's length, no padding
            emitted += audio.shape[-1]
            audio_out.write(audio)

    with model.streaming(bandwidth) as stream:
        for block in blocks:
            chunk = _to_model(block, model)
            received += chunk.shape[-1]
            start, cpu = time.perf_counter(), time.thread_time()
            codes = stream.encoder.push(chunk)
            audio = stream.decoder.push(codes) if audio_out is not None else None
            chunk_seconds.append(time.perf_counter() - start)
            chunk_cpu.append(time.thread_time() - cpu)
            handle(codes, audio)
        if not received:
            raise ValueError("the input holds no audio")
        start = time.perf_counter()
        codes = stream.encoder.flush()
        audio = None
        if audio_out is not None:
            audio = torch.cat([stream.decoder.push(codes), stream.decoder.flush()], dim=-1)
        flush_seconds = time.perf_counter() - start
        handle(codes, audio)
    return {
        "audio": received / model.sample_rate,
        "compute": sum(chunk_seconds) + flush_seconds,
        "chunk_median": statistics.median(chunk_seconds) if chunk_seconds else 0.0,
        "chunk_cpu_median": statistics.median(chunk_cpu) if chunk_cpu else 0.0,
        "chunk_max": max(chunk_seconds, default=0.0),
        "chunks": len(chunk_seconds),
    }


def report(timings: dict[str, float], model: EncodecModel, chunk_ms: float) -> str:
    latency = model.streaming_latency()
    return (
        f"{timings['audio']:.2f} s of audio in {timings['chunks']:.0f} chunks of {chunk_ms:g} ms: "
        f"real-time factor {timings['compute'] / timings['audio']:.3f} "
        f"(compute / audio time); per chunk median {1000 * timings['chunk_median']:.2f} ms "
        f"(CPU {1000 * timings['chunk_cpu_median']:.2f} ms), max {1000 * timings['chunk_max']:.2f} ms\n"
        f"algorithmic latency {latency.frame_ms:.1f} ms (one frame, {latency.frame_samples} "
        f"samples); first audio out after {latency.first_audio_ms:.1f} ms of input (start-up)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m encodec_train.stream", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="causal codec: our model file or checkpoint, an official .th, a Hugging Face folder",
    )
    parser.add_argument("input", help="audio file at the model's rate, or - for raw PCM on stdin")
    parser.add_argument("--bandwidth", type=float, default=None, help="kbps (default: the largest)")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="chunk length pushed at once")
    parser.add_argument("--codes", type=Path, help="write codes here (raw int16, frame-major)")
    parser.add_argument("--audio", help="write decoded audio: a WAV path, or - for stdout")
    parser.add_argument("--raw-format", choices=sorted(RAW_FORMATS), default="float32")
    parser.add_argument("--raw-channels", type=int, default=1, help="channels of raw stdin PCM")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    codes_out = audio_out = None
    try:
        model = load_codec(args.checkpoint).for_inference()
        chunk = max(1, round(args.chunk_ms * model.sample_rate / 1000))
        if args.input == "-":
            blocks = raw_chunks(sys.stdin.buffer, args.raw_format, args.raw_channels, chunk)
        else:
            blocks = wav_chunks(Path(args.input), model, chunk)
        codes_out = open(args.codes, "wb") if args.codes else None  # noqa: SIM115
        audio_out = AudioSink(args.audio, model, args.raw_format) if args.audio else None
        timings = stream_file(model, blocks, args.bandwidth, codes_out, audio_out)
    except (ValueError, FileNotFoundError, sf.LibsndfileError) as error:
        parser.exit(2, f"stream: error: {error}\n")
    finally:
        for sink in (codes_out, audio_out):
            if sink is not None:
                sink.close()
    print(report(timings, model, args.chunk_ms), file=sys.stderr)


if __name__ == "__main__":
    main()
