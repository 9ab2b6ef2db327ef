"""The speed switches (`module.speed`, docs/speed.md) change how the step computes, not what:
each is compared with the plain computation, done here one step at a time."""

from __future__ import annotations

import copy

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from run_helpers import CONF_DIR
from torch.utils.data import DataLoader

from encodec_train.discriminator import MultiScaleSTFTDiscriminator
from encodec_train.losses import AdversarialLoss, Balancer
from encodec_train.losses.balancer import output_gradients
from encodec_train.training.builder import build_module
from encodec_train.training.quiet import silence_unactionable_messages
from encodec_train.training.speed import SpeedOptions

PLAIN = {
    "shared_spectrograms": False,
    "fused_discriminator_batches": False,
    "batched_adversarial_gradients": False,
    "channels_last": False,
    "judge_before_update": False,
    "compile": None,
}


def _audio(seed: int, batch: int = 2, samples: int = 4096) -> torch.Tensor:
    return 0.1 * torch.randn(batch, 1, samples, generator=torch.Generator().manual_seed(seed))


def _small_discriminator() -> MultiScaleSTFTDiscriminator:
    torch.manual_seed(0)
    return MultiScaleSTFTDiscriminator(filters=4, n_ffts=(512, 256, 128))


def test_spectrograms_then_judge_is_the_forward_bit_for_bit():
    discriminator, audio = _small_discriminator(), _audio(0)
    logits, maps = discriminator(audio)
    logits_2, maps_2 = discriminator.judge(discriminator.spectrograms(audio))
    assert all(torch.equal(a, b) for a, b in zip(logits, logits_2, strict=True))
    assert all(
        torch.equal(a, b)
        for scale, scale_2 in zip(maps, maps_2, strict=True)
        for a, b in zip(scale, scale_2, strict=True)
    )


def _adversarial_gradients(adversarial: AdversarialLoss, inputs) -> list[torch.Tensor]:
    fake, real = inputs
    loss = adversarial.discriminator_loss(fake, real)
    return torch.autograd.grad(loss, list(adversarial.discriminator.parameters()))


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("spectrograms", [False, True])
def test_the_discriminator_loss_and_its_gradients_do_not_depend_on_the_switches(
    fused, spectrograms
):
    fake, real = _audio(1), _audio(2)
    plain = AdversarialLoss(_small_discriminator())
    fast = AdversarialLoss(_small_discriminator(), fused_batches=fused)
    inputs = (fake, real)
    if spectrograms:
        inputs = (fast.spectrograms(fake), fast.spectrograms(real))
    expected = _adversarial_gradients(plain, (fake, real))
    got = _adversarial_gradients(fast, inputs)
    assert torch.equal(plain.discriminator_loss(fake, real), fast.discriminator_loss(*inputs))
    for a, b in zip(expected, got, strict=True):
        # One batch of 4 instead of two of 2: the same sums, maybe in another order.
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_channels_last_discriminator_gives_the_same_losses():
    fake, real = _audio(1), _audio(2)
    plain = AdversarialLoss(_small_discriminator())
    fast = copy.deepcopy(plain).to(memory_format=torch.channels_last)
    assert (
        fast.discriminator.discriminators[0]
        .spectrogram(fake)
        .is_contiguous(memory_format=torch.channels_last)
    )
    for a, b in zip(
        plain.generator_losses(fake, real), fast.generator_losses(fake, real), strict=True
    ):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)


def test_batched_adversarial_gradients_match_one_autograd_grad_at_a_time():
    adversarial = AdversarialLoss(_small_discriminator())
    weights = torch.randn(2, 1, 4096, requires_grad=True)
    output = weights * 0.5
    real = _audio(3)
    adv, feat = adversarial.generator_losses(output, real)
    losses = {"adversarial": adv, "feature_matching": feat, "time": (output - real).abs().mean()}
    expected = {
        name: torch.autograd.grad(loss, [output], retain_graph=True)[0]
        for name, loss in losses.items()
    }
    got = output_gradients(losses, output, together=("adversarial", "feature_matching"))
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-6, atol=0)
    # The last pass freed the graphs above `output`; the generator's below it is kept.
    with pytest.raises(RuntimeError, match="second time"):
        torch.autograd.grad(adv, [output])
    output.sum().backward()
    assert weights.grad is not None


def test_the_balancer_weighs_batched_gradients_as_single_ones():
    real = _audio(3)
    results = []
    for together in [(), ("adversarial", "feature_matching")]:
        adversarial = AdversarialLoss(_small_discriminator())
        balancer = Balancer({"adversarial": 3.0, "feature_matching": 3.0, "time": 0.1})
        output = _audio(4).requires_grad_()
        adv, feat = adversarial.generator_losses(output, real)
        losses = {
            "adversarial": adv,
            "feature_matching": feat,
            "time": (output - real).abs().mean(),
        }
        balancer.combine(losses, output, together).backward()
        results.append((output.grad, balancer.norm_sums.clone()))
    (grad, norms), (grad_2, norms_2) = results
    torch.testing.assert_close(grad_2, grad, rtol=1e-6, atol=0)
    torch.testing.assert_close(norms_2, norms, rtol=1e-6, atol=0)


@pytest.mark.parametrize("fused", [False, True])
def test_losses_before_update_are_the_pre_update_discriminators_judgement(fused):
    """One evaluation gives the discriminator's loss and its gradients as its update's own
    (bit for bit with separate passes) and the generator's losses and their gradients as
    judged by the same (not yet updated) discriminator."""
    adversarial = AdversarialLoss(_small_discriminator(), fused_batches=fused)
    fake, real = _audio(1).requires_grad_(), _audio(2)
    stand_in = fake.detach().requires_grad_()
    loss, adv, feat = adversarial.losses_before_update(
        adversarial.spectrograms(stand_in), adversarial.spectrograms(real)
    )
    params = list(adversarial.discriminator.parameters())
    expected_loss = adversarial.discriminator_loss(fake, real)
    expected_grads = torch.autograd.grad(expected_loss, params)
    grads = torch.autograd.grad(loss, params, retain_graph=True)
    expected_adv, expected_feat = adversarial.generator_losses(fake, real)
    exact = 0 if not fused else 1e-5  # one batch of 4: the same sums in another order
    torch.testing.assert_close(loss, expected_loss, rtol=exact, atol=0)
    for a, b in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=exact, atol=exact / 10)
    for got, expected in ((adv, expected_adv), (feat, expected_feat)):
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=0)
        (at_stand_in,) = torch.autograd.grad(got, [stand_in], retain_graph=True)
        (at_fake,) = torch.autograd.grad(expected, [fake], retain_graph=True)
        torch.testing.assert_close(at_stand_in, at_fake, rtol=1e-5, atol=1e-9)


def test_the_balancer_takes_a_stand_ins_gradients_as_the_outputs():
    """Losses computed from a leaf copy of the output are balanced as if computed from the
    output itself (the gradient reaches the output through the surrogate)."""
    real = _audio(3)
    results = []
    for stand_in in (False, True):
        adversarial = AdversarialLoss(_small_discriminator())
        balancer = Balancer({"adversarial": 3.0, "feature_matching": 3.0, "time": 0.1})
        output = _audio(4).requires_grad_()
        judged = output.detach().requires_grad_() if stand_in else output
        adv, feat = adversarial.generator_losses(judged, real)
        losses = {
            "time": (output - real).abs().mean(),
            "adversarial": adv,
            "feature_matching": feat,
        }
        stand_ins = {"adversarial": judged, "feature_matching": judged} if stand_in else {}
        balancer.combine(losses, output, stand_ins=stand_ins).backward()
        results.append((output.grad, balancer.norm_sums.clone()))
        # Every graph above the output and the stand-in was freed by its last pass.
        with pytest.raises(RuntimeError, match="second time"):
            torch.autograd.grad(feat, [judged])
    (grad, norms), (grad_2, norms_2) = results
    assert torch.equal(grad_2, grad) and torch.equal(norms_2, norms)


def test_an_unknown_compile_backend_is_refused():
    with pytest.raises(ValueError, match="module.speed.compile='fast'"):
        SpeedOptions(**{**PLAIN, "compile": "fast"})


# -- whole steps ---------------------------------------------------------------------------


class _Noise(torch.utils.data.Dataset):
    def __init__(self, items: int, samples: int) -> None:
        self.audio = 0.1 * torch.randn(
            items, 1, samples, generator=torch.Generator().manual_seed(5)
        )

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[index], "mask": torch.ones_like(self.audio[index])}


class _Losses(L.Callback):
    """The step's losses, as the module logs them (every step here)."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append({k: v for k, v in module.last_logged.items() if "loss" in k})


def _train(speed: dict, steps: int = 3) -> list[dict[str, float]]:
    """Per-step losses of `steps` demo-model GAN steps on seeded noise."""
    silence_unactionable_messages()
    overrides = [
        "training.adversary_start_step=0",
        "training.discriminator_update_prob=1",
        "training.log_every_n_steps=1",
        *(
            f"module.speed.{key}={'null' if value is None else value}"
            for key, value in speed.items()
        ),
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    torch.manual_seed(0)
    module = build_module(cfg)
    losses = _Losses()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[losses],
    )
    data = DataLoader(_Noise(2 * steps, 12000), batch_size=2)
    trainer.fit(module, train_dataloaders=data)
    return losses.steps


def _assert_same_losses(got: list[dict], expected: list[dict], rtol: float, what: str) -> None:
    assert len(got) == len(expected) and expected[0].keys() == got[0].keys()
    for step, (a, b) in enumerate(zip(got, expected, strict=True)):
        for key in b:
            assert a[key] == pytest.approx(b[key], rel=rtol, abs=1e-7), (
                f"{what}, step {step}: {key}"
            )


@pytest.mark.slow
def test_each_switch_on_trains_as_the_plain_step():
    plain = _train(PLAIN)
    assert len(plain) == 3 and "train/loss_adversarial" in plain[0]
    # The same operations on the same numbers: bit for bit, step after step.
    for switch in ("shared_spectrograms", "batched_adversarial_gradients"):
        _assert_same_losses(_train({**PLAIN, switch: True}), plain, 0, switch)
    # The same sums in another order (one batch of fake and real, another memory layout):
    # the updates differ by rounding, which Adam's normalised steps carry into the later
    # losses (measured: ≤ 2e-4 relative in the first step's, ≤ 1.1% after two updates).
    for switch in ("fused_discriminator_batches", "channels_last"):
        _assert_same_losses(_train({**PLAIN, switch: True}), plain, 2e-2, switch)


@pytest.mark.slow
def test_compiled_networks_train_as_eager_ones():
    # aot_eager: Dynamo's capture and AOTAutograd's graphs without Inductor's C++ build
    # (minutes on a small CPU); the graphs the inductor backend would compile.
    eager = _train(PLAIN, steps=1)
    compiled = _train({**PLAIN, "compile": "aot_eager"}, steps=1)
    _assert_same_losses(compiled, eager, 1e-4, "compiled")


@pytest.mark.slow
def test_judging_before_the_update_changes_only_what_judges_the_generator():
    """Not exact by design: the first step's discriminator update, reconstruction losses and
    commitment are the plain step's bit for bit; only the generator's adversarial losses
    (judged by the discriminator before its update) differ."""
    plain = _train(PLAIN, steps=1)[0]
    early = _train({**PLAIN, "judge_before_update": True}, steps=1)[0]
    for key in ("discriminator_loss", "loss_time", "loss_mel", "loss_commitment"):
        assert early[f"train/{key}"] == plain[f"train/{key}"], key
    for key in ("loss_adversarial", "loss_feature_matching"):
        assert early[f"train/{key}"] != plain[f"train/{key}"], key
