"""The LightningDataModule: exact mid-epoch resume through Lightning, ranks, validation, configs."""

import json
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from fake_corpora import PAPER_STRATEGIES
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import OmegaConf
from test_dataset import assert_same, take, write_corpus

from encodec_train import CONFIG_DIR
from encodec_train.data.datamodule import AudioDataModule

CONF = CONFIG_DIR / "data"


@pytest.fixture(scope="module")
def manifests(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("corpus")
    return {split: str(write_corpus(root, split)) for split in ("train", "valid")}


def datamodule(manifests: dict[str, str], **overrides) -> AudioDataModule:
    options = {
        "train_manifests": [manifests["train"]],
        "valid_manifests": [manifests["valid"]],
        "sample_rate": 8000,
        "channels": 1,
        "segment_seconds": 0.25,
        "batch_size": 2,
        "num_workers": 0,
        "seed": 0,
        "valid_batches": 3,
        "strategies": PAPER_STRATEGIES,
    } | overrides
    return AudioDataModule(**options)


class Recorder(L.LightningModule):
    """Trains one scalar and records every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(()))
        self.train_batches: list[dict] = []
        self.valid_batches: list[dict] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.train_batches.append(batch)
        return (self.weight - batch["audio"].mean()).square()

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self.valid_batches.append(batch)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(data: AudioDataModule, root: Path, max_steps: int, ckpt_path=None, module=None) -> Recorder:
    """Train `module` (a new `Recorder` by default) with 3-batch epochs (so runs cross epoch
    boundaries) and a checkpoint every 4 steps."""
    module = module or Recorder()
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        limit_train_batches=3,
        limit_val_batches=1,
        num_sanity_val_steps=0,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=root,
        callbacks=[ModelCheckpoint(root, "{step}", every_n_train_steps=4, save_top_k=-1)],
    )
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)
    return module


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resume_from_a_mid_epoch_checkpoint_sees_the_uninterrupted_batches(
    manifests, tmp_path, num_workers, recwarn
):
    uninterrupted = fit(datamodule(manifests, num_workers=num_workers), tmp_path / "a", 7)
    interrupted_data = datamodule(manifests, num_workers=num_workers)
    interrupted = fit(interrupted_data, tmp_path / "b", 4)
    resumed_data = datamodule(manifests, num_workers=num_workers)
    resumed = fit(resumed_data, tmp_path / "c", 7, ckpt_path=tmp_path / "b" / "step=4.ckpt")

    assert len(uninterrupted.train_batches) == 7
    assert_same(interrupted.train_batches, uninterrupted.train_batches[:4])
    assert_same(resumed.train_batches, uninterrupted.train_batches[4:])
    # Validation batches are never counted as training batches.
    assert len(uninterrupted.valid_batches) == 2
    assert resumed_data.batches_consumed == 7 and interrupted_data.batches_consumed == 4
    assert "skipped_files" not in uninterrupted.train_batches[0]
    assert not [w for w in recwarn if "not resumable" in str(w.message)]


def test_ranks_get_different_training_batches_and_share_the_validation_batches(manifests):
    loaders = {}
    for rank, world_size in ((0, 1), (0, 2), (1, 2)):
        data = datamodule(manifests)
        data.trainer = SimpleNamespace(global_rank=rank, world_size=world_size)
        data.setup("fit")
        loaders[rank, world_size] = (data.train_dataloader(), data.val_dataloader())
    train = {key: take(loader, 2) for key, (loader, _) in loaders.items()}
    assert_same(train[0, 1], train[0, 2])  # rank 0's stream does not depend on the world size
    assert not torch.equal(train[0, 2][0]["audio"], train[1, 2][0]["audio"])
    valid = {key: list(loader) for key, (_, loader) in loaders.items()}
    assert_same(valid[0, 1], list(loaders[0, 1][1]))  # the same every time
    assert_same(valid[0, 1], [valid[0, 2][0], valid[1, 2][0], valid[0, 2][1]])


def test_state_dict_round_trip_moves_the_train_loader(manifests):
    data = datamodule(manifests)
    data.setup("fit")
    reference = take(data.train_dataloader(), 5)
    restored = datamodule(manifests)
    restored.load_state_dict({"batches_consumed": 3, "skipped_files": 0})
    restored.setup("fit")
    assert_same(take(restored.train_dataloader(), 2), reference[3:])


def test_missing_manifest_fails_at_setup_naming_it(manifests, tmp_path):
    data = datamodule(manifests, valid_manifests=[str(tmp_path / "lost" / "valid.jsonl")])
    with pytest.raises(FileNotFoundError, match="lost/valid.jsonl"):
        data.setup("fit")


def test_no_valid_manifests_means_no_validation(manifests):
    data = datamodule(manifests, valid_manifests=None)
    data.setup("fit")
    assert data.val_dataloader() == []


def compose(name: str, **data_overrides) -> AudioDataModule:
    """Instantiate conf/data/<name>.yaml (its defaults list merged in) as the entry point would."""
    import encodec_train.training  # noqa: F401 - registers the configs' resolvers

    config = OmegaConf.load(CONF / f"{name}.yaml")
    for parent in config.pop("defaults", []):
        if parent != "_self_":
            config = OmegaConf.merge(OmegaConf.load(CONF / f"{parent}.yaml"), config)
    root = OmegaConf.create(
        {
            "model": {"sample_rate": 24000, "channels": 1},
            "seed": 3,
            # The recipes' global batch on one 8-GPU node: 8 per rank.
            "training": {"global_batch_size": 64},
            "trainer": {"devices": 8, "num_nodes": 1},
        }
    )
    root.data = OmegaConf.merge(config, data_overrides)
    return instantiate(root.data)


def test_demo_config_builds_and_streams(manifests):
    data = compose(
        "demo", train_manifests=[manifests["train"]], valid_manifests=[manifests["valid"]]
    )
    assert [s.name for s in data.strategies] == ["s1", "s2", "s3", "s4"]
    assert [s.probability for s in data.strategies] == [0.32, 0.32, 0.24, 0.12]
    assert data.strategies[3].exclude_domains == ["music"] and data.seed == 3
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["audio"].shape == (4, 1, 12000)  # 4 half-second segments at 24 kHz


@pytest.mark.parametrize(
    ("name", "first_manifest"),
    [("mixture_24khz", "dns_challenge.jsonl"), ("mixture_48khz", "jamendo_48khz.jsonl")],
)
def test_mixture_configs_name_the_recipe_manifests(name, first_manifest, tmp_path, monkeypatch):
    data = compose(name)
    assert data.batch_size == 8 and data.mixer.gain_db == (-10.0, 6.0)
    assert data.valid_manifests == data.train_manifests
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match=f"data_manifests/{first_manifest}"):
        data.setup("fit")


def test_config_check_names_every_missing_manifest(manifests, tmp_path):
    from encodec_train.training.config_checks import ConfigError, check_manifests

    lost = [str(tmp_path / name) for name in ("a.jsonl", "b.jsonl", "c.jsonl")]
    data = OmegaConf.create(
        {"train_manifests": [lost[0], manifests["train"], lost[1]], "valid_manifests": [lost[2]]}
    )
    with pytest.raises(ConfigError) as error:
        check_manifests(data)
    message = str(error.value)
    assert message.startswith("3 manifest(s) do not exist")
    for key, path in [("train", lost[0]), ("train", lost[1]), ("valid", lost[2])]:
        assert f"data.{key}_manifests: manifest {path}" in message
    assert manifests["train"] not in message


# --- files that cannot be read: the count the training loop logs ---


class SkipCountRecorder(Recorder):
    """Records, at every training step, the replaced draws the data module reports."""

    def __init__(self) -> None:
        super().__init__()
        self.skipped_files: list[int] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.skipped_files.append(self.trainer.datamodule.skipped_files)
        return super().training_step(batch, batch_idx)


@pytest.fixture(scope="module")
def garbage_manifest(tmp_path_factory) -> str:
    """Tones plus one unreadable file that most non-music draws pick (30 s against 18 s)."""
    return str(write_corpus(tmp_path_factory.mktemp("garbage"), garbage=1))


def skipped_per_batch(manifest: str, stream: int, count: int) -> list[int]:
    """The replaced draws of the first `count` training batches of `stream`, each batch built
    directly in this process (no loader, no worker)."""
    data = datamodule({"train": manifest, "valid": manifest})
    dataset = data._dataset([manifest], stream)
    return [dataset.batch(b)["skipped_files"] for b in range(count)]


def test_main_process_sees_the_skips_of_batches_built_in_a_worker(garbage_manifest, tmp_path):
    data = datamodule({"train": garbage_manifest, "valid": garbage_manifest}, num_workers=1)
    module = fit(data, tmp_path, 6, module=SkipCountRecorder())
    per_batch = skipped_per_batch(garbage_manifest, 0, 6)
    assert sum(per_batch) > 0
    # At each step: the batches trained on so far, this one included; neither those a worker
    # prefetched nor the validation batches (which meet the bad file too).
    assert module.skipped_files == np.cumsum(per_batch).tolist()
    assert data.skipped_files == sum(per_batch) == data.state_dict()["skipped_files"]


def _count_on_rank(rank: int, manifest: str, batches: int, folder: str) -> None:
    """One of two gloo ranks: take `batches` training batches from a one-worker loader
    through the data module's hook and save the count it reports."""
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2
    )
    data = datamodule({"train": manifest, "valid": manifest}, num_workers=1)
    data.trainer = SimpleNamespace(
        global_rank=rank,
        world_size=2,
        training=True,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )
    data.setup("fit")
    for batch in take(data.train_dataloader(), batches):
        data.on_before_batch_transfer(batch, 0)
    Path(folder, f"rank{rank}.json").write_text(json.dumps(data.skipped_files))
    torch.distributed.destroy_process_group()


def test_every_rank_reports_the_skips_of_all_ranks(garbage_manifest, tmp_path):
    # Forked, not spawned: a spawned rank spends half a minute importing the test's modules.
    torch.multiprocessing.start_processes(
        _count_on_rank, (garbage_manifest, 4, str(tmp_path)), nprocs=2, start_method="fork"
    )
    per_rank = [sum(skipped_per_batch(garbage_manifest, rank, 4)) for rank in (0, 1)]
    assert min(per_rank) > 0  # both ranks met the bad file: rank 0 alone would under-count
    for rank in (0, 1):
        assert json.loads((tmp_path / f"rank{rank}.json").read_text()) == sum(per_rank)


# --- clipped mixtures: the counts the training loop can log ---


def test_clipping_counts_reach_the_data_module_and_its_checkpoint(manifests, tmp_path):
    # At 0 dBFS RMS (sine peaks at +3 dB) most mixtures clip: rejections and fallbacks happen.
    options = {"rms_db": 0.0, "max_redraws": 1}
    data = datamodule(manifests, **options)
    fit(data, tmp_path, 5)
    dataset = datamodule(manifests, **options)._dataset([manifests["train"]], 0)
    per_batch = [dataset.batch(b) for b in range(5)]
    rejected = sum(b["rejected_mixtures"] for b in per_batch)
    scaled = sum(b["scaled_mixtures"] for b in per_batch)
    assert rejected > 0 and scaled > 0
    assert (data.rejected_mixtures, data.scaled_mixtures) == (rejected, scaled)
    state = data.state_dict()
    assert (state["rejected_mixtures"], state["scaled_mixtures"]) == (rejected, scaled)
    restored = datamodule(manifests)
    restored.load_state_dict(state)
    assert (restored.rejected_mixtures, restored.scaled_mixtures) == (rejected, scaled)
