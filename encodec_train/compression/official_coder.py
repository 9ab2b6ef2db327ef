"""The official `encodec` package's entropy coding, for `.ecdc` files that it reads and writes
(version 0 with `lm: true`): its `LMModel` run step by step in float32 with our model's
weights, and its pure-Python arithmetic coder, exactly as `encodec/compress.py` runs them.

Its probabilities are float32 and quantised without margin, so such a file decodes only where
the float32 results are bit-identical to the writer's (the same machine and software); the
CRC that our files carry turns any disagreement into an error. Needs the `encodec` package
(`pip install encodec==0.1.1`, in the `dev` extra). Our own files use `range_coding`.
"""

from __future__ import annotations

import io
from typing import Any

import torch

from encodec_train.model.lm import EntropyModel


def official_model(lm: EntropyModel) -> Any:
    """The official `LMModel` with `lm`'s architecture and weights, in eval mode."""
    try:
        from encodec.model import LMModel
    except ImportError:
        raise ImportError(
            "files entropy-coded by the official encodec package need that package: "
            "pip install encodec==0.1.1"
        ) from None
    config = lm.config
    official = LMModel(
        config["n_q"],
        config["codebook_size"],
        dim=config["dim"],
        num_heads=config["num_heads"],
        num_layers=config["num_layers"],
        hidden_scale=config["feed_forward"] / config["dim"],
        past_context=config["past_context"],
        max_period=config["max_period"],
        dropout=0.0,
    )
    official.load_state_dict(lm.state_dict())
    return official.eval()


@torch.no_grad()
def encode_chunk(official, codes: torch.Tensor) -> bytes:
    """The official arithmetic-coded bytes of one chunk's codes [K, T] (the LM branch of
    `encodec.compress.compress_to_file`)."""
    from encodec.quantization.ac import ArithmeticCoder, build_stable_quantized_cdf

    stream = io.BytesIO()
    coder = ArithmeticCoder(stream)
    states, offset = None, 0
    inputs = torch.zeros(1, codes.shape[0], 1, dtype=torch.long)
    for t in range(codes.shape[1]):
        probas, states, offset = official(inputs, states, offset)
        inputs = 1 + codes[None, :, t : t + 1]
        for k, value in enumerate(codes[:, t].tolist()):
            cdf = build_stable_quantized_cdf(
                probas[0, :, k, 0], coder.total_range_bits, check=False
            )
            coder.push(value, cdf)
    coder.flush()
    return stream.getvalue()


@torch.no_grad()
def decode_chunk(official, stream: io.BytesIO, levels: int, frames: int) -> torch.Tensor:
    """One chunk's codes [levels, frames] read from `stream` at its position (left after the
    chunk, as the official reader leaves it). Raises EOFError when the stream ends early."""
    from encodec.quantization.ac import ArithmeticDecoder, build_stable_quantized_cdf

    decoder = ArithmeticDecoder(stream)
    states, offset = None, 0
    codes = torch.zeros(levels, frames, dtype=torch.long)
    inputs = torch.zeros(1, levels, 1, dtype=torch.long)
    for t in range(frames):
        probas, states, offset = official(inputs, states, offset)
        for k in range(levels):
            cdf = build_stable_quantized_cdf(
                probas[0, :, k, 0], decoder.total_range_bits, check=False
            )
            code = decoder.pull(cdf)
            if code is None:
                raise EOFError("the arithmetic-coded stream ended early")
            codes[k, t] = code
        inputs = 1 + codes[None, :, t : t + 1]
    return codes
