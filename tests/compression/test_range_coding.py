"""Range coding with the entropy model: the size reaches the entropy, and the integer
distributions (hence the bytes) do not depend on how or where the model was run."""

import math
import subprocess
import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from encodec_train.compression import range_coding
from encodec_train.compression.models import save_entropy_model
from encodec_train.compression.probabilities import _TABLE, STEPS_PER_BIT, integer_weights
from encodec_train.model.lm import EntropyModel


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
    words = range_coding.encode_chunk(range_coding.coding_model(constant_model(logits)), codes)
    size = 32 * len(words)
    assert abs(size / information - 1) < 0.01
    assert abs(size / entropy - 1) < 0.01
    assert size < 0.8 * codes.numel() * 10  # far below 10 bits a code: the test can fail


def random_lm_and_codes(seed=0):
    torch.manual_seed(seed)
    lm = EntropyModel(4, 64, dim=32, num_heads=4, num_layers=2, feed_forward=64, past_context=9)
    with torch.no_grad():
        for head in lm.linears:
            head.weight.mul_(10)
    codes = torch.randint(64, (4, 40), generator=torch.Generator().manual_seed(seed + 1))
    return lm.eval(), codes


def test_one_pass_and_step_by_step_give_the_same_weights():
    """The encoder's teacher-forced float64 logits differ from the decoder's step-by-step
    ones in the last bits; the integer weights do not."""
    lm, codes = random_lm_and_codes()
    model = range_coding.coding_model(lm)
    whole = torch.cat([logits for _, logits in range_coding.block_logits(model, codes)], dim=1)
    inputs, state, steps = torch.zeros(1, 4, 1, dtype=torch.long), None, []
    with torch.no_grad():
        for t in range(codes.shape[1]):
            logits, state = model(inputs, state)
            steps.append(logits[0, :, 0])
            inputs = 1 + codes[None, :, t : t + 1]
    stepwise = torch.stack(steps, dim=1)
    torch.testing.assert_close(whole, stepwise, rtol=0, atol=1e-9)
    assert np.array_equal(integer_weights(whole), integer_weights(stepwise))
    words = range_coding.encode_chunk(model, codes)
    [decoded] = range_coding.decode_chunks(model, [(words, codes.shape[1])], 4)
    assert torch.equal(decoded, codes)


def test_bytes_do_not_depend_on_threads_or_blocks(monkeypatch):
    lm, codes = random_lm_and_codes()
    model = range_coding.coding_model(lm)
    reference = range_coding.encode_chunk(model, codes)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert np.array_equal(range_coding.encode_chunk(model, codes), reference)
    finally:
        torch.set_num_threads(threads)
    monkeypatch.setattr(range_coding, "BLOCK_STEPS", 7)  # 6 blocks instead of one
    assert np.array_equal(range_coding.encode_chunk(model, codes), reference)


SUBPROCESS = """
import sys, numpy as np, torch
torch.set_num_threads(int(sys.argv[3]))
from encodec_train.compression import range_coding
from encodec_train.compression.models import load_entropy_model
model = range_coding.coding_model(load_entropy_model(sys.argv[1]))
codes = torch.load(sys.argv[2])
sys.stdout.write(range_coding.encode_chunk(model, codes).tobytes().hex())
"""


@pytest.mark.slow
def test_separate_processes_write_the_same_bytes(tmp_path):
    lm, codes = random_lm_and_codes(seed=3)
    save_entropy_model(lm, tmp_path / "lm.pt")
    torch.save(codes, tmp_path / "codes.pt")
    outputs = {
        subprocess.run(
            [
                sys.executable,
                "-c",
                SUBPROCESS,
                str(tmp_path / "lm.pt"),
                str(tmp_path / "codes.pt"),
                str(threads),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for threads in (1, 2)
    }
    here = range_coding.encode_chunk(range_coding.coding_model(lm), codes).tobytes().hex()
    assert outputs == {here}
