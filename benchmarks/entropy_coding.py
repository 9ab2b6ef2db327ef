"""Entropy coding with the entropy model: our coder against the official `encodec` package's.

Part 1 (always): encode and decode times of the same codes with the paper's entropy model
(24 kHz size: 5 layers, 200 channels, 32 heads of 1024 entries; random weights shared by
both packages), our range coder (`StepModel` steps in float64 for all segments of
`--segment` seconds side by side, constriction) against the official LM loop of
`encodec/compress.py` (its `LMModel` step by step over the whole sequence and its pure-Python
arithmetic coder, run by `encodec_train.compression.official_coder` exactly as there), median
of `--runs` runs, interleaved in this process so a busy machine slows both alike: compare the
ratios. Wall-clock and process CPU times (the machine may be shared: the load is printed).

Part 2 (with --codec and --lm): the bitrate of real files, each compressed with and without
the entropy model at each bandwidth, as `python -m encodec_train.compress` writes them:
payload kbps (codes only) and file kbps (with the header).

    .venv/bin/python benchmarks/entropy_coding.py [--seconds 4] [--bandwidth 6] [--runs 3]
    .venv/bin/python benchmarks/entropy_coding.py --codec runs/demo/checkpoints/last.ckpt \\
        --lm runs/demo_lm/checkpoints/last.ckpt --files data_manifests/demo/valid.jsonl
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import time
from pathlib import Path

import torch

from encodec_train.compression import official_coder, range_coding
from encodec_train.compression.cli import read_audio
from encodec_train.compression.container import read_header
from encodec_train.compression.ecdc import compress
from encodec_train.compression.models import load_codec, load_entropy_model
from encodec_train.compression.step_model import StepModel
from encodec_train.model.lm import EntropyModel

FRAME_RATE = 75


def _clocks() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def speed(seconds: float, bandwidth: float, runs: int, segment_seconds: float) -> None:
    torch.manual_seed(0)
    lm = EntropyModel().eval()
    ours, official = StepModel(lm), official_coder.official_model(lm)
    levels, steps = int(bandwidth * 1000 / 750), int(seconds * FRAME_RATE)
    # Codes the model finds likely, as a trained model's would be: drawn from its predictions.
    codes = torch.zeros(levels, steps, dtype=torch.long)
    inputs, state, gen = torch.zeros(1, levels, 1, dtype=torch.long), None, torch.Generator()
    with torch.no_grad():
        for t in range(steps):
            logits, state = lm(inputs, state)
            codes[:, t] = torch.multinomial(logits[0, :, 0].softmax(-1), 1, generator=gen)[:, 0]
            inputs = 1 + codes[None, :, t : t + 1]
    segment = round(segment_seconds * FRAME_RATE) if segment_seconds else steps
    lengths = range_coding.segment_lengths([steps], segment)
    streams = [0] * len(lengths)  # one coder, as in a file
    keys = [f"{who}_{part}" for who in ("ours", "ref") for part in ("enc", "dec")]
    times: dict[str, list[float]] = {f"{key}_{c}": [] for key in keys for c in ("wall", "cpu")}
    for run in range(runs):
        order = ("ours", "ref") if run % 2 == 0 else ("ref", "ours")
        for who in order:
            start = _clocks()
            if who == "ours":
                words = range_coding.encode_segments(ours, codes.split(lengths, dim=-1), streams)
                middle = _clocks()
                decoded = range_coding.decode_segments(ours, words, lengths, streams, levels)
                assert torch.equal(torch.cat(decoded, dim=-1), codes)
                ours_bits = 32 * sum(len(w) for w in words)
            else:
                data = official_coder.encode_chunk(official, codes)
                middle = _clocks()
                decoded = official_coder.decode_chunk(official, io.BytesIO(data), levels, steps)
                assert torch.equal(decoded, codes)
                ref_bits = 8 * len(data)
            end = _clocks()
            for index, clock in enumerate(("wall", "cpu")):
                times[f"{who}_enc_{clock}"].append(middle[index] - start[index])
                times[f"{who}_dec_{clock}"].append(end[index] - middle[index])
    med = {key: statistics.median(values) for key, values in times.items()}
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(
        f"{seconds:g} s of codes at {bandwidth:g} kbps ({levels} codebooks x {steps} steps), "
        f"ours in {len(lengths)} segments of {segment} steps, torch threads "
        f"{torch.get_num_threads()}, median of {runs} runs, load average after: {load}"
    )
    print("| | ours (s) | official (s) | official / ours | CPU: ours, official (s) | CPU ratio |")
    print("|---|---|---|---|---|---|")
    for name, key in (("encode", "enc"), ("decode", "dec")):
        wall = [med[f"{who}_{key}_wall"] for who in ("ours", "ref")]
        cpu = [med[f"{who}_{key}_cpu"] for who in ("ours", "ref")]
        print(
            f"| {name} | {wall[0]:.3f} | {wall[1]:.3f} | {wall[1] / wall[0]:.1f}x | "
            f"{cpu[0]:.3f}, {cpu[1]:.3f} | {cpu[1] / cpu[0]:.1f}x |"
        )
    print(f"| bits per code | {ours_bits / codes.numel():.3f} | {ref_bits / codes.numel():.3f} | |")


def bitrates(
    codec_path: Path, lm_path: Path, files_list: Path, bandwidths: list[float], segment: float
) -> None:
    codec = load_codec(codec_path)
    lm = load_entropy_model(lm_path, codec.frame_rate)
    root = files_list.parent
    files = [
        root / json.loads(line)["path"] for line in files_list.read_text().splitlines() if line
    ]
    audio = [read_audio(path, codec) for path in files]
    seconds = sum(a.shape[-1] for a in audio) / codec.sample_rate
    print(
        f"{len(files)} files of {files_list} ({seconds:.1f} s), codec {codec_path}, "
        f"entropy model {lm_path}, segments of {segment:g} s (0: none)"
    )
    print(
        "| bandwidth | payload kbps, packed | payload kbps, entropy model | reduction | "
        "file kbps, packed | file kbps, entropy model |"
    )
    print("|---|---|---|---|---|---|")
    for bandwidth in bandwidths or codec.target_bandwidths:
        sizes = {"packed": [0, 0], "lm": [0, 0]}  # [file bytes, payload bytes]
        for clip in audio:
            for key, model in (("packed", None), ("lm", lm)):
                data = compress(codec, clip, bandwidth, model, segment_seconds=segment)
                payload = len(data) - read_header(data, "x")[2]
                sizes[key][0] += len(data)
                sizes[key][1] += payload
        kbps = {key: [8 * b / seconds / 1000 for b in value] for key, value in sizes.items()}
        reduction = 100 * (1 - kbps["lm"][1] / kbps["packed"][1])
        print(
            f"| {bandwidth:g} | {kbps['packed'][1]:.3f} | {kbps['lm'][1]:.3f} | "
            f"{reduction:.1f}% | {kbps['packed'][0]:.3f} | {kbps['lm'][0]:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--bandwidth", type=float, default=6.0)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--segment", type=float, default=1.0, help="our segments in seconds (0: no reset)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--codec", type=Path, default=None)
    parser.add_argument("--lm", type=Path, default=None)
    parser.add_argument("--files", type=Path, default=Path("data_manifests/demo/valid.jsonl"))
    parser.add_argument("--bandwidths", type=float, nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.codec is not None and args.lm is not None:
        bitrates(args.codec, args.lm, args.files, args.bandwidths, args.segment)
    else:
        speed(args.seconds, args.bandwidth, args.runs, args.segment)


if __name__ == "__main__":
    main()
