"""`.ecdc` files: codes back exactly as `encode` gave them, with and without the entropy
model; files of the official package read, ours read by it; bad files refused clearly."""

import io
import re

import pytest
import torch
from compression_helpers import chirp

from encodec_train.compression import range_coding
from encodec_train.compression.container import (
    EcdcError,
    pack_codes,
    read_header,
    unpack_codes,
    write_header,
)
from encodec_train.compression.ecdc import EcdcContent, compress, read_ecdc, write_ecdc


@pytest.mark.parametrize("bits", [1, 5, 10, 13])
def test_bit_packing_matches_the_official_bit_packer(bits):
    from encodec.binary import BitPacker

    codes = torch.randint(2**bits, (3, 41), generator=torch.Generator().manual_seed(bits))
    stream = io.BytesIO()
    packer = BitPacker(bits, stream)
    for t in range(codes.shape[1]):
        for value in codes[:, t].tolist():
            packer.push(value)
    packer.flush()
    assert pack_codes(codes.numpy(), bits) == stream.getvalue()
    assert (unpack_codes(stream.getvalue(), 3, 41, bits) == codes.numpy()).all()


@pytest.mark.parametrize("use_lm", [False, True])
@pytest.mark.parametrize(("length", "bandwidth"), [(320, 1.5), (4001, 3.0), (12_000, 6.0)])
def test_round_trip_gives_the_encoded_codes(tiny_codec, tiny_lm, use_lm, length, bandwidth):
    audio = chirp(tiny_codec, length)
    data = compress(tiny_codec, audio, bandwidth, tiny_lm if use_lm else None)
    expected = tiny_codec.encode(audio[None], bandwidth)
    content = read_ecdc(data, tiny_codec, tiny_lm if use_lm else None)
    assert content.length == length and len(content.frames) == len(expected) == 1
    assert torch.equal(content.frames[0].codes, expected[0].codes)
    assert len(expected[0].codes.unique()) > 1  # the codes vary: the test can fail
    bits = tiny_codec.num_codebooks(bandwidth) * expected[0].codes.shape[-1] * 5
    if not use_lm:  # the header, then exactly the packed codes
        assert len(data) - data.index(b"}") - 1 == (bits + 7) // 8


@pytest.mark.parametrize(("seconds", "frames"), [(0.1, 8), (0.25, 19), (None, None)])
def test_entropy_model_segments_round_trip(tiny_codec, tiny_lm, seconds, frames):
    """The entropy model restarts every `seg` frames (in the header; 38 frames make segments
    of 8 × 4 + 6, 19 × 2, or one without the key) and the codes come back exactly."""
    audio = chirp(tiny_codec, 12_000)
    data = compress(tiny_codec, audio, 6.0, tiny_lm, segment_seconds=seconds)
    assert read_header(data, "x")[1].get("seg") == frames
    expected = tiny_codec.encode(audio[None], 6.0)[0].codes
    assert torch.equal(read_ecdc(data, tiny_codec, tiny_lm).frames[0].codes, expected)


def test_more_segments_than_a_group_record_the_group(tiny_codec, tiny_lm, monkeypatch):
    """Where a file has more segments than run side by side, the group size orders the codes
    in their stream: the header records it, and a reader with another default follows it."""
    audio = chirp(tiny_codec, 12_000)
    monkeypatch.setattr(range_coding, "MAX_BATCH", 2)
    data = compress(tiny_codec, audio, 6.0, tiny_lm, segment_seconds=0.1)
    assert read_header(data, "x")[1]["grp"] == 2
    monkeypatch.setattr(range_coding, "MAX_BATCH", 64)
    expected = tiny_codec.encode(audio[None], 6.0)[0].codes
    assert torch.equal(read_ecdc(data, tiny_codec, tiny_lm).frames[0].codes, expected)


def test_corrupted_segment_keys_are_refused(tiny_codec, tiny_lm):
    """Bad values of `seg` or `grp` are named; wrong but valid ones (other segments, or
    another order of the segments' codes in their stream) fail the checks."""
    data = compress(tiny_codec, chirp(tiny_codec, 12_000), 6.0, tiny_lm, segment_seconds=0.1)
    version, metadata, offset = read_header(data, "x")
    assert (metadata["seg"], metadata.get("grp")) == (8, None)  # 5 segments, one group
    for key, bad, message in (
        ("seg", 0, "seg is 0"),
        ("seg", "8", "seg is '8'"),
        ("grp", -1, "grp is -1"),
        ("seg", 9, "checksum"),
        ("grp", 2, "checksum"),
    ):
        rewritten = write_header({**metadata, key: bad}, version) + data[offset:]
        with pytest.raises(EcdcError, match=message):
            read_ecdc(rewritten, tiny_codec, tiny_lm, source="x.ecdc")


@pytest.mark.parametrize("use_lm", [False, True])
def test_each_chunk_keeps_its_scale(tiny_codec, tiny_lm, use_lm):
    """A chunked, normalising codec (as the 48 kHz model) writes a float32 scale per chunk;
    with the entropy model, the chunks (the last one shorter) are decoded side by side."""
    model = type(tiny_codec)(**{**tiny_codec.config, "segment_seconds": 0.1, "normalize": True})
    model.load_state_dict(tiny_codec.state_dict())
    model.eval()
    audio = chirp(model, 5000)
    expected = model.encode(audio[None], 3.0)
    lm = tiny_lm if use_lm else None
    content = read_ecdc(compress(model, audio, 3.0, lm), model, lm)
    assert len(content.frames) == len(expected) == 3
    assert [f.codes.shape[-1] for f in expected] == [8, 8, 1]
    for got, want in zip(content.frames, expected, strict=True):
        assert torch.equal(got.codes, want.codes)
        assert got.scale.item() == torch.tensor(want.scale.item(), dtype=torch.float32).item()


def corrupt_cases(data: bytes) -> dict[str, bytes]:
    header_end = data.index(b"}") + 1
    flipped = bytearray(data)
    flipped[(header_end + len(data)) // 2 + 2] ^= 0x10
    return {
        "empty": b"",
        "not ecdc": b"RIFF" + data[4:],
        "cut in header": data[: header_end - 3],
        "cut in payload": data[:-3],
        "trailing bytes": data + b"\0\0",
        "bit flipped in payload": bytes(flipped),
        "header not json": data[:9] + b"@" + data[10:],
    }


@pytest.mark.parametrize("use_lm", [False, True])
def test_truncated_and_corrupted_files_are_refused(tiny_codec, tiny_lm, use_lm):
    lm = tiny_lm if use_lm else None
    data = compress(tiny_codec, chirp(tiny_codec, 6000), 6.0, lm)
    messages = {
        "empty": "too short",
        "not ecdc": "not an .ecdc file",
        "cut in header": "truncated inside its header",
        "cut in payload": "truncated",
        "trailing bytes": "bytes after the last chunk",
        "bit flipped in payload": "checksum",
        "header not json": "not valid JSON",
    }
    for case, bad in corrupt_cases(data).items():
        with pytest.raises(EcdcError, match=messages[case]):
            read_ecdc(bad, tiny_codec, lm, source="x.ecdc")


@pytest.mark.parametrize(
    "use_lm, what", [(False, r"chunk \d+'s codes"), (True, r"chunk \d+'s \d+ coded words")]
)
def test_a_cut_file_says_what_its_missing_bytes_held(tiny_codec, tiny_lm, use_lm, what):
    lm = tiny_lm if use_lm else None
    data = compress(tiny_codec, chirp(tiny_codec, 6000), 6.0, lm)
    with pytest.raises(EcdcError) as error:
        read_ecdc(data[:-1], tiny_codec, lm, source="x.ecdc")
    expected = rf"x\.ecdc is truncated: {what} would take bytes \d+-{len(data)}, "
    assert re.fullmatch(expected + f"the file has {len(data) - 1}", str(error.value))


def test_a_different_entropy_model_is_caught_by_the_checksum(tiny_codec, tiny_lm):
    data = compress(tiny_codec, chirp(tiny_codec, 6000), 6.0, tiny_lm)
    other = type(tiny_lm)(**tiny_lm.config).eval()
    with pytest.raises(EcdcError, match="checksum"):
        read_ecdc(data, tiny_codec, other)
    with pytest.raises(EcdcError, match="pass it"):
        read_ecdc(data, tiny_codec, None)


def test_frames_that_do_not_fit_the_length_are_refused(tiny_codec):
    frames = tiny_codec.encode(chirp(tiny_codec, 3200)[None], 1.5)
    with pytest.raises(ValueError, match="frames per chunk"):
        write_ecdc(EcdcContent(frames, 6400, {}), tiny_codec)


def test_other_codec_weights_or_names_are_refused(tiny_codec):
    data = compress(tiny_codec, chirp(tiny_codec, 3200), 1.5)
    other = type(tiny_codec)(**tiny_codec.config).eval()  # same name, other (random) weights
    with pytest.raises(EcdcError, match="other weights of the codec 'encodec_tiny'"):
        read_ecdc(data, other)
    renamed = type(tiny_codec)(**{**tiny_codec.config, "name": "mine"}).eval()
    with pytest.raises(EcdcError, match="written with the codec 'encodec_tiny'"):
        read_ecdc(data, renamed)
