"""How much of audiocraft's training step is discriminator work that ours does too.

Process-CPU seconds of our MS-STFT discriminator doing exactly a training step's
discriminator work (the update on decoded and real audio, the generator-loss passes on both,
the balancer's two gradient passes to the decoded audio; and the same with
`judge_before_update`: one evaluation serving both), alternating with audiocraft's whole
`CompressionSolver.run_step` (`audiocraft_reference.py`), 24 kHz, batch 4 × 1 s. Both
discriminators run the same kernels, so their work is a floor under our step in units of the
reference's: no change to the rest of the step can take ours below it.

    python benchmarks/discriminator_share.py [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from audiocraft_reference import ReferenceStep, audiocraft_config, import_audiocraft

from encodec_train.discriminator import MultiScaleSTFTDiscriminator
from encodec_train.losses import AdversarialLoss

SAMPLES = 24000


def audio(seed: int, batch: int) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 1, SAMPLES, generator=torch.Generator().manual_seed(seed))


class DiscriminatorWork:
    """One step's discriminator work of ours, on stand-ins for the decoded audio."""

    def __init__(self, batch: int, judge_before_update: bool) -> None:
        torch.manual_seed(0)
        self.adversarial = AdversarialLoss(MultiScaleSTFTDiscriminator())
        parameters = list(self.adversarial.discriminator.parameters())
        self.optimizer = torch.optim.Adam(parameters, lr=3e-4, betas=(0.5, 0.9), foreach=True)
        self.real, self.batch = audio(1, batch), batch
        self.judge_before_update = judge_before_update

    def __call__(self, seed: int) -> None:
        adversarial, optimizer = self.adversarial, self.optimizer
        fake = audio(seed, self.batch).requires_grad_()
        with torch.no_grad():
            real = adversarial.spectrograms(self.real)
        judged = adversarial.spectrograms(fake)
        optimizer.zero_grad(set_to_none=True)
        if self.judge_before_update:
            loss, adv, feat = adversarial.losses_before_update(judged, real)
            parameters = list(adversarial.discriminator.parameters())
            loss.backward(retain_graph=True, inputs=parameters)
        else:
            adversarial.discriminator_loss(judged, real).backward()
            optimizer.step()
            adv, feat = adversarial.generator_losses(judged, real)
        torch.autograd.grad(adv, [fake], retain_graph=True)
        torch.autograd.grad(feat, [fake])
        if self.judge_before_update:
            optimizer.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import_audiocraft()
    reference = ReferenceStep(audiocraft_config(None, "cpu")[0])
    reference.prime_codebooks(audio(2, args.batch))
    runs = {
        "audiocraft's whole step": lambda seed: reference(seed, audio(seed, args.batch)),
        "our discriminator's work": DiscriminatorWork(args.batch, False),
        "the same, judge_before_update": DiscriminatorWork(args.batch, True),
    }
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for seed in range(args.repeats + 1):  # the first round warms up
        for name, run in runs.items():
            start = time.process_time()
            run(seed)
            if seed:
                seconds[name].append(time.process_time() - start)
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    whole = medians["audiocraft's whole step"]
    print(
        f"batch {args.batch} x 1 s, {args.threads} threads; process CPU, median of {args.repeats}"
    )
    for name, value in medians.items():
        print(f"{name:32s} {value:7.3f} s  ({value / whole:.2f} of audiocraft's step)")


if __name__ == "__main__":
    main()
