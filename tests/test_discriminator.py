"""MS-STFT discriminator against the reference `encodec.msstftd` with the same weights (skipped
without the `dev` extra, which installs `encodec`)."""

import pytest
import torch

from encodec_train.discriminator import MultiScaleSTFTDiscriminator

PAPER_N_FFTS = [2048, 1024, 512, 256, 128]


def _reference(in_channels: int, n_ffts: list[int], hops: list[int], wins: list[int]):
    msstftd = pytest.importorskip("encodec.msstftd")
    torch.manual_seed(0)
    reference = msstftd.MultiScaleSTFTDiscriminator(
        32, in_channels=in_channels, n_ffts=n_ffts, hop_lengths=hops, win_lengths=wins
    )
    # At init weight_g == |weight_v|; perturb g so that mixing up g and v would show.
    with torch.no_grad():
        for name, param in reference.named_parameters():
            if name.endswith("weight_g"):
                param.mul_(torch.rand_like(param) + 0.5)
    return reference


def _assert_same_outputs(ours, reference, x: torch.Tensor) -> None:
    logits, maps = ours(x)
    ref_logits, ref_maps = reference(x)
    assert len(logits) == len(ref_logits) and len(maps) == len(ref_maps)
    for ours_scale, ref_scale in zip(logits, ref_logits, strict=True):
        assert ours_scale.shape == ref_scale.shape
        torch.testing.assert_close(ours_scale, ref_scale, atol=1e-5, rtol=0)
    for ours_scale, ref_scale in zip(maps, ref_maps, strict=True):
        assert len(ours_scale) == len(ref_scale) == 5
        for ours_map, ref_map in zip(ours_scale, ref_scale, strict=True):
            assert ours_map.shape == ref_map.shape
            torch.testing.assert_close(ours_map, ref_map, atol=1e-5, rtol=0)


@pytest.mark.parametrize("channels", [1, 2])
def test_paper_defaults_match_reference(channels: int) -> None:
    reference = _reference(channels, PAPER_N_FFTS, [n // 4 for n in PAPER_N_FFTS], PAPER_N_FFTS)
    ours = MultiScaleSTFTDiscriminator(in_channels=channels)  # defaults: the paper's scales
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, channels, 2400)
    with torch.no_grad():
        _assert_same_outputs(ours, reference, x)


def test_window_shorter_than_fft_matches_reference() -> None:
    n_ffts, hops, wins = [256, 128], [60, 30], [200, 100]
    reference = _reference(2, n_ffts, hops, wins)
    ours = MultiScaleSTFTDiscriminator(
        in_channels=2, n_ffts=n_ffts, hop_lengths=hops, win_lengths=wins
    )
    ours.load_state_dict(reference.state_dict())
    with torch.no_grad():
        _assert_same_outputs(ours, reference, torch.randn(1, 2, 1000))


def test_gradients_match_reference() -> None:
    n_ffts = [256, 128]
    reference = _reference(1, n_ffts, [64, 32], n_ffts)
    ours = MultiScaleSTFTDiscriminator(n_ffts=n_ffts)
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 1, 1000, requires_grad=True)
    ours_grad = torch.autograd.grad(sum(logits.sum() for logits in ours(x)[0]), x)[0]
    ref_grad = torch.autograd.grad(sum(logits.sum() for logits in reference(x)[0]), x)[0]
    torch.testing.assert_close(ours_grad, ref_grad, atol=1e-5, rtol=1e-4)


def test_mismatched_scale_lists_are_refused() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        MultiScaleSTFTDiscriminator(n_ffts=[256, 128], hop_lengths=[64])


def test_separate_channels_judge_each_channel_as_a_mono_item():
    """The paper's 48 kHz discriminator sees left and right on their own: the stereo output
    equals the same discriminator applied to each channel as a mono clip."""
    torch.manual_seed(0)
    separate = MultiScaleSTFTDiscriminator(
        in_channels=2, filters=4, n_ffts=[256, 128], separate_channels=True
    )
    stereo = torch.randn(3, 2, 2048)
    logits, maps = separate(stereo)
    for channel in range(2):
        mono_logits, mono_maps = separate(stereo[:, channel : channel + 1])
        for scale in range(2):
            torch.testing.assert_close(logits[scale][channel::2], mono_logits[scale])
            torch.testing.assert_close(maps[scale][-1][channel::2], mono_maps[scale][-1])
    # One input channel's worth of weights (real + imaginary), not two.
    assert separate.discriminators[0].convs[0].conv.weight.shape[1] == 2
