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
shows a machine busy with other work. Per chunk: the compute time of each push (encoder and
decoder), CPU median / mean / p95 and wall median / p95; 20 ms chunks complete one and two
frames in turn, so the mean is the sustained cost.

Then, at 6 kbps, where one stream's chunk goes (CPU time per 20 ms chunk, steady state):
its matrix products and its LSTM-step and codebook-search kernels replayed alone, the time to
read every frame-rate weight once (a sum over as many bytes: the memory's floor for any
kernel), the same layers with small weights (what the operations per chunk cost by
themselves, in warm caches, and right after that read, which evicts them as a real push's
weights do), and the offline inference copy's time for 20 ms of audio. A stream does the
offline work of its 20 ms and, beyond it, reads every frame-rate weight once per chunk
(offline reads them once per signal): offline with its frame-rate layers' time replaced by
that read is the floor; the floor plus the operations' own cost right after the read is
printed last, beside the push.
Not a pass/fail test.

    .venv/bin/python benchmarks/inference.py [--seconds 10] [--runs 3] [--chunk-ms 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from codec_speed import make_audio, reference_with_random_codebooks

from encodec_train.model import EncodecModel, encodec_24khz, stream_kernels
from encodec_train.model.conv import StreamableConvTranspose1d
from encodec_train.model.streaming import _Linear

BANDWIDTHS = (1.5, 6.0, 24.0)
BREAKDOWN_CHUNKS = 102  # 100 past the start-up, then one 1-frame and one 2-frame chunk
PAPER_LATENCY_MS = 13.3
"""Initial latency of the streaming 24 kHz model, paper Table 5."""


def timed(run: Callable[[], object]) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one call."""
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    return time.perf_counter() - wall, time.process_time() - cpu


def stream_through(
    model,
    x: torch.Tensor,
    bandwidth: float,
    chunk: int,
    per_chunk: list,
    before_push: Callable[[], object] | None = None,
) -> None:
    """Push `x` in chunks through both streams; append each chunk's (wall, thread CPU)
    seconds. `before_push`, untimed, runs before every push."""
    with model.streaming(bandwidth) as stream:
        for start in range(0, x.shape[-1], chunk):
            if before_push is not None:
                before_push()
            wall, cpu = time.perf_counter(), time.thread_time()
            stream.decoder.push(stream.encoder.push(x[..., start : start + chunk]))
            per_chunk.append((time.perf_counter() - wall, time.thread_time() - cpu))
        stream.decoder.push(stream.encoder.flush())
        stream.decoder.flush()


def milliseconds(seconds: list[float], mean: bool = False) -> str:
    """'median / p95' (with the mean between them when asked), in ms."""
    ordered = sorted(seconds)
    figures = [statistics.median(ordered), ordered[int(0.95 * (len(ordered) - 1))]]
    if mean:
        figures.insert(1, statistics.mean(ordered))
    return " / ".join(f"{1000 * f:.2f}" for f in figures)


@contextmanager
def recorded_products(
    calls: list[tuple[_Linear, int]], steps: list[tuple[Callable, tuple, np.ndarray]]
) -> Iterator[None]:
    """Append (product, rows) for every matrix product a stream computes in the block, and
    (kernel, copied arguments, the weights it streams) for every call of the LSTM-step and
    codebook-search kernels: the recurrent weights, or the 8-bit codebooks that the search
    reads in full (it reads the float32 codes of a few candidates only)."""
    call = _Linear.__call__
    kernels = {name: getattr(stream_kernels, name) for name in ("lstm_steps", "nearest_codes")}

    def record(self: _Linear, x: torch.Tensor) -> torch.Tensor:
        calls.append((self, x.shape[0]))
        return call(self, x)

    def recording(kernel: Callable) -> Callable:
        def run(*args: object) -> None:
            copies = tuple(a.copy() if hasattr(a, "copy") else a for a in args)
            streamed = args[3].quantized if kernel is kernels["nearest_codes"] else args[1]
            steps.append((kernel, copies, streamed))
            kernel(*args)

        return run

    _Linear.__call__ = record
    for name, kernel in kernels.items():
        setattr(stream_kernels, name, recording(kernel))
    try:
        yield
    finally:
        _Linear.__call__ = call
        for name, kernel in kernels.items():
            setattr(stream_kernels, name, kernel)


def chunk_cpu(
    model: EncodecModel,
    x: torch.Tensor,
    bandwidth: float,
    chunk: int,
    before_push: Callable[[], object] | None = None,
) -> float:
    """Mean thread CPU seconds of a push (encoder + decoder) after the first 10 chunks."""
    per_chunk: list[tuple[float, float]] = []
    stream_through(model, x, bandwidth, chunk, per_chunk, before_push)
    return statistics.mean(cpu for _, cpu in per_chunk[10:])


def offline_frame_rate(fast: EncodecModel, x: torch.Tensor, bandwidth: float) -> float:
    """Thread CPU seconds that the offline `decode(encode(x))` spends in the layers at the
    frame rate: the encoder from its last strided conv on, the quantizer's `encode` and
    `decode`, and the decoder up to its first transposed conv (median of 3)."""
    encoder, decoder = list(fast.encoder.model), list(fast.decoder.model)
    last_strided = max(i for i, m in enumerate(encoder) if getattr(m, "stride", 1) > 1)
    first_transposed = next(
        i for i, m in enumerate(decoder) if isinstance(m, StreamableConvTranspose1d)
    )
    spent = [0.0]

    def counted(work: Callable) -> Callable:
        def run(*args: object, **kwargs: object) -> object:
            start = time.thread_time()
            result = work(*args, **kwargs)
            spent[0] += time.thread_time() - start
            return result

        return run

    # The model calls its quantizer's methods, not its forward: time those and the layers'.
    timed_modules = [*encoder[last_strided:], *decoder[: first_transposed + 1]]
    for module in timed_modules:
        module.forward = counted(module.forward)
    quantizer = fast.quantizer
    quantizer.encode, quantizer.decode = counted(quantizer.encode), counted(quantizer.decode)
    totals = []
    try:
        with torch.inference_mode():
            for _ in range(3):
                spent[0] = 0.0
                fast.decode(fast.encode(x, bandwidth))
                totals.append(spent[0])
    finally:
        for module in timed_modules:
            del module.forward
        del quantizer.encode, quantizer.decode
    return statistics.median(totals)


def breakdown(fast: EncodecModel, x: torch.Tensor, chunk: int, runs: int, offline: float) -> None:
    """Where a steady-state chunk's CPU time goes, at 6 kbps (see the module docstring)."""
    bandwidth, seconds = 6.0, x.shape[-1] / 24_000
    calls: list[tuple[_Linear, int]] = []
    steps: list[tuple[Callable, tuple, np.ndarray]] = []
    with fast.streaming(bandwidth) as stream:
        for index, start in enumerate(range(0, BREAKDOWN_CHUNKS * chunk, chunk)):
            if index < BREAKDOWN_CHUNKS - 2:
                stream.decoder.push(stream.encoder.push(x[..., start : start + chunk]))
                continue
            with recorded_products(calls, steps):
                stream.decoder.push(stream.encoder.push(x[..., start : start + chunk]))
    # Frame-rate work: products of 1 or 2 rows (the 75 Hz convs, the LSTMs' input
    # projections), the LSTMs' steps and the codebook search; then the products at higher rates.
    replay: dict[bool, list] = {True: [], False: []}
    for product, rows in calls:
        replay[rows <= 2].append((product, torch.randn(rows, product.in_features)))
    used = {id(product): product for product, _ in replay[True]}.values()
    weight_bytes = sum(4 * p.in_features * p.out_features for p in used)
    weight_bytes += sum({w.ctypes.data: w.nbytes for _, _, w in steps}.values())
    flat = torch.randn(weight_bytes // 4)
    torch.manual_seed(0)
    small = encodec_24khz(n_filters=2, dimension=16).eval()
    for layer in small.quantizer.vq.layers:  # codebooks of a fresh model are zero
        layer._codebook.embed.normal_()
    small = small.for_inference()

    def per_chunk(work: Callable[[], object], chunks: int) -> float:
        """Median of 10, as the whole push's figure is an average over many chunks."""
        times = []
        for _ in range(10):
            start = time.thread_time()
            work()
            times.append(time.thread_time() - start)
        return statistics.median(times) / chunks

    rounds = []
    for _ in range(runs):
        whole = chunk_cpu(fast, x, bandwidth, chunk)
        at_rate = [per_chunk(lambda r=r: [p(v) for p, v in replay[r]], 2) for r in (True, False)]
        kernels = per_chunk(lambda: [kernel(*args) for kernel, args, _ in steps], 2)
        read = per_chunk(flat.sum, 1)
        small_weights = chunk_cpu(small, x, bandwidth, chunk)
        small_evicted = chunk_cpu(small, x, bandwidth, chunk, before_push=flat.sum)
        rounds.append((whole, *at_rate, kernels, read, small_weights, small_evicted))
    whole, frame_rate, higher, kernels, read, small_weights, small_evicted = (
        1000 * statistics.median(r) for r in zip(*rounds, strict=True)
    )
    offline_chunk = 1000 * offline * (chunk / 24_000) / seconds
    frame_rate_offline = 1000 * offline_frame_rate(fast, x, bandwidth) * (chunk / 24_000) / seconds
    floor = offline_chunk - frame_rate_offline + read
    ms = f"{1000 * chunk / 24_000:g} ms"
    lines = [
        ("whole push, encoder + decoder", whole),
        ("products at the frame rate (1-2 rows), replayed", frame_rate),
        ("LSTM steps and codebook search (kernels), replayed", kernels),
        (f"  reading their {weight_bytes / 1e6:.1f} MB of weights once (a sum)", read),
        ("products at higher rates, replayed", higher),
        ("everything else (elementwise, copies, Python)", whole - frame_rate - kernels - higher),
        ("the same layers with small weights (0.06 M params)", small_weights),
        ("  the same, each push right after the read above", small_evicted),
        (f"offline inference copy, per {ms} of audio", offline_chunk),
        ("  of which its frame-rate layers and the quantizer", frame_rate_offline),
        ("offline, frame-rate work replaced by the read (floor)", floor),
        ("  plus the operations' own cost right after the read", floor + small_evicted),
    ]
    print(
        f"\nWhere a {ms} chunk's CPU time goes at {bandwidth:g} kbps (one stream, steady "
        f"state, mean of two consecutive chunks; replays and the read: median of 10; median of "
        f"{runs} rounds), ms:"
    )
    for label, value in lines:
        print(f"  {label:<56} {value:6.2f}")
    print(
        f"  (the read: {weight_bytes / read / 1e6:.0f} GB/s; that floor is "
        f"{floor / offline_chunk:.2f}x offline, {(floor + small_evicted) / offline_chunk:.2f}x "
        f"with the operations' cost, the push {whole / offline_chunk:.2f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per variant")
    parser.add_argument("--chunk-ms", type=float, default=20.0, help="streaming chunk length")
    parser.add_argument("--streams", type=int, default=8, help="streams served in one batch")
    args = parser.parse_args()
    chunk = round(args.chunk_ms * 24_000 / 1000)
    if args.seconds * 24_000 < BREAKDOWN_CHUNKS * chunk:
        parser.error(
            f"--seconds {args.seconds:g}: the breakdown needs {BREAKDOWN_CHUNKS} chunks of "
            f"{args.chunk_ms:g} ms, at least {BREAKDOWN_CHUNKS * chunk / 24_000:g} s"
        )
    torch.set_num_threads(1)

    ref = reference_with_random_codebooks()
    trained = encodec_24khz().eval()
    trained.load_state_dict(ref.state_dict())
    fast = trained.for_inference()
    x = make_audio(args.seconds)
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
        "   per chunk ms: CPU median / mean / p95 | wall median / p95"
    )
    streams = args.streams
    batch = x.expand(streams, -1, -1).contiguous()
    offline_cpu = {}
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
                f"{milliseconds([c for _, c in timed_chunks], mean=True)} | "
                f"{milliseconds([w for w, _ in timed_chunks])}"
            )
        offline_cpu[bandwidth] = cpu["ours, inference copy"] * args.seconds
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
    breakdown(fast, x, chunk, args.runs, offline_cpu[6.0])


if __name__ == "__main__":
    main()
