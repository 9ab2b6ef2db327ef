"""Balancer against closed-form gradients, including the EMA of norms over several steps."""

import io
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from encodec_train.losses.balancer import Balancer

# Loss "a" has gradient s·C_A w.r.t. the output: per-item norms 5 and 10, mean 7.5, whole 5√5.
C_A = torch.tensor([[3.0, 4.0, 0.0], [0.0, 6.0, 8.0]])
# Loss "b" has gradient s·C_B: per-item norms 1 and 1, mean 1, whole √2.
C_B = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


def _losses(output: Tensor, scale_a: float, scale_b: float) -> dict[str, Tensor]:
    return {"a": scale_a * (output * C_A).sum(), "b": scale_b * (output * C_B).sum()}


def _step(balancer: Balancer, scale_a: float, scale_b: float) -> Tensor:
    """Gradient of the surrogate w.r.t. the output after one balanced step."""
    output = torch.zeros(2, 3, requires_grad=True)
    balancer.combine(_losses(output, scale_a, scale_b), output).backward()
    return output.grad


def test_single_step_closed_form() -> None:
    balancer = Balancer({"a": 3.0, "b": 1.0}, total_norm=2.0)
    # First step: the bias-corrected EMA is the norm itself. Scale of a: 2 · 3/4 / 7.5.
    expected = 2 * 0.75 / 7.5 * C_A + 2 * 0.25 / 1.0 * C_B
    torch.testing.assert_close(_step(balancer, 1.0, 1.0), expected)


def test_whole_batch_norm() -> None:
    balancer = Balancer({"a": 1.0, "b": 1.0}, per_item=False)
    expected = 0.5 / 125**0.5 * C_A + 0.5 / 2**0.5 * C_B
    torch.testing.assert_close(_step(balancer, 1.0, 1.0), expected)


def test_ema_over_three_steps_closed_form() -> None:
    balancer = Balancer({"a": 3.0, "b": 1.0}, ema_decay=0.5, total_norm=2.0)
    for scale_a, scale_b in [(1.0, 1.0), (2.0, 1.0)]:
        _step(balancer, scale_a, scale_b)
    grad = _step(balancer, 4.0, 3.0)
    # Decayed sums over the norms (7.5·[1, 2, 4] and [1, 1, 3]) with weights [0.25, 0.5, 1],
    # divided by the decayed count 1.75: EMA_a = 7.5 · 5.25 / 1.75 = 22.5, EMA_b = 15 / 7.
    # Step-3 gradients are 4·C_A and 3·C_B, scaled by 2·(3/4)/22.5 and 2·(1/4)/(15/7).
    expected = (1.5 / 22.5 * 4) * C_A + (0.5 * 7 / 15 * 3) * C_B
    torch.testing.assert_close(grad, expected)
    torch.testing.assert_close(balancer.metrics["ratio_a"], torch.tensor(22.5 / (22.5 + 15 / 7)))
    torch.testing.assert_close(balancer.metrics["grad_norm_b"], torch.tensor(3.0))


def test_parameters_get_gradients_only_from_the_single_backward() -> None:
    torch.manual_seed(0)
    decoder = nn.Linear(3, 3, bias=False)
    inputs = torch.randn(2, 3)
    output = decoder(inputs)
    balancer = Balancer({"a": 1.0, "b": 1.0})
    surrogate = balancer.combine(_losses(output, 1.0, 1.0), output)
    assert decoder.weight.grad is None  # combine differentiates w.r.t. the output only
    commitment = decoder.weight.square().sum()  # an unbalanced loss added by the caller
    (surrogate + commitment).backward()
    combined = 0.5 / 7.5 * C_A + 0.5 / 1.0 * C_B
    # output = inputs Wᵀ, so the gradient w.r.t. W of Σ output ⊙ G is Gᵀ inputs.
    expected = combined.T @ inputs + 2 * decoder.weight.detach()
    torch.testing.assert_close(decoder.weight.grad, expected)


def test_state_round_trips_through_torch_save() -> None:
    balancer = Balancer({"a": 3.0, "b": 1.0}, ema_decay=0.5)
    _step(balancer, 1.0, 1.0)
    _step(balancer, 2.0, 1.0)
    buffer = io.BytesIO()
    torch.save(balancer.state_dict(), buffer)
    buffer.seek(0)
    restored = Balancer({"a": 3.0, "b": 1.0}, ema_decay=0.5)
    restored.load_state_dict(torch.load(buffer))
    assert set(restored.state_dict()) == {"norm_sums", "norm_count"}
    torch.testing.assert_close(_step(restored, 4.0, 3.0), _step(balancer, 4.0, 3.0))
    # Without the state, the third step would differ.
    assert not torch.allclose(
        _step(Balancer({"a": 3.0, "b": 1.0}), 4.0, 3.0), _step(restored, 4.0, 3.0)
    )


@pytest.mark.parametrize("weights", [{"a": 1.0, "b": 0.0}, {"a": -1.0, "b": 1.0}])
def test_weights_must_be_positive(weights: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="balancer weights must be positive"):
        Balancer(weights)


def test_loss_names_must_be_among_the_weights() -> None:
    balancer = Balancer({"a": 1.0, "b": 1.0})
    output = torch.zeros(2, 3, requires_grad=True)
    losses = _losses(output, 1.0, 1.0)
    with pytest.raises(ValueError, match=r"unexpected \['c'\]"):
        balancer.combine({**losses, "c": losses["a"]}, output)
    with pytest.raises(ValueError, match=r"unexpected \[\]"):
        balancer.combine({}, output)


def test_a_subset_is_balanced_alone_and_a_late_loss_starts_its_own_average() -> None:
    """Warm-up without "b": "a" takes the whole norm; when "b" joins, its EMA starts from its
    own first norm (bias correction per loss), while "a"'s EMA continues."""
    balancer = Balancer({"a": 3.0, "b": 1.0}, ema_decay=0.5, total_norm=2.0)
    output = torch.zeros(2, 3, requires_grad=True)
    balancer.combine({"a": (output * C_A).sum()}, output).backward()
    torch.testing.assert_close(output.grad, 2 * 1.0 / 7.5 * C_A)
    assert set(balancer.metrics) == {"ratio_a", "grad_norm_a"}
    # Step 2: a's norms 7.5 then 15, EMA (0.5·7.5 + 15) / 1.5 = 12.5; b's first norm is 2.
    grad = _step(balancer, 2.0, 2.0)
    expected = 2 * 0.75 / 12.5 * 2 * C_A + 2 * 0.25 / 2.0 * 2 * C_B
    torch.testing.assert_close(grad, expected)


def _distributed_worker(rank: int, port: int, results: "mp.Queue[list[float]]") -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        balancer = Balancer({"a": 1.0, "b": 1.0})
        # Rank 0's gradient norms are 7.5 and 1, rank 1's 15 and 3: averages 11.25 and 2.
        grad = _step(balancer, 1.0 + rank, 1.0 + 2 * rank)
        results.put([rank, *balancer.norm_sums.tolist(), *grad.flatten().tolist()])
    finally:
        dist.destroy_process_group()


def test_norms_are_averaged_across_ranks() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("spawn")
    results = context.Queue()
    processes = [
        context.Process(target=_distributed_worker, args=(rank, port, results)) for rank in (0, 1)
    ]
    for process in processes:
        process.start()
    outputs = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    for rank, sum_a, sum_b, *grad in outputs:
        assert (sum_a, sum_b) == pytest.approx((11.25, 2.0))
        scale = 1.0 + rank, 1.0 + 2 * rank
        expected = 0.5 / 11.25 * scale[0] * C_A + 0.5 / 2.0 * scale[1] * C_B
        torch.testing.assert_close(torch.tensor(grad).reshape(2, 3), expected)
