"""Our training step beside audiocraft's, in one process: ratios per phase, peak memory, loader.

Times the real `CodecGANModule.training_step` (Lightning's loop on seeded noise; the step's
own phase ranges, `encodec_train/training/phases.py`) and, alternating with it step by step
on the same batches, audiocraft's `CompressionSolver.run_step` on its own EnCodec 24 kHz
model, MS-STFT discriminator, losses and balancer (`benchmarks/audiocraft_reference.py`).
Medians over `--repeats` steps after `--warmup`; both sides update the discriminator every
step, without an EMA of the weights or info-only losses. The ratio ours / reference is the
figure to read: the machine may be shared, so absolute times drift, but both sides see the
same drift. Process CPU time beside wall time shows whether other work took the cores.

Each `--variants` entry runs ours once more with other speed switches (docs/speed.md; the
plain step, the plain step with one switch on, bf16 autocast), against the reference again,
so each optimisation's effect is a ratio measured in this run.
Peak memory: the largest live tensor memory during one extra step per side (the profiler's
allocation events on CPU, `max_memory_allocated` on CUDA). The loader line compares the
segments/s that the data module's workers deliver (demo corpus) with what the step consumes.

    python benchmarks/training_step.py [--device cpu] [--threads 2] [--repeats 5]
        [--variants all] [--profile TOP] [--audiocraft-config /path/to/audiocraft/config]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, Dataset

from encodec_train import CONFIG_DIR
from encodec_train.training.builder import build_module
from encodec_train.training.codec_module import CodecGANModule
from encodec_train.training.quiet import silence_unactionable_messages

PHASES = (
    "generator_forward",
    "discriminator_update",
    "generator_losses",
    "balancer",
    "generator_backward",
    "generator_optimizer",
)
# The comparison's settings: discriminator every step, no EMA of the weights, fp32 as the
# reference (the 24 kHz recipe's GPU trainer would say bf16-mixed).
COMMON = [
    "training.discriminator_update_prob=1",
    "training.ema_decay=null",
    "trainer.precision=32-true",
]
# Ours as configured (the defaults), then the plain step (every switch off) and the plain
# step with one switch on: what each switch buys, measured against the same reference.
SWITCHES = {
    "shared spectrograms": "module.speed.shared_spectrograms",
    "fused discriminator batches": "module.speed.fused_discriminator_batches",
    "batched adversarial gradients": "module.speed.batched_adversarial_gradients",
    "channels-last discriminator": "module.speed.channels_last",
    "judge before update": "module.speed.judge_before_update",
}
PLAIN = [f"{key}=false" for key in SWITCHES.values()]
VARIANTS = {
    "defaults": [],
    "plain": PLAIN,
    **{f"plain + {name}": [*PLAIN, f"{key}=true"] for name, key in SWITCHES.items()},
    # Not exact: bf16 autocast (oneDNN's bf16 kernels on CPUs with AVX512-BF16 or AMX; the
    # quantizer, STFTs and balancer norms stay fp32).
    "defaults + bf16-mixed": ["trainer.precision=bf16-mixed"],
    "defaults + bf16-mixed + channels-last": [
        "trainer.precision=bf16-mixed",
        "module.speed.channels_last=true",
    ],
    # Not the same algorithm: the generator judged by the discriminator before its update.
    "defaults + judge before update": ["module.speed.judge_before_update=true"],
    "defaults + judge before update + bf16-mixed + channels-last": [
        "module.speed.judge_before_update=true",
        "trainer.precision=bf16-mixed",
        "module.speed.channels_last=true",
    ],
}
PAPER_UPDATE_PROBABILITY = 2 / 3


class RandomAudio(Dataset):
    """Seeded noise at -20 dBFS, with an all-ones mask."""

    def __init__(self, channels: int, samples: int, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.audio = 0.1 * torch.randn(length, channels, samples, generator=generator)

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[index], "mask": torch.ones_like(self.audio[index])}


@dataclass
class Side:
    """Per-step wall and process-CPU seconds and phase seconds of one side."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    phases: list[dict[str, float]] = field(default_factory=list)
    peak_bytes: int = 0
    ops: dict[tuple[str, str], float] = field(default_factory=dict)
    kernels: float = 0.0  # the discriminator's own kernels in the profiled step

    def median(self) -> float:
        return statistics.median(self.wall)

    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else float("nan")

    def phase_median(self, name: str) -> float:
        return statistics.median(p.get(name, 0.0) for p in self.phases)

    def rest_median(self) -> float:
        return statistics.median(
            wall - sum(p.get(name, 0.0) for name in PHASES)
            for wall, p in zip(self.wall, self.phases, strict=True)
        )

    def busy(self, threads: int) -> bool:
        """Less CPU than the threads could use in the wall time: other work took the cores."""
        return statistics.median(self.cpu) < 0.8 * threads * self.median()


def peak_memory(run, device: torch.device) -> int:
    """Largest live tensor memory (bytes above the start) while `run()` runs."""
    window = MemoryWindow(device)
    window.start()
    run()
    return window.stop()


class SideBySide(L.Callback):
    """Times our steps and runs a reference step beside each (before it on odd steps, after
    it on even ones), then measures peak memory on one extra step of each side and, with
    `profile`, records one more step of each side with `torch.profiler`."""

    def __init__(self, reference, warmup: int, steps: int, threads: int, profile: bool) -> None:
        self.reference, self.warmup, self.steps = reference, warmup, steps
        self.ours, self.theirs = Side(), Side()
        self.threads = threads
        self.memory_step = warmup + steps
        self.profile_step = warmup + steps + 1 if profile else None
        self._window = None

    def _timed(self, batch_idx: int) -> bool:
        return self.warmup <= batch_idx < self.warmup + self.steps

    def _reference_step(self, batch_idx: int, audio: torch.Tensor) -> None:
        if self.reference is None:
            return
        if batch_idx == self.memory_step:
            self.theirs.peak_bytes = peak_memory(
                lambda: self.reference(batch_idx, audio), audio.device
            )
            return
        self.reference.record()
        if batch_idx == self.profile_step:
            with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as profiler:
                self.reference(batch_idx, audio)
            self.theirs.ops, self.theirs.kernels = phase_op_seconds(profiler)
            return
        wall, cpu = time.perf_counter(), time.process_time()
        self.reference(batch_idx, audio)
        if self.reference.cfg.device == "cuda":
            torch.cuda.synchronize()
        if self._timed(batch_idx):
            self.theirs.wall.append(time.perf_counter() - wall)
            self.theirs.cpu.append(time.process_time() - cpu)
            self.theirs.phases.append(dict(self.reference.phases))

    def on_train_batch_start(self, trainer, module: CodecGANModule, batch, batch_idx) -> None:
        if batch_idx % 2:
            self._reference_step(batch_idx, batch["audio"])
        module.phases.record(module.device)
        if batch_idx == self.memory_step:
            self._window = MemoryWindow(module.device)
            self._window.start()
        elif batch_idx == self.profile_step:
            self._window = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
            self._window.__enter__()
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def on_train_batch_end(self, trainer, module: CodecGANModule, outputs, batch, batch_idx):
        if module.device.type == "cuda":
            torch.cuda.synchronize()
        wall, cpu = time.perf_counter() - self._wall, time.process_time() - self._cpu
        if batch_idx == self.memory_step:
            self.ours.peak_bytes = self._window.stop()
        elif batch_idx == self.profile_step:
            self._window.__exit__(None, None, None)
            self.ours.ops, self.ours.kernels = phase_op_seconds(self._window)
        elif self._timed(batch_idx):
            self.ours.wall.append(wall)
            self.ours.cpu.append(cpu)
            self.ours.phases.append(dict(module.phases.seconds))
        module.phases.stop()
        if not batch_idx % 2:
            self._reference_step(batch_idx, batch["audio"])


# The discriminator's own kernels, the same on both sides: its 2-D convolutions (the
# generator's 1-D convs run as 2-D ones of height 1, their backward on 3-D tensors) and
# LeakyReLU (the generator's activation is ELU).
DISCRIMINATOR_KERNELS = "discriminator's 2-D convs and LeakyReLU"


def is_discriminator_kernel(event) -> bool:
    shapes = event.input_shapes
    first = shapes[0] if shapes else []
    if event.name == "aten::mkldnn_convolution":
        return len(first) == 4 and first[2] > 1
    if event.name == "aten::convolution_backward":
        return len(first) == 4
    return event.name.startswith("aten::leaky_relu")


def phase_op_seconds(profiler: profile) -> tuple[dict[tuple[str, str], float], float]:
    """Self CPU seconds of a profiled step per (phase, op): each op counts in the innermost
    phase range around it ("rest" outside them); a phase range's own self time (Python and
    framework work between ops) counts as the op "(between ops)". Also the seconds of the
    discriminator's own kernels (`is_discriminator_kernel`), all phases together."""
    kernels = 0.0
    seconds: dict[tuple[str, str], float] = defaultdict(float)
    for event in profiler.events():
        phase = event if event.name in PHASES else event.cpu_parent
        while phase is not None and phase.name not in PHASES:
            phase = phase.cpu_parent
        name = "(between ops)" if event.name in PHASES else event.name
        seconds[(phase.name if phase else "rest", name)] += event.self_cpu_time_total / 1e6
        if is_discriminator_kernel(event):
            kernels += event.self_cpu_time_total / 1e6
    return seconds, kernels


class MemoryWindow:
    """Peak live tensor memory between `start` and `stop`: the profiler's allocation events
    on CPU, the allocator's statistics on CUDA."""

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self.profiler.__enter__()

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated() - self.base
        self.profiler.__exit__(None, None, None)
        sizes = sorted(
            (event.start_ns(), event.nbytes())
            for event in self.profiler.profiler.kineto_results.events()
            if event.name() == "[memory]"
        )
        return max(itertools.accumulate(size for _, size in sizes), default=0)


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=["+recipe=24khz", *COMMON, *overrides])


def prime_codebooks(module: CodecGANModule, audio: torch.Tensor) -> None:
    """Initialise every codebook before timing (k-means with 1 iteration), as the reference's
    are, so no timed step runs a k-means."""
    codebooks = [layer._codebook for layer in module.generator.quantizer.vq.layers]
    iters = [codebook.kmeans_iters for codebook in codebooks]
    for codebook in codebooks:
        codebook.kmeans_iters = 1
    module.generator.train()
    with torch.no_grad():
        module.generator(audio, n_q=len(codebooks))
    for codebook, n in zip(codebooks, iters, strict=True):
        codebook.kmeans_iters = n


def run_ours(overrides, reference, args, device) -> SideBySide:
    cfg = compose_config(overrides)
    module = build_module(cfg)
    steps = args.warmup + args.repeats + 1 + bool(args.profile)
    samples = int(args.seconds * module.generator.sample_rate)
    data = RandomAudio(module.generator.channels, samples, steps * args.batch)
    prime_codebooks(module, data.audio[: args.batch])
    module.to(device)
    side_by_side = SideBySide(
        reference, args.warmup, args.repeats, args.threads, bool(args.profile)
    )
    trainer = L.Trainer(
        accelerator=device.type,
        precision=cfg.trainer.precision,
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[side_by_side],
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=args.batch))
    return side_by_side


def build_reference(args, device: torch.device):
    from audiocraft_reference import ReferenceStep, audiocraft_config, import_audiocraft

    import_audiocraft()
    cfg, source = audiocraft_config(args.audiocraft_config, device.type)
    reference = ReferenceStep(cfg)
    reference.model.to(device)
    generator = torch.Generator().manual_seed(1)
    reference.prime_codebooks(
        0.1 * torch.randn(args.batch, 1, int(args.seconds * 24000), generator=generator)
    )
    print(f"reference: audiocraft's CompressionSolver.run_step; config {source}")
    return reference


def loader_segments_per_second(args) -> float:
    """Segments/s the data module's training loader delivers on the demo corpus (24 kHz,
    `--seconds` segments, `--batch`, `--workers`), after the workers' first batch."""
    from encodec_train.data.synth import ensure_demo_corpus

    cfg = compose_config(
        [
            "data=demo",
            f"data.batch_size={args.batch}",
            f"data.segment_seconds={args.seconds}",
            f"data.num_workers={args.workers}",
        ]
    )
    ensure_demo_corpus(Path("data_manifests/demo"), sample_rate=cfg.model.sample_rate, seed=0)
    data = instantiate(cfg.data)
    data.setup("fit")
    batches = iter(data.train_dataloader())
    next(batches)
    start = time.perf_counter()
    count = 20
    for _ in range(count):
        next(batches)
    return count * args.batch / (time.perf_counter() - start)


def print_comparison(name: str, run: SideBySide, args) -> None:
    ours, theirs = run.ours, run.theirs
    print(f"\n## {name}")
    header = f"{'phase':24s} {'ours s':>8s} {'ref s':>8s} {'ratio':>6s}"
    print(header)
    for phase in PHASES:
        a, b = ours.phase_median(phase), (theirs.phase_median(phase) if theirs.wall else 0.0)
        print(f"{phase:24s} {a:8.3f} {b:8.3f} {a / b if b else float('nan'):6.2f}")
    rest_theirs = theirs.rest_median() if theirs.wall else 0.0
    print(f"{'rest of the step':24s} {ours.rest_median():8.3f} {rest_theirs:8.3f}")
    total_theirs = theirs.median() if theirs.wall else float("nan")
    print(
        f"{'whole step':24s} {ours.median():8.3f} {total_theirs:8.3f} "
        f"{ours.median() / total_theirs:6.2f}"
    )
    print(
        f"{'whole step, process CPU':24s} {ours.cpu_median():8.3f} {theirs.cpu_median():8.3f} "
        f"{ours.cpu_median() / theirs.cpu_median():6.2f}"
    )
    expected = ours.median() - (1 - PAPER_UPDATE_PROBABILITY) * ours.phase_median(
        "discriminator_update"
    )
    print(
        f"ours at the paper's update probability 2/3: {expected:.3f} s/step expected "
        f"({expected / total_theirs:.2f} of the reference's every-step figure)"
    )
    mib = 2**20
    print(
        f"peak memory of a step: ours {ours.peak_bytes / mib:.0f} MiB, "
        f"reference {theirs.peak_bytes / mib:.0f} MiB"
    )
    for label, side in (("ours", ours), ("reference", theirs)):
        if side.wall:
            cpu = side.cpu_median()
            note = " (BUSY: other work shared the cores)" if side.busy(args.threads) else ""
            print(
                f"{label}: wall {side.median():.3f} s, process CPU {cpu:.3f} s "
                f"({cpu / side.median():.2f} of {args.threads} threads){note}"
            )


def print_profile(run: SideBySide, top: int) -> None:
    """Per phase, the ops of one profiled step with the largest self CPU time on either side,
    ours beside the reference's (same op names: the same ATen kernels)."""
    ours, theirs = run.ours.ops, run.theirs.ops
    print(f"\nper-op self CPU seconds of one profiled step per side (top {top} per phase)")
    for phase in (*PHASES, "rest"):
        names = {name for side in (ours, theirs) for (where, name) in side if where == phase}
        total_ours = sum(ours.get((phase, name), 0.0) for name in names)
        total_theirs = sum(theirs.get((phase, name), 0.0) for name in names)
        print(f"{phase:48s} {total_ours:8.3f} {total_theirs:8.3f}  (ours, reference)")
        ranked = sorted(
            names,
            key=lambda name: -max(ours.get((phase, name), 0.0), theirs.get((phase, name), 0.0)),
        )
        for name in ranked[:top]:
            a, b = ours.get((phase, name), 0.0), theirs.get((phase, name), 0.0)
            print(f"    {name[:44]:44s} {a:8.3f} {b:8.3f} {a - b:+8.3f}")
    steps = [sum(side.values()) for side in (ours, theirs)]
    kernels = [run.ours.kernels, run.theirs.kernels]
    print(
        f"{DISCRIMINATOR_KERNELS}: ours {kernels[0]:.3f} s of {steps[0]:.3f} s "
        f"({kernels[0] / steps[0]:.0%}), reference {kernels[1]:.3f} s of {steps[1]:.3f} s "
        f"({kernels[1] / max(steps[1], 1e-9):.0%})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1, help="loader workers measured")
    parser.add_argument(
        "--variants",
        default="defaults,plain",
        help=f"comma-separated, or 'all': {', '.join(VARIANTS)}",
    )
    parser.add_argument("--no-reference", action="store_true", help="time ours alone")
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="TOP",
        help="also profile one step per side and print the TOP ops of each phase",
    )
    parser.add_argument(
        "--audiocraft-config",
        type=Path,
        default=os.environ.get("AUDIOCRAFT_CONFIG"),
        help="an audiocraft checkout's config/ (default: $AUDIOCRAFT_CONFIG, else the "
        "transcribed values)",
    )
    args = parser.parse_args()
    names = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    torch.set_num_threads(args.threads)
    silence_unactionable_messages()
    device = torch.device(args.device)
    reference = None if args.no_reference else build_reference(args, device)
    print(
        f"24 kHz recipe, batch {args.batch} x {args.seconds:g} s, {args.threads} threads, "
        f"{device}; median of {args.repeats} steps after {args.warmup} warm-up, "
        f"alternating ours / reference; discriminator updated every step, no weight EMA"
    )
    results = {}
    for name in names:
        results[name] = run_ours(VARIANTS[name], reference, args, device)
        print_comparison(name, results[name], args)
        if args.profile:
            print_profile(results[name], args.profile)
    if len(results) > 1:
        print("\n## ours / reference per variant (same run)")
        print(f"{'variant':40s} {'wall':>6s} {'CPU':>6s}")
        for name, run in results.items():
            print(
                f"{name:40s} {run.ours.median() / run.theirs.median():6.2f} "
                f"{run.ours.cpu_median() / run.theirs.cpu_median():6.2f}"
            )
    if reference is not None:
        from audiocraft_reference import check_stubs

        check_stubs()
    consumed = args.batch / results[names[0]].ours.median()
    loader = loader_segments_per_second(args)
    print(
        f"\nloader: {loader:.1f} segments/s with {args.workers} worker(s) on the demo "
        f"corpus; the step consumes {consumed:.1f} segments/s"
    )


if __name__ == "__main__":
    main()
