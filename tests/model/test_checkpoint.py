"""Our model files and training checkpoints: a saved model comes back equal from the file
alone, foreign files and mismatching weights are refused with a full report, files written
before the bandwidth check still load, and loading needs nothing outside the model package."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from encodec_train.model import EncodecModel, encodec_tiny
from encodec_train.model.checkpoint import (
    MODEL_FILE_KEY,
    CheckpointMismatchError,
    load_weights,
    save_model,
)


def test_from_checkpoint_rebuilds_an_equal_model(tmp_path):
    torch.manual_seed(0)
    config = dict(channels=2, causal=False, norm="time_group_norm", normalize=True)
    model = encodec_tiny(**config, segment_seconds=0.05, name="roundtrip").train()
    x = 0.1 * torch.randn(2, 2, 3000)
    model(x, 6.0)  # one training step: k-means and EMA fill the codebooks
    model.eval()
    path = save_model(model, tmp_path / "model.pt")
    loaded = EncodecModel.from_checkpoint(path)
    assert not loaded.training
    assert loaded.config == model.config
    assert loaded.segment_seconds == 0.05 and loaded.name == "roundtrip"
    state, loaded_state = model.state_dict(), loaded.state_dict()
    assert state.keys() == loaded_state.keys()
    for key in state:
        assert torch.equal(state[key], loaded_state[key]), key
    with torch.inference_mode():
        assert torch.equal(loaded(x, 6.0).audio, model(x, 6.0).audio)


def test_from_checkpoint_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "official.th"
    torch.save(encodec_tiny().state_dict(), path)
    with pytest.raises(CheckpointMismatchError, match="not an encodec-train checkpoint"):
        EncodecModel.from_checkpoint(path)


def test_a_model_file_from_before_the_bandwidth_check_still_loads(tmp_path):
    """The demo preset used to be 64 codes (0.45 kbps per codebook at 75 frames/s) at 1.5, 3
    and 6 kbps: 3.33, 6.67 and 13.33 codebooks, rounded down to 3, 6 and 13. Its files have no
    `strict_bandwidths` in their config and load as they were trained."""
    config = {**encodec_tiny().config, "codebook_size": 64, "target_bandwidths": [1.5, 3.0, 6.0]}
    del config["strict_bandwidths"]
    with pytest.raises(ValueError, match="not a whole number of codebooks"):
        EncodecModel(**config)
    old = EncodecModel(**config, strict_bandwidths=False)
    torch.save({MODEL_FILE_KEY: {"config": config, "state_dict": old.state_dict()}}, tmp_path / "a")
    loaded = EncodecModel.from_checkpoint(tmp_path / "a")
    assert loaded.quantizer.n_q == 13
    assert [loaded.num_codebooks(b) for b in (1.5, 3.0, 6.0)] == [3, 6, 13]


def test_loading_a_model_file_imports_nothing_outside_the_model_package(tmp_path):
    """`model/` does not import `convert` (which imports `model/`): no import circle."""
    path = save_model(encodec_tiny(), tmp_path / "model.pt")
    script = (
        "import sys, torch; torch.set_num_threads(1)\n"
        "from encodec_train.model import EncodecModel\n"
        f"EncodecModel.from_checkpoint({str(path)!r})\n"
        "print(sorted(m for m in sys.modules if m.startswith('encodec_train')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    loaded = eval(result.stdout.strip().splitlines()[-1])
    assert loaded and all(m.startswith("encodec_train.model") for m in loaded[1:]), loaded


def test_load_weights_lists_missing_unexpected_and_misshapen_tensors():
    model = encodec_tiny()
    state = dict(encodec_tiny(n_filters=16).state_dict())  # a wider architecture
    del state["quantizer.vq.layers.0._codebook.embed"]
    state["decoder.model.99.conv.conv.bias"] = torch.zeros(3)
    with pytest.raises(CheckpointMismatchError) as error:
        load_weights(model, state, "wide.pt")
    message = str(error.value)
    assert "wide.pt does not match the model's architecture" in message
    assert "missing (1): quantizer.vq.layers.0._codebook.embed" in message
    assert "unexpected (1): decoder.model.99.conv.conv.bias" in message
    # first conv: 16 filters in the checkpoint, 8 in the model
    assert "encoder.model.0.conv.conv.bias: checkpoint (16,) vs model (8,)" in message
    assert "shape mismatch (" in message


def test_load_weights_accepts_a_matching_state_and_loads_it():
    source, target = encodec_tiny(), encodec_tiny()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    load_weights(target, source.state_dict(), "same.pt")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
