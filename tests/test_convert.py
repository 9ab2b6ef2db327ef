"""convert: key names against the official and transformers models, loading official and
Hugging Face checkpoints with a full mismatch report, and `load_pretrained` over every format.
(Numerical equivalence through these converters is in tests/model/test_equivalence.py; our own
model files in tests/model/test_checkpoint.py.)"""

from __future__ import annotations

import json

import pytest
import torch

from encodec_train import convert
from encodec_train.model import EncodecModel, encodec_24khz, encodec_48khz, encodec_tiny
from encodec_train.model.checkpoint import CheckpointMismatchError, save_model


@pytest.fixture(scope="module")
def presets() -> dict[str, EncodecModel]:
    return {"24khz": encodec_24khz(), "48khz": encodec_48khz()}


def shapes(state: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_official_names_and_shapes_equal_the_official_model(presets, preset):
    encodec = pytest.importorskip("encodec")
    ref = getattr(encodec.EncodecModel, f"encodec_model_{preset}")(pretrained=False)
    ours = convert.to_official_state_dict(presets[preset])
    assert shapes(ours) == shapes(ref.state_dict())


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_hf_names_and_shapes_equal_the_transformers_model(presets, preset):
    transformers = pytest.importorskip("transformers")
    config = convert.hf_config(presets[preset])
    assert config.pop("model_type") == "encodec"
    config.pop("architectures")
    hf = transformers.EncodecModel(transformers.EncodecConfig(**config))
    assert shapes(convert.to_hf_state_dict(presets[preset])) == shapes(hf.state_dict())
    assert hf.config.chunk_length == presets[preset].segment_length
    assert hf.config.chunk_stride == presets[preset].segment_stride
    assert hf.config.frame_rate == presets[preset].frame_rate


def test_export_hf_writes_config_weights_and_feature_extractor(tmp_path):
    model = encodec_tiny(channels=2, causal=False, norm="time_group_norm", segment_seconds=0.5)
    directory = convert.export_hf(model, tmp_path / "hf")
    assert sorted(p.name for p in directory.iterdir()) == [
        "config.json",
        "model.safetensors",
        "preprocessor_config.json",
    ]
    config = json.loads((directory / "config.json").read_text())
    assert config["model_type"] == "encodec"
    assert (config["sampling_rate"], config["audio_channels"]) == (24_000, 2)
    assert (config["chunk_length_s"], config["overlap"]) == (0.5, 0.01)
    assert (config["norm_type"], config["use_causal_conv"]) == ("time_group_norm", False)
    assert (config["num_filters"], config["hidden_size"], config["codebook_size"]) == (8, 64, 32)
    extractor = json.loads((directory / "preprocessor_config.json").read_text())
    assert extractor["feature_size"] == 2 and extractor["sampling_rate"] == 24_000
    assert (extractor["chunk_length_s"], extractor["overlap"]) == (0.5, 0.01)
    # and it comes back as the same architecture and weights
    loaded = convert.load_hf(directory)
    # HF configs hold the architecture, not our training settings (k-means, EMA, ...)
    architecture = {
        "sample_rate",
        "channels",
        "target_bandwidths",
        "causal",
        "norm",
        "normalize",
        "segment_seconds",
        "overlap",
        "n_filters",
        "dimension",
        "ratios",
        "n_residual_layers",
        "lstm_layers",
        "pad_mode",
        "trim_right_ratio",
        "codebook_size",
    }
    assert {k: loaded.config[k] for k in architecture} == {k: model.config[k] for k in architecture}
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


# -- official checkpoints ------------------------------------------------------------


def official_state(model: EncodecModel) -> dict[str, torch.Tensor]:
    return convert.to_official_state_dict(model)


def test_load_official_picks_the_preset_and_trims_bandwidths_to_the_codebooks(tmp_path, presets):
    state = official_state(presets["24khz"])
    for key in [k for k in state if k.startswith("quantizer.vq.layers.")]:
        if int(key.split(".")[3]) >= 16:
            del state[key]
    torch.save(state, tmp_path / "16-codebooks.th")
    model = convert.load_official(tmp_path / "16-codebooks.th")
    assert model.quantizer.n_q == 16
    assert model.target_bandwidths == [1.5, 3.0, 6.0, 12.0]

    torch.save(official_state(presets["48khz"]), tmp_path / "48.th")
    model = convert.load_official(tmp_path / "48.th")
    assert (model.sample_rate, model.channels, model.quantizer.n_q) == (48_000, 2, 16)


def test_load_official_rejects_foreign_and_extra_tensors(tmp_path, presets):
    torch.save({"layer.weight": torch.zeros(2)}, tmp_path / "foreign.th")
    with pytest.raises(CheckpointMismatchError, match="not an EnCodec state dict"):
        convert.load_official(tmp_path / "foreign.th")
    state = official_state(presets["24khz"])
    state["encoder.model.42.conv.conv.bias"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.th")
    with pytest.raises(CheckpointMismatchError, match=r"encoder\.model\.42"):
        convert.load_official(tmp_path / "extra.th")


def test_load_hf_errors_name_the_problem(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        convert.load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(CheckpointMismatchError, match="model_type='wav2vec2'"):
        convert.load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "encodec"}))
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        convert.load_hf(tmp_path)
    directory = convert.export_hf(encodec_tiny(), tmp_path / "k5")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "kernel_size": 5}))
    with pytest.raises(CheckpointMismatchError, match="kernel_size"):
        convert.load_hf(directory)


# -- our checkpoints -------------------------------------------------------------------


def test_load_pretrained_reads_every_format_in_our_key_names(tmp_path):
    model = encodec_tiny()
    expected = model.state_dict()
    torch.save(official_state(model), tmp_path / "official.th")
    convert.export_hf(model, tmp_path / "hf")
    save_model(model, tmp_path / "ours.pt")
    for path in ("official.th", "hf", "ours.pt"):
        weights = convert.load_pretrained(tmp_path / path, encodec_tiny())
        assert weights.generator.keys() == expected.keys(), path
        for key, value in expected.items():
            assert torch.equal(weights.generator[key], value), (path, key)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert.load_pretrained(tmp_path / "missing.pt", model)


def test_training_checkpoint_uses_the_ema_weights_when_asked(tmp_path):
    model = encodec_tiny()
    state = {f"generator.{k}": v for k, v in model.state_dict().items()}
    ema_key = "decoder.model.0.conv.conv.bias"
    ema = {ema_key: torch.full_like(model.state_dict()[ema_key], 7.0)}
    disc = {"adversarial.discriminator.convs.0.weight": torch.ones(2)}
    torch.save(
        {"state_dict": {**state, **disc}, "model_config": model.config, "generator_ema": ema},
        tmp_path / "last.ckpt",
    )
    with_ema = EncodecModel.from_checkpoint(tmp_path / "last.ckpt")
    assert (with_ema.state_dict()[ema_key] == 7.0).all()
    raw = EncodecModel.from_checkpoint(tmp_path / "last.ckpt", use_ema=False)
    assert torch.equal(raw.state_dict()[ema_key], model.state_dict()[ema_key])
    weights = convert.load_pretrained(tmp_path / "last.ckpt", encodec_tiny())
    assert list(weights.discriminator) == ["convs.0.weight"]
    assert torch.equal(weights.discriminator["convs.0.weight"], torch.ones(2))
    assert weights.model_config == model.config
