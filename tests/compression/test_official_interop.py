"""Files of the official `encodec` package (written without its entropy model) read by us,
and ours read by it, for the same weights (random, moved between the packages with
`encodec_train.convert`)."""

import functools
import importlib
import tempfile
from pathlib import Path

import pytest
import torch
from compression_helpers import chirp

from encodec_train import convert
from encodec_train.compression.container import EcdcError
from encodec_train.compression.ecdc import compress, read_ecdc
from encodec_train.compression.models import official_config
from encodec_train.model import encodec_24khz, encodec_48khz
from encodec_train.model.lm import EntropyModel

encodec = pytest.importorskip("encodec")
# `encodec.compress` is also the name of a function that the package exports.
official_compression = importlib.import_module("encodec.compress")

OFFICIAL = {
    "encodec_24khz": (encodec_24khz, encodec.EncodecModel.encodec_model_24khz),
    "encodec_48khz": (encodec_48khz, encodec.EncodecModel.encodec_model_48khz),
}


@functools.cache
def official_pair(name):
    """Our model as `convert.load_official` reads an official file, and the official package's
    model with the same weights (random, codebooks included)."""
    ours_builder, official_builder = OFFICIAL[name]
    torch.manual_seed(0)
    ours = ours_builder()
    with torch.no_grad():
        for key, value in ours.state_dict().items():
            if key.endswith("_codebook.embed"):
                value.normal_()
    with tempfile.TemporaryDirectory() as folder:
        path = convert.export_official(ours, Path(folder) / "m.th")
        official = official_builder(pretrained=False)
        official.load_state_dict(torch.load(path))
        ours = convert.load_official(path)
    official.name = name  # what the pretrained model is called (random ones are "unset")
    return ours, official.eval()


@pytest.fixture
def pair(request, monkeypatch):
    """`official_pair(request.param)`, the official `decompress` made to use its model."""
    ours, official = official_pair(request.param)
    monkeypatch.setitem(official_compression.MODELS, request.param, lambda: official)
    return ours, official


@pytest.mark.parametrize(
    ("pair", "bandwidth", "seconds"),
    [
        ("encodec_24khz", 1.5, 0.05),
        pytest.param("encodec_24khz", 6.0, 0.3, marks=pytest.mark.slow),
        pytest.param("encodec_48khz", 12.0, 1.2, marks=pytest.mark.slow),
    ],
    indirect=["pair"],
)
def test_each_package_reads_the_others_files(pair, bandwidth, seconds):
    ours, official = pair
    official.set_target_bandwidth(bandwidth)
    audio = chirp(ours, int(seconds * ours.sample_rate))
    with torch.no_grad():
        official_frames = official.encode(audio[None])
    theirs = official_compression.compress(official, audio, use_lm=False)
    content = read_ecdc(theirs, ours, source="official.ecdc")
    assert len(content.frames) == len(official_frames)
    for got, (codes, scale) in zip(content.frames, official_frames, strict=True):
        assert torch.equal(got.codes, codes)
        if scale is not None:
            assert got.scale.item() == pytest.approx(scale.item(), rel=1e-6)
    assert len(official_frames[0][0].unique()) > 1

    mine = compress(ours, audio, bandwidth)
    decoded, rate = official_compression.decompress(mine)
    with torch.no_grad():
        expected = official.decode(official_frames)[0, :, : audio.shape[-1]]
    assert rate == ours.sample_rate and decoded.shape == audio.shape
    torch.testing.assert_close(decoded, expected, atol=1e-5, rtol=1e-4)
    if ours.normalize:  # the scales are stored in float32 by both
        return
    assert mine[: theirs.index(b"{")] != b""
    assert mine[mine.index(b"}") + 1 :] == theirs[theirs.index(b"}") + 1 :]


@pytest.mark.parametrize("pair", ["encodec_24khz"], indirect=True)
def test_files_entropy_coded_by_the_official_coder_are_read_both_ways(pair, monkeypatch):
    """The official package's entropy-coded files, with the same entropy-model weights (here,
    on the machine that wrote them: its float32 probabilities are not portable)."""
    ours, official = pair
    torch.manual_seed(1234)
    official_lm = encodec.model.LMModel(32, 1024, num_layers=1, dim=32, past_context=262).eval()
    monkeypatch.setattr(type(official), "get_lm_model", lambda self: official_lm)
    lm = EntropyModel(**official_config(official_lm.state_dict(), ours.frame_rate)).eval()
    lm.load_state_dict(official_lm.state_dict())
    official.set_target_bandwidth(3.0)
    audio = chirp(ours, 2000)
    with torch.no_grad():
        [(codes, _)] = official.encode(audio[None])

    theirs = official_compression.compress(official, audio, use_lm=True)
    content = read_ecdc(theirs, ours, lm, source="official.ecdc")
    assert torch.equal(content.frames[0].codes, codes) and codes.shape == (1, 4, 7)

    mine = compress(ours, audio, 3.0, lm, coder="official")
    assert mine[mine.index(b"}") + 1 :] == theirs[theirs.index(b"}") + 1 :]
    decoded, _ = official_compression.decompress(mine)
    with torch.no_grad():
        expected = official.decode([(codes, None)])[0, :, : audio.shape[-1]]
    torch.testing.assert_close(decoded, expected)
    with pytest.raises(EcdcError, match="truncated"):
        read_ecdc(theirs[:-6], ours, lm, source="official.ecdc")


@pytest.mark.parametrize("pair", ["encodec_24khz"], indirect=True)
def test_our_range_coded_files_are_refused_by_the_official_reader(pair):
    ours, _ = pair
    lm = EntropyModel(n_q=2, dim=16, num_heads=2, num_layers=1, feed_forward=16)
    data = compress(ours, chirp(ours, 640), 1.5, lm)
    with pytest.raises(ValueError, match="Version not supported"):
        official_compression.decompress(data)
