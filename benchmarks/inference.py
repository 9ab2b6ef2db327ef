"""Inference speed of the 24 kHz codec: offline and streaming encode + decode against the
official `encodec` package, and the compute time of each 20 ms streaming chunk.

For each bandwidth, on 10 s of mono audio, one torch thread, all in this process with the same
random weights, runs alternating between the variants (so a busy machine slows all alike):

- reference: the official package, `decode(encode(x))` under `torch.inference_mode`;
- ours, training model: our `EncodecModel` (weight norm), `decode(encode(x))`;
- ours, inference copy: `model.for_inference()` (weight norm folded, fast ELU);
- streaming: the inference copy's encoder and decoder streams fed 20 ms chunks, then flushed;
- N streams batched: N live streams served together, one batch per chunk (one core serving
  several streams reads each weight once per chunk for all of them); RTF per stream.

Real-time factor (RTF) = compute seconds per second of audio (wall clock, median of the runs);
the CPU column is this process's CPU time over the same runs, so a wall time well above it
shows a machine busy with other work. Not a pass/fail test.

    .venv/bin/python benchmarks/inference.py [--seconds 10] [--runs 3] [--chunk-ms 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import torch
from codec_speed import make_audio, reference_with_random_codebooks

from encodec_train.model import encodec_24khz

BANDWIDTHS = (1.5, 6.0, 24.0)
PAPER_LATENCY_MS = 13.3
"""Initial latency of the streaming 24 kHz model, paper Table 5."""


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def stream_through(model, x: torch.Tensor, bandwidth: float, chunk: int, per_chunk: list) -> None:
    """Push `x` in chunks through both streams; append each chunk's (wall, thread CPU)
    seconds."""
    with model.streaming(bandwidth) as stream:
        for start in range(0, x.shape[-1], chunk):
            wall, cpu = time.perf_counter(), time.thread_time()
            stream.decoder.push(stream.encoder.push(x[..., start : start + chunk]))
            per_chunk.append((time.perf_counter() - wall, time.thread_time() - cpu))
        stream.decoder.push(stream.encoder.flush())
        stream.decoder.flush()


def milliseconds(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    return f"{1000 * statistics.median(ordered):.2f} / {1000 * ordered[int(0.95 * (len(ordered) - 1))]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="streaming chunk length")
    parser.add_argument("--streams", type=int, default=8, help="streams served in one batch")
    args = parser.parse_args()
    torch.set_num_threads(1)

    ref = reference_with_random_codebooks()
    trained = encodec_24khz().eval()
    trained.load_state_dict(ref.state_dict())
    fast = trained.for_inference()
    x = make_audio(args.seconds)
    chunk = round(args.chunk_ms * 24_000 / 1000)
    latency = fast.streaming_latency()
    print(
        f"torch {torch.__version__}, 1 thread, {os.cpu_count()} CPU(s), load average "
        f"{os.getloadavg()[0]:.2f}; {args.seconds:g} s of 24 kHz mono, encode + decode, median "
        f"of {args.runs} alternating runs"
    )
    print(
        f"algorithmic latency: {latency.frame_ms:.1f} ms (one frame of {latency.frame_samples} "
        f"samples; paper: {PAPER_LATENCY_MS} ms); start-up: first codes after "
        f"{1000 * latency.first_codes_samples / 24_000:.1f} ms, first audio after "
        f"{latency.first_audio_ms:.1f} ms of input (left reflect padding, see docs/inference.md)"
    )
    print(
        "\nRTF and ratios as wall | CPU time (the ratios of CPU times hold on a busy machine)\n"
        f"{'kbps':>5} {'variant':<30} {'RTF':>13} {'/ reference':>11} {'/ offline':>11}"
        "   per chunk, median / p95 ms: wall | CPU"
    )
    streams = args.streams
    batch = x.expand(streams, -1, -1).contiguous()
    for bandwidth in BANDWIDTHS:
        ref.set_target_bandwidth(bandwidth)
        per_chunk: dict[str, list[tuple[float, float]]] = {"one": [], "batched": []}
        variants: dict[str, Callable[[], object]] = {
            "reference (encodec)": lambda: ref.decode(ref.encode(x)),
            "ours, training model": lambda b=bandwidth: trained.decode(trained.encode(x, b)),
            "ours, inference copy": lambda b=bandwidth: fast.decode(fast.encode(x, b)),
            f"streaming, {args.chunk_ms:g} ms chunks": lambda b=bandwidth, p=per_chunk: (
                stream_through(fast, x, b, chunk, p["one"])
            ),
            f"{streams} streams batched, per stream": lambda b=bandwidth, p=per_chunk: (
                stream_through(fast, batch, b, chunk, p["batched"])
            ),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
        with torch.inference_mode():
            for run in range(args.runs + 1):  # run 0 warms up
                names = list(variants) if run % 2 else list(reversed(variants))
                for name in names:
                    result = timed(variants[name])
                    if run:
                        times[name].append(result)
        divide = {name: args.seconds * (streams if "batched" in name else 1) for name in times}
        rtf = {n: statistics.median(w for w, _ in t) / divide[n] for n, t in times.items()}
        cpu = {n: statistics.median(c for _, c in t) / divide[n] for n, t in times.items()}
        chunk_columns = {}
        for key, name in (("one", list(variants)[3]), ("batched", list(variants)[4])):
            timed_chunks = per_chunk[key][len(per_chunk[key]) // (args.runs + 1) :]  # no warm-up
            chunk_columns[name] = (
                f"{milliseconds([w for w, _ in timed_chunks])} | "
                f"{milliseconds([c for _, c in timed_chunks])}"
            )
        for name in variants:
            versus = {
                base: f"{rtf[name] / rtf[base]:.2f} | {cpu[name] / cpu[base]:.2f}"
                for base in ("reference (encodec)", "ours, inference copy")
            }
            print(
                f"{bandwidth:>5g} {name:<30} {rtf[name]:>6.3f} | {cpu[name]:.3f} "
                f"{versus['reference (encodec)']:>11} {versus['ours, inference copy']:>11}   "
                f"{chunk_columns.get(name, '')}"
            )


if __name__ == "__main__":
    main()
