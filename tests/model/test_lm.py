"""The entropy model against the official `encodec.model.LMModel` (same weights, same
probabilities), whole-sequence pass against step-by-step streaming, and its bits measure."""

import math

import pytest
import torch
from encodec.model import LMModel

from encodec_train.model.lm import EntropyModel, bits_per_frame, previous_step_inputs


def official_and_ours(n_q=4, past_context=5, seed=0):
    torch.manual_seed(seed)
    official = LMModel(n_q, 32, num_layers=2, dim=16, num_heads=4, past_context=past_context).eval()
    ours = EntropyModel(
        n_q, 32, dim=16, num_heads=4, num_layers=2, feed_forward=64, past_context=past_context
    ).eval()
    ours.load_state_dict(official.state_dict())  # strict: the same names and shapes
    return official, ours


def test_default_shape_is_the_official_entropy_model():
    """The defaults are the paper's model, as `EncodecModel.get_lm_model` builds it at 24 kHz."""
    official = LMModel(32, 1024, num_layers=5, dim=200, past_context=int(3.5 * 75))
    ours = EntropyModel()
    theirs = {k: v.shape for k, v in official.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == theirs


@pytest.mark.parametrize("levels", [4, 2])
def test_whole_sequence_matches_official_streaming(levels):
    """Teacher forcing over 12 steps (past the 5-step context) equals the official model fed
    one step at a time, as its compressor does; K < n_q uses the first codebooks."""
    official, ours = official_and_ours()
    codes = torch.randint(32, (2, levels, 12))
    expected, states, offset = [], None, 0
    inputs = previous_step_inputs(codes)
    with torch.no_grad():
        for t in range(codes.shape[-1]):
            probas, states, offset = official(inputs[..., t : t + 1], states, offset)
            expected.append(probas[..., 0].transpose(1, 2))  # [B, K, card]
        ours_probs = ours.logits(codes).softmax(-1)
    torch.testing.assert_close(ours_probs, torch.stack(expected, dim=2), atol=1e-6, rtol=1e-5)


def test_streaming_in_pieces_matches_one_pass():
    """Feeding the steps in pieces of 1, 3 and 8 with the state gives the one-pass logits."""
    _, ours = official_and_ours()
    codes = torch.randint(32, (1, 4, 12))
    inputs = previous_step_inputs(codes)
    with torch.no_grad():
        whole = ours.logits(codes)
        state, pieces = None, []
        for start, stop in ((0, 1), (1, 4), (4, 12)):
            logits, state = ours(inputs[..., start:stop], state)
            pieces.append(logits)
    torch.testing.assert_close(torch.cat(pieces, dim=2), whole, atol=1e-6, rtol=1e-5)
    assert state.offset == 12 and state.keys_values[0][0].shape[2] == 5


def test_bits_per_frame_is_the_cross_entropy_in_bits():
    """Uniform logits cost log2(card) bits per level; a hand-computed case for the rest."""
    codes = torch.tensor([[[0, 1]], [[1, 1]]])  # [2, 1, 2]
    uniform = torch.zeros(2, 1, 2, 4)
    assert bits_per_frame(uniform, codes).tolist() == pytest.approx([2.0])
    logits = torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125])).expand(2, 1, 2, 4)
    # codes 0, 1, 1, 1: (1 + 2 + 2 + 2) / 4 bits
    assert bits_per_frame(logits, codes).tolist() == pytest.approx([7 / 4])
    mask = torch.tensor([[1.0, 0.0], [1.0, 1.0]])  # the first item's second step is padding
    assert bits_per_frame(logits, codes, mask).tolist() == pytest.approx([(1 + 2 + 2) / 3])
    assert math.isclose(float(bits_per_frame(uniform, codes, mask)[0]), 2.0)
