"""Loading what a `.ecdc` file needs: the official entropy model's state dict, our model
files, and clear errors for anything else."""

import pytest
import torch
from encodec.model import LMModel

from encodec_train.compression.models import load_codec, load_entropy_model, save_entropy_model
from encodec_train.model import CheckpointMismatchError, save_model
from encodec_train.model.lm import previous_step_inputs


def test_the_official_entropy_model_file_loads_with_its_context(tmp_path):
    torch.manual_seed(0)
    official = LMModel(4, 32, num_layers=2, dim=16, past_context=7).eval()  # 8 heads, ff 64
    torch.save(official.state_dict(), tmp_path / "encodec_lm.th")
    lm = load_entropy_model(tmp_path / "encodec_lm.th", frame_rate=2)  # int(3.5 × 2) = 7
    assert lm.transformer.past_context == 7 and lm.transformer.layers[0].self_attn.num_heads == 8
    codes = torch.randint(32, (1, 4, 10))
    with torch.no_grad():
        expected = official(previous_step_inputs(codes))[0].permute(0, 2, 3, 1)  # [B, K, T, card]
        torch.testing.assert_close(lm.logits(codes).softmax(-1), expected, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="frame rate"):
        load_entropy_model(tmp_path / "encodec_lm.th")


def test_our_files_load_and_others_are_refused(tmp_path, tiny_codec, tiny_lm):
    codec = load_codec(save_model(tiny_codec, tmp_path / "codec.pt"))
    assert all(
        torch.equal(a, b)
        for a, b in zip(codec.state_dict().values(), tiny_codec.state_dict().values(), strict=True)
    )
    lm = load_entropy_model(save_entropy_model(tiny_lm, tmp_path / "lm.pt"))
    assert lm.config == tiny_lm.config
    torch.save({"something": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError, match="not an entropy model"):
        load_entropy_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatchError):
        load_codec(tmp_path / "other.pt")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_codec(tmp_path / "missing.pt")
