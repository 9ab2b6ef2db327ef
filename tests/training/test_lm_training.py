"""Training the entropy model: the recipes, learning on code shards through the entry point's
builder, exact resume, and the codes of a frozen codec from audio batches."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from encodec_train import CONFIG_DIR
from encodec_train.compression.models import load_entropy_model
from encodec_train.data.code_shards import write_code_shard
from encodec_train.model import encodec_tiny, save_model
from encodec_train.training.builder import fit
from encodec_train.training.dry_run import plan

CARD, LEVELS, FRAME_RATE = 32, 4, 75


def compose_lm(*overrides: str):
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


@pytest.mark.parametrize(
    ("recipe", "rate", "context"), [("24khz_lm", 75, 262), ("48khz_lm", 150, 525)]
)
def test_recipes_build_the_papers_entropy_model(recipe, rate, context):
    cfg = compose_lm(f"+recipe={recipe}", "codec_checkpoint=codec.th")
    lm = instantiate(cfg.lm)(n_q=4, codebook_size=1024)
    assert (lm.dim, lm.transformer.layers[0].self_attn.num_heads, len(lm.transformer.layers)) == (
        200,
        8,
        5,
    )
    assert lm.transformer.layers[0].linear1.out_features == 800
    assert lm.transformer.past_context == context == int(3.5 * rate)
    assert cfg.module._target_.endswith("EntropyLMModule") and "health" not in cfg.callbacks


def markov_codes(frames: int, seed: int) -> torch.Tensor:
    """int16 [LEVELS, frames]: each level steps +1 (mod CARD) with probability 0.9, else
    jumps anywhere: about 0.9·log2(1/0.9) + 0.1·log2(CARD/0.1) ≈ 1 bit a code instead of 5."""
    gen = torch.Generator().manual_seed(seed)
    codes = torch.zeros(LEVELS, frames, dtype=torch.int16)
    codes[:, 0] = torch.randint(CARD, (LEVELS,), generator=gen)
    for t in range(1, frames):
        jump = torch.rand(LEVELS, generator=gen) < 0.1
        codes[:, t] = torch.where(
            jump, torch.randint(CARD, (LEVELS,), generator=gen), (codes[:, t - 1] + 1) % CARD
        )
    return codes


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    metadata = {
        "sample_rate": 24_000,
        "frame_rate": FRAME_RATE,
        "bandwidth": 1.5,
        "n_q": LEVELS,
        "codebook_size": CARD,
        "checkpoint": "none",
    }
    for split, seed in (("train", 0), ("valid", 100)):
        items = [(f"{split}{i}.wav", markov_codes(400, seed + i)) for i in range(3)]
        write_code_shard(root / split / "shard-000000.safetensors", items, metadata)
    return root


def shard_run(tmp_path, shards, *overrides):
    return compose_lm(
        "module=entropy_lm",
        "callbacks=lm",
        "+lm=tiny",
        "data=code_shards",
        "+codec_checkpoint=null",
        "demo_corpus=null",
        f"run_dir={tmp_path}",
        f"data.train_root={shards / 'train'}",
        f"data.valid_root={shards / 'valid'}",
        "data.segment_seconds=0.5",
        "data.batch_size=8",
        "data.num_workers=0",
        "data.valid_batches=2",
        "trainer.limit_val_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.max_epochs=-1",
        "training.log_every_n_steps=5",
        "module.optimizer.lr=3e-3",
        *overrides,
    )


@pytest.mark.slow
def test_the_model_learns_the_codes_of_held_out_shards(tmp_path, shards):
    module, trainer, datamodule = fit(shard_run(tmp_path, shards, "trainer.max_steps=60"))
    result = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    bits = result["valid/bits_per_frame@1.5kbps"]
    assert bits < 0.6 * LEVELS * math.log2(CARD)  # from 20 bits a frame towards ~4
    assert result["valid/kbps@1.5kbps"] == pytest.approx(bits * FRAME_RATE / 1000, rel=1e-5)
    assert result["valid/reduction@1.5kbps"] == pytest.approx(100 * (1 - bits / 20), rel=1e-4)
    lm = load_entropy_model(tmp_path / "checkpoints" / "last.ckpt")  # needs no config
    for (name, a), b in zip(module.lm.state_dict().items(), lm.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_resume_reproduces_the_uninterrupted_run(tmp_path, shards):
    common = ("checkpoint_every_n_steps=1",)
    full, _, _ = fit(shard_run(tmp_path / "full", shards, "trainer.max_steps=8", *common))
    fit(shard_run(tmp_path / "split", shards, "trainer.max_steps=5", *common))
    resumed, trainer, _ = fit(shard_run(tmp_path / "split", shards, "trainer.max_steps=8", *common))
    assert trainer.global_step == 8
    for (name, a), b in zip(
        full.lm.state_dict().items(), resumed.lm.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(
            b, a, rtol=1e-6, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}"
        )


def test_codes_come_from_the_frozen_codec_and_padding_is_masked(tmp_path):
    torch.manual_seed(0)
    codec = encodec_tiny().eval()
    path = save_model(codec, tmp_path / "codec.pt")
    cfg = compose_lm("+recipe=demo_lm", f"codec_checkpoint={path}")
    module = instantiate(cfg.module)
    assert not any(name.startswith("codec") for name in module.state_dict())  # not saved
    audio = 0.1 * torch.randn(2, 1, 3200)
    mask = torch.ones(2, 1, 3200)
    mask[1, :, 1600:] = 0
    codes, frame_mask = module.codes_of({"audio": audio, "mask": mask})
    assert torch.equal(codes, codec.encode(audio)[0].codes)
    assert frame_mask.tolist() == [[1.0] * 10, [1.0] * 5 + [0.0] * 5]
    assert module.lm.n_q == codec.quantizer.n_q and module.lm.codebook_size == CARD


def test_dry_run_plans_an_entropy_model_on_code_shards_and_names_what_is_missing(tmp_path, shards):
    text, problems = plan(shard_run(tmp_path / "run", shards))
    assert problems == 0, text
    # 0.5 s at 75 frames/s: windows of round(37.5) = 38 frames, 400 // 38 = 10 per item.
    assert f"data.train_root={shards / 'train'}: 1 shard(s), 30 windows of 38 frames" in text
    # 1.5 kbps of 5-bit codes at 75 frames/s: 4 codebooks; the entropy model, not a codec.
    assert "4 codebooks of 32 codes, bandwidths [1.5] kbps" in text
    assert "discriminator" not in text and not (tmp_path / "run").exists()
    text, problems = plan(shard_run(tmp_path, shards, f"data.train_root={tmp_path / 'none'}"))
    assert problems == 1 and f"PROBLEM: data.train_root={tmp_path / 'none'}: no code" in text
    missing = tmp_path / "codec.ckpt"
    text, problems = plan(compose_lm("+recipe=demo_lm", f"codec_checkpoint={missing}"))
    assert problems == 1 and f"PROBLEM: codec checkpoint {missing} does not exist" in text


def test_shuffled_windows_resume_at_any_batch_and_cover_each_pass(shards):
    from encodec_train.data.code_shards import CodeShardDataset
    from encodec_train.training.lm_module import ShuffledWindows

    windows = CodeShardDataset(shards / "train", frames=40)  # 3 items × 10 windows
    stream = ShuffledWindows(windows, batch_size=4, seed=0)
    first = list(itertools.islice(iter(stream), 16))
    stream.start = 9
    resumed = list(itertools.islice(iter(stream), 7))
    assert all(torch.equal(a, b) for a, b in zip(first[9:], resumed, strict=True))
    every = {tuple(w.flatten().tolist()) for w in (windows[i] for i in range(len(windows)))}
    one_pass = {tuple(w.flatten().tolist()) for batch in first[:7] for w in batch}
    assert len(one_pass) == 28 and one_pass <= every  # 7 batches of distinct windows
    assert not torch.equal(torch.cat(first[:7]), torch.cat(first[7:14]))  # reshuffled


def test_shards_serve_every_lower_bandwidth():
    """Residual VQ codes at a lower bandwidth are the first codebooks of the shards' codes."""
    from encodec_train.training.lm_module import CodeSource

    metadata = {"frame_rate": FRAME_RATE, "codebook_size": CARD, "bandwidth": 1.5, "n_q": LEVELS}
    assert CodeSource.from_shards(metadata, None).codebooks == [4]
    assert CodeSource.from_shards(metadata, [1.5, 0.75]).codebooks == [2, 4]
    with pytest.raises(ValueError, match="the shards hold 4 codebooks"):
        CodeSource.from_shards(metadata, [3.0])


def test_audio_at_another_rate_than_the_codec_is_refused(tmp_path):
    from types import SimpleNamespace

    from encodec_train.data.datamodule import AudioDataModule

    path = save_model(encodec_tiny(), tmp_path / "codec.pt")
    module = instantiate(compose_lm("+recipe=demo_lm", f"codec_checkpoint={path}").module)
    data = AudioDataModule.__new__(AudioDataModule)  # only its reader is looked at
    data.reader = SimpleNamespace(sample_rate=48_000, channels=1)
    module._trainer = SimpleNamespace(datamodule=data)
    with pytest.raises(ValueError, match="read at 48000 Hz, 1 channel.*takes 24000 Hz"):
        module.setup("fit")
    data.reader = SimpleNamespace(sample_rate=24_000, channels=1)
    module.setup("fit")
