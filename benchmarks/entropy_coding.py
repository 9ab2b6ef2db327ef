"""Entropy coding with the entropy model: our coder against the official `encodec` package's.

Part 1 (always): encode and decode times of the same codes with the paper's entropy model
(24 kHz size: 5 layers, 200 channels, 32 heads of 1024 entries; random weights shared by
both packages), our range coder (one teacher-forced float64 pass to encode, KV-cached steps
to decode, constriction) against the official LM loop of `encodec/compress.py` (its
`LMModel` step by step and its pure-Python arithmetic coder, run by
`encodec_train.compression.official_coder` exactly as there), median of `--runs` runs,
interleaved in this process so a busy machine slows both alike: compare the ratios.

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
import statistics
import time
from pathlib import Path

import torch

from encodec_train.compression import official_coder, range_coding
from encodec_train.compression.cli import read_audio
from encodec_train.compression.container import read_header
from encodec_train.compression.ecdc import compress
from encodec_train.compression.models import load_codec, load_entropy_model
from encodec_train.model.lm import EntropyModel


def speed(seconds: float, bandwidth: float, runs: int) -> None:
    torch.manual_seed(0)
    lm = EntropyModel().eval()
    ours, official = range_coding.coding_model(lm), official_coder.official_model(lm)
    levels, steps = int(bandwidth * 1000 / 750), int(seconds * 75)
    # Codes the model finds likely, as a trained model's would be: drawn from its predictions.
    codes = torch.zeros(levels, steps, dtype=torch.long)
    inputs, state, gen = torch.zeros(1, levels, 1, dtype=torch.long), None, torch.Generator()
    with torch.no_grad():
        for t in range(steps):
            logits, state = ours(inputs, state)
            codes[:, t] = torch.multinomial(logits[0, :, 0].softmax(-1), 1, generator=gen)[:, 0]
            inputs = 1 + codes[None, :, t : t + 1]
    times: dict[str, list[float]] = {k: [] for k in ("ours_enc", "ours_dec", "ref_enc", "ref_dec")}
    for run in range(runs):
        order = ("ours", "ref") if run % 2 == 0 else ("ref", "ours")
        for who in order:
            start = time.perf_counter()
            if who == "ours":
                words = range_coding.encode_chunk(ours, codes)
                middle = time.perf_counter()
                [decoded] = range_coding.decode_chunks(ours, [(words, steps)], levels)
                assert torch.equal(decoded, codes)
                ours_bits = 32 * len(words)
            else:
                data = official_coder.encode_chunk(official, codes)
                middle = time.perf_counter()
                decoded = official_coder.decode_chunk(official, io.BytesIO(data), levels, steps)
                assert torch.equal(decoded, codes)
                ref_bits = 8 * len(data)
            end = time.perf_counter()
            times[f"{who}_enc"].append(middle - start)
            times[f"{who}_dec"].append(end - middle)
    med = {key: statistics.median(values) for key, values in times.items()}
    print(
        f"{seconds:g} s of codes at {bandwidth:g} kbps ({levels} codebooks x {steps} steps), "
        f"torch threads {torch.get_num_threads()}, median of {runs} runs"
    )
    print("| | ours (s) | official (s) | official / ours |")
    print("|---|---|---|---|")
    for name, key in (("encode", "enc"), ("decode", "dec")):
        ratio = med[f"ref_{key}"] / med[f"ours_{key}"]
        print(f"| {name} | {med[f'ours_{key}']:.3f} | {med[f'ref_{key}']:.3f} | {ratio:.1f}x |")
    print(f"| bits per code | {ours_bits / codes.numel():.3f} | {ref_bits / codes.numel():.3f} | |")


def bitrates(codec_path: Path, lm_path: Path, files_list: Path, bandwidths: list[float]) -> None:
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
        f"entropy model {lm_path}"
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
                data = compress(codec, clip, bandwidth, model)
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
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--codec", type=Path, default=None)
    parser.add_argument("--lm", type=Path, default=None)
    parser.add_argument("--files", type=Path, default=Path("data_manifests/demo/valid.jsonl"))
    parser.add_argument("--bandwidths", type=float, nargs="*", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.codec is not None and args.lm is not None:
        bitrates(args.codec, args.lm, args.files, args.bandwidths)
    else:
        speed(args.seconds, args.bandwidth, args.runs)


if __name__ == "__main__":
    main()
