"""ResidualVectorQuantizer against independent computations: hand-computed commitment losses
and metrics, a float64 brute-force quantizer, random draws from the caller's generator, and two
gloo ranks against one process trained on their concatenated data. (Bandwidth → codebooks is
in test_bandwidth.py.)"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from encodec_train.model import ResidualVectorQuantizer


def brute_force_codes(latent: torch.Tensor, embeds: list[torch.Tensor]) -> torch.Tensor:
    """Residual quantisation in float64 by explicit distances: [batch, dim, frames] →
    [n_q, batch, frames]."""
    residual = latent.double().transpose(1, 2)
    codes = []
    for embed in embeds:
        embed = embed.double()
        level = ((residual[..., None, :] - embed) ** 2).sum(-1).argmin(-1)
        codes.append(level)
        residual = residual - embed[level]
    return torch.stack(codes)


def quantizer_with_codebooks(embeds: list[list[list[float]]], **kwargs) -> ResidualVectorQuantizer:
    """A quantizer whose codebooks are already initialised to the given vectors."""
    first = torch.tensor(embeds[0])
    quantizer = ResidualVectorQuantizer(
        dimension=first.shape[1], n_q=len(embeds), codebook_size=first.shape[0], **kwargs
    )
    with torch.no_grad():
        for layer, embed in zip(quantizer.vq.layers, embeds, strict=True):
            codebook = layer._codebook
            codebook.embed.copy_(torch.tensor(embed))
            codebook.embed_avg.copy_(codebook.embed)
            codebook.cluster_size.fill_(1.0)
            codebook.inited.fill_(1.0)
    return quantizer


# -- commitment loss, straight-through estimator, metrics ------------------------------

# Level 1 maps (1, 2) → (1, 1) and (-1, 0.5) → (-1, 0): residuals (0, 1) and (0, 0.5).
# Level 2 maps (0, 1) → (0, 1) and (0, 0.5) → (0, 0.25): residuals (0, 0) and (0, 0.25).
HAND_CODEBOOKS = [[[1.0, 1.0], [-1.0, 0.0]], [[0.0, 1.0], [0.0, 0.25]]]
HAND_LATENT = torch.tensor([[[1.0, -1.0], [2.0, 0.5]]])  # [batch 1, dim 2, frames 2]
LEVEL_MSE = [(1.0 + 0.25) / 4, 0.0625 / 4]  # mean over the 4 latent values


@pytest.mark.parametrize(
    "reduction, weight, expected",
    [
        ("sum", 1.0, LEVEL_MSE[0] + LEVEL_MSE[1]),
        ("mean", 1.0, (LEVEL_MSE[0] + LEVEL_MSE[1]) / 2),
        ("sum", 2.5, 2.5 * (LEVEL_MSE[0] + LEVEL_MSE[1])),
    ],
)
def test_commitment_loss_is_the_hand_computed_mse(reduction, weight, expected):
    quantizer = quantizer_with_codebooks(
        HAND_CODEBOOKS,
        dead_code_threshold=0.0,
        commitment_reduction=reduction,
        commitment_weight=weight,
    ).train()
    out = quantizer(HAND_LATENT.clone(), n_q=2)
    assert out.codes.tolist() == [[[0, 1]], [[0, 1]]]
    assert out.commitment_loss.item() == pytest.approx(expected, rel=1e-6)
    expected_quantized = [[[1.0, -1.0], [2.0, 0.25]]]  # (1,1)+(0,1) and (-1,0)+(0,0.25)
    assert out.quantized.tolist() == expected_quantized


def test_commitment_loss_is_zero_in_eval_mode_and_the_codebooks_do_not_move():
    quantizer = quantizer_with_codebooks(HAND_CODEBOOKS).eval()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    out = quantizer(HAND_LATENT.clone(), n_q=2)
    assert out.commitment_loss.item() == 0.0
    assert out.codes.tolist() == [[[0, 1]], [[0, 1]]]
    for key, value in quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_straight_through_estimator_passes_gradients_unchanged():
    gen = torch.Generator().manual_seed(0)
    embeds = [torch.randn(8, 6, generator=gen).tolist() for _ in range(3)]
    quantizer = quantizer_with_codebooks(embeds, dead_code_threshold=0.0).train()
    x = torch.randn(2, 6, 10, generator=gen, requires_grad=True)
    out = quantizer(x, n_q=3)
    upstream = torch.randn(out.quantized.shape, generator=gen)
    out.quantized.backward(upstream)
    assert torch.equal(x.grad, upstream)
    # ... while the forward value is the hard quantisation of x with the codebooks as they
    # were before this step's EMA update.
    assert torch.equal(out.codes, brute_force_codes(x.detach(), [torch.tensor(e) for e in embeds]))
    hard = sum(
        torch.tensor(embed)[codes].transpose(1, 2)
        for embed, codes in zip(embeds, out.codes, strict=True)
    )
    torch.testing.assert_close(out.quantized, hard, rtol=0, atol=1e-6)


def test_commitment_loss_gradient_reaches_the_latent_through_the_first_level_only():
    """As in the official code, the straight-through estimator detaches the residuals, so
    only the first level's term of the loss has a gradient with respect to the latent."""
    quantizer = quantizer_with_codebooks(HAND_CODEBOOKS, dead_code_threshold=0.0).train()
    x = HAND_LATENT.clone().requires_grad_(True)
    quantizer(x, n_q=2).commitment_loss.backward()
    # d/dx mean((x - q1)²) = 2 (x - q1) / 4, with x - q1 = (0, 1) and (0, 0.5)
    expected = torch.tensor([[[0.0, 0.0], [0.5, 0.25]]])
    torch.testing.assert_close(x.grad, expected)


def test_commitment_loss_gradient_equals_the_official_quantizer():
    vq = pytest.importorskip("encodec.quantization.vq")
    ours = quantizer_with_codebooks(
        HAND_CODEBOOKS, dead_code_threshold=0.0, commitment_reduction="mean"
    ).train()
    ref = vq.ResidualVectorQuantizer(dimension=2, n_q=2, bins=2, threshold_ema_dead_code=0)
    ref.load_state_dict(ours.state_dict())
    ref.train()
    x_ours = HAND_LATENT.clone().requires_grad_(True)
    x_ref = HAND_LATENT.clone().requires_grad_(True)
    ours(x_ours, n_q=2).commitment_loss.backward()
    ref(x_ref, 1, None).penalty.backward()  # None: all levels
    torch.testing.assert_close(x_ours.grad, x_ref.grad)


def test_usage_and_perplexity_of_a_hand_built_assignment():
    # Four codes far apart; the batch uses code 0 twice, codes 1 and 2 once, code 3 never.
    embeds = [[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]]]
    quantizer = quantizer_with_codebooks(embeds, dead_code_threshold=0.0).train()
    latent = torch.tensor([[[0.1, -0.1, 9.9, 0.2], [0.0, 0.1, 0.0, 10.1]]])
    out = quantizer(latent, n_q=1)
    assert out.codes.tolist() == [[[0, 0, 1, 2]]]
    assert out.metrics["codebook_usage/0"].item() == pytest.approx(3 / 4)
    # probabilities (1/2, 1/4, 1/4, 0): entropy 1.5 ln 2, perplexity 2^1.5
    assert out.metrics["codebook_perplexity/0"].item() == pytest.approx(2**1.5, rel=1e-6)
    assert out.metrics["codebook_replaced/0"].item() == 0.0  # replacement is off


def test_replaced_dead_codes_are_counted_per_level():
    """Decay 0.5, threshold 1. Level 0 (codes far apart, EMA counts 1) gets counts
    (3, 1, 0, 0), so its EMA counts become (2, 1, 0.5, 0.5): codes 2 and 3 are dead. Level 1
    (EMA counts 10) gets the residuals (0, 0.1), (0.5, 0), (0.4, -0.1), (0.1, 0): counts
    (2, 2, 0, 0), EMA counts (6, 6, 5, 5), none dead."""
    embeds = [
        [[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0]],
        [[0.0, 0.0], [0.5, 0.0], [0.0, 0.5], [0.5, 0.5]],
    ]
    quantizer = quantizer_with_codebooks(embeds, decay=0.5, dead_code_threshold=1.0).train()
    level_1 = quantizer.vq.layers[1]._codebook
    level_1.cluster_size.fill_(10.0)
    level_1.embed_avg.copy_(level_1.embed * 10.0)
    latent = torch.tensor([[[0.0, 0.5, 0.4, 10.1], [0.1, 0.0, -0.1, 0.0]]])
    out = quantizer(latent, n_q=2, generator=torch.Generator().manual_seed(0))
    assert out.codes.tolist() == [[[0, 0, 0, 1]], [[0, 1, 1, 0]]]
    replaced = out.metrics["codebook_replaced/0"]
    assert isinstance(replaced, torch.Tensor) and replaced.dtype == torch.float32
    assert replaced.item() == 2.0
    assert out.metrics["codebook_replaced/1"].item() == 0.0
    # the two dead codes now hold vectors of this batch (level 0's input rows)
    rows = latent[0].t()
    for code in (2, 3):
        assert (rows == quantizer.vq.layers[0]._codebook.embed[code]).all(dim=1).any()


# -- random draws ----------------------------------------------------------------------


def train_from_scratch(generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Four steps of a fresh quantizer (k-means, then dead-code replacement) on fixed data."""
    quantizer = ResidualVectorQuantizer(
        dimension=4, n_q=2, codebook_size=16, kmeans_iters=3, dead_code_threshold=2.0
    ).train()
    data = torch.Generator().manual_seed(3)
    replaced = 0
    for _ in range(4):
        out = quantizer(torch.randn(2, 4, 30, generator=data), n_q=2, generator=generator)
        replaced += out.metrics["codebook_replaced/0"] + out.metrics["codebook_replaced/1"]
    assert replaced > 0, "the test must exercise replacement"
    return quantizer.state_dict()


def test_codebook_draws_come_from_the_given_generator_only():
    torch.manual_seed(0)
    global_state = torch.get_rng_state()
    generator = torch.Generator().manual_seed(7)
    first = train_from_scratch(generator)
    assert torch.equal(torch.get_rng_state(), global_state), "torch's generator was used"
    assert not torch.equal(generator.get_state(), torch.Generator().manual_seed(7).get_state())
    torch.manual_seed(1)  # a different global state changes nothing
    again = train_from_scratch(torch.Generator().manual_seed(7))
    other = train_from_scratch(torch.Generator().manual_seed(8))
    for key in first:
        assert torch.equal(first[key], again[key]), key
    assert not torch.equal(
        first["vq.layers.0._codebook.embed"], other["vq.layers.0._codebook.embed"]
    )


def test_without_a_generator_the_draws_come_from_torchs_default_generator():
    torch.manual_seed(5)
    first = train_from_scratch(None)
    torch.manual_seed(5)
    again = train_from_scratch(None)
    for key in first:
        assert torch.equal(first[key], again[key]), key
    torch.manual_seed(5)
    untouched = torch.get_rng_state()
    train_from_scratch(None)
    assert not torch.equal(torch.get_rng_state(), untouched)


# -- precision -------------------------------------------------------------------------


def test_quantizer_stays_fp32_under_bf16_autocast():
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(
        dimension=8, n_q=4, codebook_size=32, kmeans_iters=5, dead_code_threshold=0.0
    ).train()
    projection = nn.Conv1d(8, 8, 1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        latent = projection(torch.randn(4, 8, 50))
        assert latent.dtype == torch.bfloat16  # autocast is active
        out = quantizer(latent, n_q=4)
    assert out.quantized.dtype == torch.float32
    assert out.commitment_loss.dtype == torch.float32
    for name, buffer in quantizer.state_dict().items():
        assert buffer.dtype == torch.float32, name

    # Codes under autocast equal a float64 brute force on the same (bf16-valued) latent:
    # distances in bf16 would pick other codes.
    quantizer.eval()
    embeds = [layer._codebook.embed for layer in quantizer.vq.layers]
    expected = brute_force_codes(latent.detach(), embeds)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(quantizer(latent, n_q=4).codes, expected)
        assert torch.equal(quantizer.encode(latent, n_q=4), expected)


# -- distributed training --------------------------------------------------------------

WORLD = 2
STEPS = 4


def make_distributed_quantizer(threshold: float) -> ResidualVectorQuantizer:
    return ResidualVectorQuantizer(
        dimension=8, n_q=3, codebook_size=16, kmeans_iters=5, dead_code_threshold=threshold
    ).train()


def rank_batch(rank: int, step: int) -> torch.Tensor:
    """Each rank sees differently distributed data: [2, 8, 12]."""
    gen = torch.Generator().manual_seed(100 * step + rank)
    return (1 + rank) * torch.randn(2, 8, 12, generator=gen) + rank


def train(quantizer: ResidualVectorQuantizer, batches, generator=None) -> None:
    if generator is None:
        torch.manual_seed(1234)  # the k-means and dead-code draws (made on rank 0)
    for x in batches:
        quantizer(x, n_q=3, generator=generator)


GENERATOR_SEED = 99
THRESHOLDS = (0.0, 2.0)


def _distributed_worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        for threshold in THRESHOLDS:
            quantizer = make_distributed_quantizer(threshold)
            train(quantizer, [rank_batch(rank, step) for step in range(STEPS)])
            torch.save(quantizer.state_dict(), Path(out_dir) / f"rank{rank}-{threshold}.pt")
            # A generator owned by the caller, seeded alike on every rank; torch's default
            # generator differs between the ranks and must not matter.
            torch.manual_seed(rank)
            generator = torch.Generator().manual_seed(GENERATOR_SEED)
            quantizer = make_distributed_quantizer(threshold)
            train(quantizer, [rank_batch(rank, step) for step in range(STEPS)], generator)
            state = {**quantizer.state_dict(), "generator": generator.get_state()}
            torch.save(state, Path(out_dir) / f"rank{rank}-{threshold}-generator.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def distributed_states(tmp_path_factory) -> dict[tuple[int, str], dict[str, torch.Tensor]]:
    """(rank, "<threshold>" or "<threshold>-generator") → the state after training."""
    out_dir = tmp_path_factory.mktemp("gloo")
    mp.spawn(
        _distributed_worker, args=(str(out_dir / "init"), str(out_dir)), nprocs=WORLD, join=True
    )
    return {
        (rank, f"{threshold}{variant}"): torch.load(out_dir / f"rank{rank}-{threshold}{variant}.pt")
        for rank in range(WORLD)
        for threshold in THRESHOLDS
        for variant in ("", "-generator")
    }


@pytest.mark.parametrize("variant", ["", "-generator"], ids=["default-generator", "generator"])
@pytest.mark.parametrize("threshold", THRESHOLDS, ids=["no-dead-codes", "dead-code-revival"])
def test_ranks_end_with_identical_codebooks(distributed_states, threshold, variant):
    rank0 = distributed_states[0, f"{threshold}{variant}"]
    rank1 = distributed_states[1, f"{threshold}{variant}"]
    for key in rank0:
        assert torch.equal(rank0[key], rank1[key]), key
    # the codebooks did learn (k-means ran, EMA moved them)
    assert rank0["vq.layers.2._codebook.inited"].item() == 1
    assert rank0["vq.layers.0._codebook.embed"].abs().sum() > 0
    if threshold:  # dead codes were replaced (on rank 0, then broadcast)
        without = distributed_states[0, f"0.0{variant}"]["vq.layers.0._codebook.embed"]
        assert not torch.allclose(rank0["vq.layers.0._codebook.embed"], without)


def test_a_generator_seeded_alike_on_every_rank_stays_alike(distributed_states):
    """Rank 0 alone samples the k-means rows and the replacement vectors, yet every rank takes
    the same draws from the generator, so a training module's generator stays identical on all
    ranks (its other draws, such as the step's bandwidth, must agree between ranks)."""
    start = torch.Generator().manual_seed(GENERATOR_SEED).get_state()
    for threshold in THRESHOLDS:
        rank0, rank1 = (distributed_states[r, f"{threshold}-generator"] for r in range(WORLD))
        assert torch.equal(rank0["generator"], rank1["generator"]), threshold
        assert not torch.equal(rank0["generator"], start), threshold


@pytest.mark.parametrize("variant", ["", "-generator"], ids=["default-generator", "generator"])
def test_two_ranks_equal_one_process_on_the_concatenated_data(distributed_states, variant):
    """Statistics summed over ranks and k-means on the gathered samples make data-parallel
    training equal single-process training on the whole batch."""
    single = make_distributed_quantizer(0.0)
    generator = torch.Generator().manual_seed(GENERATOR_SEED) if variant else None
    train(
        single,
        [torch.cat([rank_batch(r, step) for r in range(WORLD)]) for step in range(STEPS)],
        generator,
    )
    distributed = distributed_states[0, f"0.0{variant}"]
    for key, value in single.state_dict().items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-5, atol=1e-5)
    # and not what rank 0 alone would have learnt
    alone = make_distributed_quantizer(0.0)
    train(alone, [rank_batch(0, step) for step in range(STEPS)])
    assert not torch.allclose(
        alone.state_dict()["vq.layers.0._codebook.embed"],
        distributed["vq.layers.0._codebook.embed"],
    )


@pytest.mark.parametrize("mode", ["first_level", "every_level"])
def test_commitment_gradient_reaches_the_encoder_from_the_levels_it_says(mode):
    """Paper Eq. 3 sums ‖r_l − q_l‖² over levels; the official straight-through residuals let
    only level 1's term reach the encoder. Compared with the hand-computed gradients
    2 (r_l − q_l) / N of each term, from the codebooks as they were before the step."""
    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(
        dimension=4, n_q=2, codebook_size=8, kmeans_init=False, dead_code_threshold=0,
        commitment_gradient=mode,
    )  # fmt: skip
    embeds = [layer._codebook.embed.clone() for layer in quantizer.vq.layers]
    x = torch.randn(2, 4, 5, requires_grad=True)
    out = quantizer.train()(x, n_q=2)
    (grad,) = torch.autograd.grad(out.commitment_loss, x, retain_graph=True)

    codes = out.codes  # [n_q, batch, frames]
    q0 = embeds[0][codes[0]].transpose(1, 2)
    q1 = embeds[1][codes[1]].transpose(1, 2)
    r1 = x.detach() - q0
    n = x.numel()
    expected = 2 * (x.detach() - q0) / n
    if mode == "every_level":
        expected = expected + 2 * (r1 - q1) / n
    torch.testing.assert_close(grad, expected)
    # Either way the decoder's gradient reaches the encoder once, unchanged.
    (through,) = torch.autograd.grad(out.quantized.sum(), x)
    torch.testing.assert_close(through, torch.ones_like(x))


def test_initialised_levels_update_as_one_by_one_with_one_all_reduce(monkeypatch):
    """Once every level has its codebook, the levels' statistics share one all-reduce per
    step; the codebooks end as if each level were updated right after quantising."""
    import encodec_train.model.codebook as codebook_module

    torch.manual_seed(0)
    quantizer = ResidualVectorQuantizer(dimension=8, n_q=3, codebook_size=16, kmeans_iters=2)
    latent = torch.randn(2, 8, 40)
    quantizer.train()
    quantizer(latent, n_q=3, generator=torch.Generator().manual_seed(1))  # k-means
    # Level by level, as written in the paper's loop: quantise, then update that codebook.
    expected = copy.deepcopy(quantizer)
    draws = torch.Generator().manual_seed(2)
    residual = latent
    for layer in expected.vq.layers:
        flat = residual.transpose(1, 2).reshape(-1, 8)
        codes = layer._codebook.encode(flat)
        quantized = layer._codebook.decode(codes).view(2, 40, 8).transpose(1, 2)
        layer._codebook.update(flat, codes, draws)
        residual = residual - quantized
    calls = []
    original = codebook_module.all_reduce_sum_
    monkeypatch.setattr(
        codebook_module, "all_reduce_sum_", lambda *t: calls.append(len(t)) or original(*t)
    )
    quantizer(latent, n_q=3, generator=torch.Generator().manual_seed(2))
    assert calls == [1]
    for key, value in expected.state_dict().items():
        assert torch.equal(quantizer.state_dict()[key], value), key


class _ScalarReads(TorchDispatchMode):
    """Counts the tensor → Python scalar reads (`item`, `bool`, `int`: a host-device sync
    on a GPU) of the ops run inside it."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.reads += func is torch.ops.aten._local_scalar_dense.default
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("threshold", [0.0, 2.0])
def test_a_steady_state_step_reads_the_device_at_most_once(monkeypatch, threshold):
    """Once initialised, a training step reads no `inited` flag and checks the dead codes of
    every level in one read (`tolist`); without dead-code replacement it reads nothing."""
    quantizer = ResidualVectorQuantizer(
        dimension=8, n_q=3, codebook_size=16, kmeans_iters=2, dead_code_threshold=threshold
    )
    latent = torch.randn(2, 8, 40, generator=torch.Generator().manual_seed(0))
    quantizer.train()
    quantizer(latent, n_q=3, generator=torch.Generator().manual_seed(1))  # k-means
    with torch.no_grad():  # no code is dead: no replacement draws (which read a CPU scalar)
        for layer in quantizer.vq.layers:
            layer._codebook.cluster_size.fill_(1e3)
    lists = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: lists.append(t.numel()) or original(t))
    with _ScalarReads() as reads:
        quantizer(latent, n_q=3, generator=torch.Generator().manual_seed(2))
    assert reads.reads == 0
    assert lists == ([3] if threshold else [])


def test_the_initialised_flag_follows_a_loaded_state_dict():
    fresh = ResidualVectorQuantizer(dimension=8, n_q=1, codebook_size=16, kmeans_iters=2)
    trained = copy.deepcopy(fresh).train()
    trained(torch.randn(2, 8, 40), n_q=1)
    codebook = trained.vq.layers[0]._codebook
    assert codebook.is_initialized()
    trained.load_state_dict(fresh.state_dict())
    assert not codebook.is_initialized()
    trained(torch.randn(2, 8, 40), n_q=1)  # k-means again
    assert codebook.is_initialized() and codebook.embed.abs().sum() > 0
