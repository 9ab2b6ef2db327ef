"""Encode + decode speed of our 24 kHz codec against the official `encodec` package.

Real-time factor (RTF) = seconds of compute per second of audio, here for 10 s of mono audio
at 6 and 24 kbps, the median of 5 runs each. Both models run in this process with the same
random weights, interleaved run by run (and alternating which goes first), so a busy machine
slows both alike: compare the ratio, not the absolute figures. Not a pass/fail test.

    .venv/bin/python benchmarks/codec_speed.py [--seconds 10] [--runs 5] [--threads N]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

import torch

from encodec_train.model import encodec_24khz

BANDWIDTHS = (6.0, 24.0)


def make_audio(seconds: float, sample_rate: int = 24_000) -> torch.Tensor:
    """[1, 1, time]: a chirp plus a little noise."""
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    chirp = 0.5 * torch.sin(2 * math.pi * (100 + 400 * t) * t)
    return (chirp + 0.05 * torch.randn_like(t)).view(1, 1, -1)


@torch.no_grad()
def reference_with_random_codebooks():
    """The official model with random weights and codebooks spread like its latents (a fresh
    model's codebooks are zero, which would make every code 0)."""
    import encodec

    torch.manual_seed(0)
    ref = encodec.EncodecModel.encodec_model_24khz(pretrained=False).eval()
    latent = ref.encoder(make_audio(1.0)).transpose(1, 2).reshape(-1, 128)
    for layer in ref.quantizer.vq.layers:
        codebook = layer._codebook
        codebook.embed.copy_(latent.mean(0) + latent.std(0) * torch.randn_like(codebook.embed))
        codebook.embed_avg.copy_(codebook.embed)
    return ref


def time_reference(ref, x: torch.Tensor, bandwidth: float) -> float:
    ref.set_target_bandwidth(bandwidth)
    start = time.perf_counter()
    ref.decode(ref.encode(x))
    return time.perf_counter() - start


def time_ours(model, x: torch.Tensor, bandwidth: float) -> float:
    start = time.perf_counter()
    model.decode(model.encode(x, bandwidth))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="audio length")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per model and bandwidth")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as is)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    ref = reference_with_random_codebooks()
    ours = encodec_24khz().eval()
    ours.load_state_dict(ref.state_dict())
    x = make_audio(args.seconds)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
        f"{os.cpu_count()} CPU(s), load average {os.getloadavg()[0]:.2f}; "
        f"{args.seconds:g} s of 24 kHz mono, encode + decode, median of {args.runs} runs"
    )
    rows = []
    with torch.inference_mode():
        for bandwidth in BANDWIDTHS:
            # Warm-up run, which also checks that both models compute the same thing.
            ref.set_target_bandwidth(bandwidth)
            codes_ref, codes_ours = ref.encode(x), ours.encode(x, bandwidth)
            assert torch.equal(codes_ref[0][0], codes_ours[0].codes), "the models disagree"
            ref.decode(codes_ref)
            ours.decode(codes_ours)
            times = {"ours": [], "reference": []}
            for run in range(args.runs):
                order = ("ours", "reference") if run % 2 == 0 else ("reference", "ours")
                for name in order:
                    if name == "ours":
                        times[name].append(time_ours(ours, x, bandwidth))
                    else:
                        times[name].append(time_reference(ref, x, bandwidth))
            ours_rtf = statistics.median(times["ours"]) / args.seconds
            ref_rtf = statistics.median(times["reference"]) / args.seconds
            rows.append((bandwidth, ours_rtf, ref_rtf))

    print(f"\n{'bandwidth':>10}  {'ours RTF':>9}  {'reference RTF':>13}  {'ours / reference':>16}")
    for bandwidth, ours_rtf, ref_rtf in rows:
        print(
            f"{bandwidth:>6g} kbps  {ours_rtf:>9.4f}  {ref_rtf:>13.4f}  {ours_rtf / ref_rtf:>16.2f}"
        )


if __name__ == "__main__":
    main()
