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
def test_official_entropy_coded_files_are_refused_clearly(pair, monkeypatch):
    """The official arithmetic coder's files need its float32 probabilities, which differ
    between machines; they are refused, not decoded into noise."""
    ours, official = pair
    torch.manual_seed(1234)
    lm = encodec.model.LMModel(32, 1024, num_layers=5, dim=200, past_context=262).eval()
    monkeypatch.setattr(type(official), "get_lm_model", lambda self: lm)
    official.set_target_bandwidth(1.5)
    data = official_compression.compress(official, chirp(ours, 640), use_lm=True)
    with pytest.raises(EcdcError, match="official encodec package's arithmetic coder"):
        read_ecdc(data, ours, source="official.ecdc")


@pytest.mark.parametrize("pair", ["encodec_24khz"], indirect=True)
def test_our_range_coded_files_are_refused_by_the_official_reader(pair):
    ours, _ = pair
    lm = EntropyModel(n_q=2, dim=16, num_heads=2, num_layers=1, feed_forward=16)
    data = compress(ours, chirp(ours, 640), 1.5, lm)
    with pytest.raises(ValueError, match="Version not supported"):
        official_compression.decompress(data)
