"""Range coding with the entropy model: the size reaches the entropy, the coding model
computes the float64 PyTorch model's distributions, and the integer distributions (hence the
bytes) do not depend on how or where the model was run."""

import math
import os
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from encodec_train.compression import range_coding
from encodec_train.compression.models import save_entropy_model
from encodec_train.compression.probabilities import _TABLE, STEPS_PER_BIT, integer_weights
from encodec_train.compression.step_model import StepModel
from encodec_train.model.lm import EntropyModel, previous_step_inputs


def test_weight_table_is_exact():
    """Entry r is floor(2**(31 + r/64)): its 64th power brackets 2**(31·64 + r)."""
    for r, value in enumerate(_TABLE.tolist()):
        target = 1 << (31 * STEPS_PER_BIT + r)
        assert value**STEPS_PER_BIT <= target < (value + 1) ** STEPS_PER_BIT


def test_integer_weights_follow_the_documented_formula():
    logits = torch.tensor([[0.0, -0.01, -1.0, -7.3, -40.0, 2.5]], dtype=torch.float64)
    grid = [round(x * STEPS_PER_BIT / math.log(2)) for x in logits[0].tolist()]
    expected = []
    for m in grid:
        exponent = Fraction(m - max(grid), STEPS_PER_BIT)  # ≤ 0, in bits
        whole = math.floor(exponent)
        # floor(2**(31 + exponent)) = floor(2**(31 + frac) / 2**-whole)
        expected.append(_TABLE[int((exponent - whole) * STEPS_PER_BIT)] >> -whole)
    assert integer_weights(logits)[0].tolist() == expected
    with pytest.raises(TypeError, match="float64"):
        integer_weights(logits.float())


def constant_model(logits: torch.Tensor) -> EntropyModel:
    """An entropy model whose output is `logits` [K, card] at every step (zero head weights)."""
    levels, card = logits.shape
    lm = EntropyModel(levels, card, dim=8, num_heads=2, num_layers=1, feed_forward=8)
    with torch.no_grad():
        for head, row in zip(lm.linears, logits, strict=True):
            head.weight.zero_()
            head.bias.copy_(row)
    return lm.eval()


def test_size_is_within_one_percent_of_the_entropy():
    """Codes drawn from known distributions cost their information content, to 1%."""
    gen = torch.Generator().manual_seed(0)
    logits = 2.0 * torch.randn(2, 1024, generator=gen)
    probs = logits.double().softmax(-1)
    codes = torch.multinomial(probs, 1500, replacement=True, generator=gen)  # [K, T]
    information = float(-probs.log2().gather(1, codes).sum())
    entropy = float(-(probs * probs.log2()).sum()) * codes.shape[1]
    words = range_coding.encode_segments(StepModel(constant_model(logits)), [codes], [0])
    size = 32 * len(words[0])
    assert abs(size / information - 1) < 0.01
    assert abs(size / entropy - 1) < 0.01
    assert size < 0.8 * codes.numel() * 10  # far below 10 bits a code: the test can fail


def random_lm_and_codes(seed=0, steps=40):
    torch.manual_seed(seed)
    lm = EntropyModel(4, 64, dim=32, num_heads=4, num_layers=2, feed_forward=64, past_context=9)
    with torch.no_grad():
        for head in lm.linears:
            head.weight.mul_(10)
    codes = torch.randint(64, (4, steps), generator=torch.Generator().manual_seed(seed + 1))
    return lm.eval(), codes


@pytest.mark.parametrize("levels", [4, 3])
def test_step_model_computes_the_float64_model(levels):
    """The coding model, stepped for 5 streams side by side (past the 9-step context),
    gives the float64 PyTorch model's teacher-forced logits to ~1e-14, hence the same
    integer weights; with fewer codebooks, the first ones."""
    lm, _ = random_lm_and_codes()
    codes = torch.randint(64, (5, levels, 30), generator=torch.Generator().manual_seed(7))
    expected = lm.double().logits(codes).detach().numpy()  # [5, K, 30, card]
    model = StepModel(lm)
    state, inputs, steps = model.initial_state(5, 30), previous_step_inputs(codes).numpy(), []
    for t in range(30):
        steps.append(model.step(inputs[:, :, t], state))
    stepped = np.stack(steps, axis=2)
    np.testing.assert_allclose(stepped, expected, rtol=0, atol=1e-12)
    assert np.array_equal(integer_weights(stepped), integer_weights(expected))
    short = model.initial_state(5, 3)  # fewer steps than the context: a ring of 3 + 1
    for t in range(3):
        model.step(inputs[:, :, t], short)
    with pytest.raises(ValueError, match="room for 3 steps"):
        model.step(inputs[:, :, 3], short)


def test_all_steps_at_once_are_the_steps_bit_for_bit():
    """What the encoder computes in one pass per layer is, bit for bit, what the decoder
    computes step by step: 5 streams (8 rows with the kernel's padding), 3 codebooks of 4,
    as many steps as the context (9)."""
    lm, _ = random_lm_and_codes()
    model = StepModel(lm)
    codes = torch.randint(64, (5, 3, 9), generator=torch.Generator().manual_seed(5))
    inputs = previous_step_inputs(codes).numpy()
    forced = model.logits(model.all_steps(inputs), 5 * 9, 3).reshape(5, 9, 3, 64)
    state = model.initial_state(5, 9)
    for t in range(9):
        assert np.array_equal(model.step(inputs[:, :, t], state), forced[:, t])
    with pytest.raises(ValueError, match="at most the context, 9"):
        model.all_steps(np.zeros((1, 3, 10), dtype=np.int64))


def test_segments_round_trip_in_any_grouping(monkeypatch):
    """Segments of uneven lengths decode to their codes, each in its own stream or sharing
    streams, run 1, 2 or 6 side by side, longer than the context (9: encoded step by step) or
    not (encoded all at once); a segment in its own stream gives the same bytes in any
    grouping."""
    lm, codes = random_lm_and_codes(steps=70)
    model = StepModel(lm)
    for segment, lengths in ((15, [15, 15, 3, 15, 15, 7]), (8, [8, 8, 8, 8, 1, 8, 8, 8, 8, 5])):
        assert range_coding.segment_lengths([33, 37], segment) == lengths
        segments = codes.split(lengths, dim=-1)
        alone, shared = (
            range(len(lengths)),
            [0] * (len(lengths) // 2) + [1] * (len(lengths) - len(lengths) // 2),
        )
        reference = range_coding.encode_segments(model, segments, alone)
        for batch in (1, 2, 6):
            words = range_coding.encode_segments(model, segments, alone, batch)
            assert all(np.array_equal(a, b) for a, b in zip(words, reference, strict=True))
            for streams in (alone, shared):
                words = range_coding.encode_segments(model, segments, streams, batch)
                assert len(words) == max(streams) + 1
                decoded = range_coding.decode_segments(model, words, lengths, streams, 4, batch)
                assert torch.equal(torch.cat(decoded, dim=-1), codes)
    # The encoder's passes of one segment, probabilities of one step at a time: same bytes.
    monkeypatch.setattr(range_coding, "FORCED_PASS_ROWS", 8)
    monkeypatch.setattr(range_coding, "FORCED_ROWS", 1)
    words = range_coding.encode_segments(model, segments, alone)
    assert all(np.array_equal(a, b) for a, b in zip(words, reference, strict=True))


SUBPROCESS = """
import sys, numpy as np, torch
from encodec_train.compression import range_coding
from encodec_train.compression.models import load_entropy_model
from encodec_train.compression.step_model import StepModel
model = StepModel(load_entropy_model(sys.argv[1]))
codes = torch.load(sys.argv[2])
words = range_coding.encode_segments(model, codes.split([25, 25, 10], dim=-1), [0, 0, 1], 2)
sys.stdout.write(np.concatenate(words).tobytes().hex())
"""


@pytest.mark.slow
def test_separate_processes_write_the_same_bytes(tmp_path):
    """A fresh process writes this one's bytes, and so does one running the compiled kernels
    as plain Python (NUMBA_DISABLE_JIT: sums in sequence, no vector units, another
    summation order, as on another machine)."""
    lm, codes = random_lm_and_codes(seed=3, steps=60)
    save_entropy_model(lm, tmp_path / "lm.pt")
    torch.save(codes, tmp_path / "codes.pt")
    outputs = {
        subprocess.run(
            [sys.executable, "-c", SUBPROCESS, str(tmp_path / "lm.pt"), str(tmp_path / "codes.pt")],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "NUMBA_DISABLE_JIT": jit_off},
        ).stdout
        for jit_off in ("0", "1")
    }
    segments, streams = codes.split([25, 25, 10], dim=-1), [0, 0, 1]
    words = range_coding.encode_segments(StepModel(lm), segments, streams, 2)
    assert outputs == {np.concatenate(words).tobytes().hex()}
