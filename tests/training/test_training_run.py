"""End-to-end training on the demo corpus: learning, checkpoints, exact resume, fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch
from run_helpers import demo_config, logged_steps

from encodec_train.model import EncodecModel
from encodec_train.training.builder import build_module, fit
from encodec_train.training.callbacks import TrainingHealth


def _losses_per_step(run_dir) -> list[dict[str, float]]:
    return [
        {k: v for k, v in row.items() if k.startswith("train/loss_")}
        for row in logged_steps(run_dir)
    ]


@pytest.mark.parametrize(
    "schedule",
    [
        ("trainer.limit_train_batches=40",),  # stop mid-epoch
        # Stop exactly at an epoch's end, right after its validation: data loaders and
        # validation then draw from torch's global generator before the next step, which
        # once shifted the codebooks' k-means and dead-code draws.
        ("trainer.limit_train_batches=2",),
        ("trainer.limit_train_batches=3", "trainer.val_check_interval=1"),  # mid-epoch validation
    ],
    ids=["mid-epoch", "epoch-boundary", "mid-epoch-validation"],
)
def test_exact_resume_reproduces_the_uninterrupted_run(tmp_path, corpus, schedule):
    steps, stop = 4, 2
    common = (
        "checkpoint_every_n_steps=1",
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        *schedule,
    )
    full, _, _ = fit(demo_config(tmp_path / "full", *common, corpus=corpus))

    _, trainer, _ = fit(
        demo_config(tmp_path / "split", *common, f"trainer.max_steps={stop}", corpus=corpus)
    )
    assert trainer.global_step == stop
    resumed, trainer, _ = fit(demo_config(tmp_path / "split", *common, corpus=corpus))
    assert trainer.global_step == steps

    expected = _losses_per_step(tmp_path / "full" / "run")
    got = _losses_per_step(tmp_path / "split" / "run")  # both starts' logs, in order
    assert len(expected) == len(got) == steps
    for step, (a, b) in enumerate(zip(expected, got, strict=True), start=1):
        assert a.keys() == b.keys(), step
        for key in a:
            assert b[key] == pytest.approx(a[key], rel=1e-5, abs=1e-7), (step, key)
    for (name, a), b in zip(
        full.generator.state_dict().items(), resumed.generator.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(
            b, a, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_checkpoint_rebuilds_the_model_without_config(tmp_path, corpus):
    module, trainer, _ = fit(demo_config(tmp_path, "trainer.max_steps=2", corpus=corpus))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    # One last.ckpt, not a last-v1.ckpt beside it.
    assert [p.name for p in last.parent.iterdir()] == ["last.ckpt"]
    model = EncodecModel.from_checkpoint(last)
    assert model.config == module.generator.config
    for name, tensor in module.generator.state_dict().items():
        torch.testing.assert_close(model.state_dict()[name], tensor, msg=name)
    # Everything a resume needs: both optimizers, every RNG, the balancer's EMA, the data
    # stream's position; and it loads without unpickling arbitrary objects.
    checkpoint = torch.load(last, weights_only=True)
    assert len(checkpoint["optimizer_states"]) == 2
    assert set(checkpoint["rng_states"]) >= {"module", "torch", "numpy", "python"}
    assert {"balancer.norm_sums", "balancer.norm_count"} <= set(checkpoint["state_dict"])
    assert checkpoint["AudioDataModule"]["batches_consumed"] == 2


def test_init_from_official_checkpoint(tmp_path, corpus):
    """Fine-tuning from a state dict written by the reference package (random weights,
    filled codebooks): the weights arrive, step and optimizers start afresh."""
    encodec = pytest.importorskip("encodec")
    # The reference package's modules, shaped like the demo's tiny preset.
    conv = dict(n_filters=8, dimension=64, lstm=1, causal=True, norm="weight_norm")
    reference = encodec.EncodecModel(
        encodec.modules.SEANetEncoder(**conv),
        encodec.modules.SEANetDecoder(**conv),
        encodec.quantization.ResidualVectorQuantizer(dimension=64, n_q=16, bins=32),
        target_bandwidths=[1.5, 3.0, 6.0],
        sample_rate=24000,
        channels=1,
    )
    # Codebooks as a trained checkpoint holds them: vectors with consistent EMA statistics.
    for layer in reference.quantizer.vq.layers:
        codebook = layer._codebook
        codebook.embed.copy_(torch.randn_like(codebook.embed))
        codebook.cluster_size.fill_(100.0)
        codebook.embed_avg.copy_(codebook.embed * 100.0)
        codebook.inited.fill_(1.0)
    state = reference.state_dict()
    path = tmp_path / "official.th"
    torch.save(state, path)

    module, trainer, _ = fit(
        demo_config(tmp_path, f"init_from={path}", "trainer.max_steps=1", corpus=corpus)
    )
    assert trainer.global_step == 1
    ours = module.generator.state_dict()
    # One Adam step moves each weight by at most about lr (3e-4).
    torch.testing.assert_close(
        ours["encoder.model.0.conv.conv.bias"],
        state["encoder.model.0.conv.conv.bias"],
        atol=1e-3,
        rtol=0,
    )
    torch.testing.assert_close(
        ours["encoder.model.0.conv.conv.parametrizations.weight.original1"],
        state["encoder.model.0.conv.conv.weight_v"],
        atol=1e-3,
        rtol=0,
    )
    # The loaded codebooks continue their EMA (decay 0.99) instead of a k-means restart, so
    # after one step every code has moved by at most ~1% of its distance to the data.
    for level in range(16):
        key = f"quantizer.vq.layers.{level}._codebook.embed"
        moved = (ours[key] - state[key]).norm(dim=1) / state[key].norm(dim=1)
        assert moved.max() < 0.05, (level, moved.max())


def test_init_from_a_mismatching_checkpoint_lists_keys_and_shapes(tmp_path, corpus):
    from encodec_train.convert import CheckpointMismatchError, export_official
    from encodec_train.model import encodec_24khz

    path = export_official(encodec_24khz(), tmp_path / "big.th")
    with pytest.raises(CheckpointMismatchError, match=r"shape mismatch .*checkpoint \(32, 1, 1\)"):
        fit(demo_config(tmp_path, f"init_from={path}", "trainer.max_steps=1", corpus=corpus))


def test_demo_codec_encodes_its_input_after_its_reconstruction_steps(tmp_path, corpus):
    """The demo's first 200 steps (its reconstruction warm-up) give a codec whose output
    depends on its input: several level-0 codes in use, a latent that moves over time, each
    clip's reconstruction clearly closer to its own input than to the other clips. The
    collapsed demo this replaced scored 1.0, 0.02 and 1.000."""
    cfg = demo_config(
        tmp_path,
        "trainer.max_steps=200",
        "trainer.max_epochs=-1",
        "data.batch_size=4",
        "training.adversary_start_step=600",  # the demo's own warm-up
        # In the warm-up the discriminator's updates do not touch the generator, so leaving
        # them out trains exactly the demo's codec, in a third of the time.
        "training.discriminator_update_prob=0",
        "health.every_n_steps=200",
        corpus=corpus,
    )
    _, trainer, _ = fit(cfg)
    health = next(c for c in trainer.callbacks if isinstance(c, TrainingHealth))
    report = health.reports[-1]
    assert report.step == 200
    assert report.level0_perplexity > 4, report
    assert report.encoder_temporal_variation > 0.3, report
    assert report.own_other_ratio < 0.85, report
    found = health.check.problems(report)  # this probe's findings, before any patience
    assert not {"perplexity", "temporal_variation", "own_other_ratio"} & set(found), found


def test_bf16_mixed_training_runs_with_the_quantizer_in_fp32(tmp_path, corpus):
    """The GPU recipes' precision, exercised through CPU autocast: losses stay finite and the
    codebooks (updated under autocast) stay fp32."""
    module, trainer, _ = fit(
        demo_config(tmp_path, "trainer.precision=bf16-mixed", "trainer.max_steps=2", corpus=corpus)
    )
    assert trainer.global_step == 2
    assert all(math.isfinite(v) for row in logged_steps(tmp_path / "run") for v in row.values())
    codebook = module.generator.quantizer.vq.layers[0]._codebook
    assert codebook.embed.dtype == torch.float32 and bool(codebook.inited)


def test_a_crash_while_writing_last_ckpt_leaves_the_previous_one_intact(
    tmp_path, corpus, monkeypatch
):
    from fsspec.implementations.local import LocalFileOpener

    _, trainer, _ = fit(demo_config(tmp_path, "trainer.max_steps=1", corpus=corpus))
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    good = last.read_bytes()

    write = LocalFileOpener.write

    def crash_halfway(self, data):
        write(self, data[: len(data) // 2])
        raise OSError("disk full")

    monkeypatch.setattr(LocalFileOpener, "write", crash_halfway)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint(last)
    monkeypatch.undo()
    assert last.read_bytes() == good
    assert torch.load(last, weights_only=True)["global_step"] == 1


def _discriminator_states(module) -> list[dict[str, torch.Tensor]]:
    adversarial = module.adversarial
    return [adversarial.judge(i).state_dict() for i in range(adversarial.copies)]


def _same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[key], b[key]) for key in a)


def test_one_discriminator_per_bandwidth_only_the_drawn_one_learns(tmp_path, corpus):
    """Paper §3.4: a dedicated discriminator per bandwidth, only the drawn one evaluated and
    updated. After one step (discriminator always updated) exactly the drawn bandwidth's
    discriminator differs from the untouched copies."""
    cfg = demo_config(
        tmp_path,
        "training.discriminator_per_bandwidth=true",
        "training.discriminator_update_prob=1",
        "trainer.max_steps=1",
        corpus=corpus,
    )
    module, _, _ = fit(cfg)
    states = _discriminator_states(module)
    assert len(states) == 3  # 1.5, 3 and 6 kbps
    n_q = logged_steps(tmp_path / "run")[0]["train/codebooks"]
    drawn = [module.generator.num_codebooks(b) for b in module.generator.target_bandwidths].index(
        n_q
    )
    untouched = [i for i in range(3) if i != drawn]
    assert _same(states[untouched[0]], states[untouched[1]])
    assert not _same(states[drawn], states[untouched[0]])
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(k.startswith("adversarial.discriminator.2.") for k in checkpoint["state_dict"])


def test_fine_tuning_per_bandwidth_discriminators_from_a_single_one(tmp_path, corpus):
    single, _, _ = fit(demo_config(tmp_path / "single", "trainer.max_steps=1", corpus=corpus))
    source = tmp_path / "single" / "run" / "checkpoints" / "last.ckpt"
    module = build_module(
        demo_config(
            tmp_path / "tuned",
            "training.discriminator_per_bandwidth=true",
            f"init_from={source}",
            corpus=corpus,
        )
    )
    trained = single.adversarial.discriminator.state_dict()
    for state in _discriminator_states(module):
        assert _same(state, trained)
