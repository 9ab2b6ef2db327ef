"""Code shards: round trip, refusals, and the dataset's windows against slices of the codes."""

from __future__ import annotations

import pytest
import torch

from encodec_train.data.code_shards import CodeShardDataset, read_code_shard, write_code_shard

META = dict(
    sample_rate=24000, frame_rate=75, bandwidth=3.0, n_q=4, codebook_size=1024, checkpoint="m.pt"
)


def _codes(frames: int, seed: int, n_q: int = 4) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 1024, (n_q, frames), generator=generator, dtype=torch.int16)


def test_round_trip_keeps_paths_codes_and_metadata(tmp_path):
    items = [("a.wav", _codes(10, 0)), ("dir/b.flac", _codes(3, 1)), ("c.wav", _codes(0, 2))]
    path = tmp_path / "shard-000000.safetensors"
    write_code_shard(path, items, META)
    read, metadata = read_code_shard(path)
    assert metadata == META
    assert [source for source, _ in read] == ["a.wav", "dir/b.flac", "c.wav"]
    for (_, expected), (_, got) in zip(items, read, strict=True):
        assert got.dtype == torch.int16 and torch.equal(got, expected)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no partial file left


@pytest.mark.parametrize(
    ("items", "metadata", "message"),
    [
        ([("a.wav", _codes(5, 0).int())], META, "int16"),
        ([("a.wav", _codes(5, 0, n_q=3))], META, "n_q=4"),
        ([("a.wav", torch.full((4, 2), 1024, dtype=torch.int16))], META, "outside"),
        (
            [("a.wav", _codes(5, 0))],
            {k: v for k, v in META.items() if k != "bandwidth"},
            "bandwidth",
        ),
    ],
)
def test_bad_items_and_metadata_are_refused(tmp_path, items, metadata, message):
    with pytest.raises(ValueError, match=message):
        write_code_shard(tmp_path / "shard-0.safetensors", items, metadata)


def test_dataset_windows_are_slices_of_the_items(tmp_path):
    first = [("a.wav", _codes(23, 0)), ("short.wav", _codes(4, 1))]
    second = [("b.wav", _codes(10, 2))]
    write_code_shard(tmp_path / "shard-000000.safetensors", first, META)
    write_code_shard(tmp_path / "shard-000001.safetensors", second, META)
    (tmp_path / "other.safetensors").write_bytes(b"not a shard")  # not matched by the pattern
    dataset = CodeShardDataset(tmp_path, frames=5, seed=3)
    # 23 frames → 4 windows, 4 frames → none, 10 frames → 2 windows.
    assert len(dataset) == 6
    assert dataset.metadata == META
    by_item = {0: first[0][1], 2: second[0][1]}
    starts = {0: [], 2: []}
    for index in range(len(dataset)):
        window = dataset[index]
        assert window.dtype == torch.long and window.shape == (4, 5)
        shard, item, start = (int(v) for v in dataset.windows[index])
        key = shard * 2 + item
        assert torch.equal(window, by_item[key][:, start : start + 5].long())
        starts[key].append(start)
    # Side by side from one offset within the spare frames (23 - 20 = 3; 10 - 10 = 0).
    assert starts[2] == [0, 5]
    offset = starts[0][0]
    assert 0 <= offset <= 3 and starts[0] == [offset + 5 * w for w in range(4)]


def test_seed_moves_window_offsets_and_is_reproducible(tmp_path):
    write_code_shard(tmp_path / "shard-0.safetensors", [("a.wav", _codes(1000, 0))], META)
    offsets = {int(CodeShardDataset(tmp_path, 7, seed=s).windows[0, 2]) for s in range(20)}
    assert len(offsets) > 1 and offsets <= set(range(1000 % 7 + 1))
    same = [CodeShardDataset(tmp_path, 7, seed=5).windows for _ in range(2)]
    assert (same[0] == same[1]).all()


def test_dataset_refuses_mixed_encodings_and_empty_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="shard-"):
        CodeShardDataset(tmp_path, 5)
    write_code_shard(tmp_path / "shard-0.safetensors", [("a.wav", _codes(10, 0))], META)
    with pytest.raises(ValueError, match="no item has 50 frames"):
        CodeShardDataset(tmp_path, 50)
    other = {**META, "bandwidth": 6.0, "n_q": 8}
    write_code_shard(tmp_path / "shard-1.safetensors", [("b.wav", _codes(10, 1, n_q=8))], other)
    with pytest.raises(ValueError, match="bandwidth=6.0"):
        CodeShardDataset(tmp_path, 5)
