"""EuclideanCodebook and k-means against independent computations: a numpy Lloyd's
algorithm, hand-written EMA values, the official package's EMA step, dead-code revival, and
random draws from the caller's generator."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encodec_train.model.codebook import EuclideanCodebook, derived_generator, kmeans


def lloyd_numpy(samples: np.ndarray, init: np.ndarray, num_iters: int):
    """Textbook Lloyd's iterations in float64; an empty cluster keeps its centroid.
    Returns (centroids, sizes of the clusters of the last assignment)."""
    means = init.astype(np.float64).copy()
    x = samples.astype(np.float64)
    sizes = np.zeros(len(means))
    for _ in range(num_iters):
        assign = ((x[:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
        sizes = np.bincount(assign, minlength=len(means)).astype(np.float64)
        for k in range(len(means)):
            if sizes[k]:
                means[k] = x[assign == k].mean(0)
    return means, sizes


def initial_rows(samples: torch.Tensor, num: int, generator: torch.Generator) -> torch.Tensor:
    """The rows k-means starts from: a permutation's first rows, or rows drawn with
    replacement when there are fewer than `num`."""
    n = samples.shape[0]
    if n >= num:
        return samples[torch.randperm(n, generator=generator)[:num]]
    return samples[torch.randint(0, n, (num,), generator=generator)]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def blobs(n: int, dim: int, centres: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centre = 4 * torch.randn(centres, dim, generator=gen)
    labels = torch.randint(0, centres, (n,), generator=gen)
    return centre[labels] + torch.randn(n, dim, generator=gen)


@pytest.mark.parametrize(
    "n, k, iters", [(300, 8, 10), (500, 16, 25)], ids=["8-clusters", "16-clusters"]
)
def test_kmeans_equals_numpy_lloyd_from_the_same_start(n, k, iters):
    samples = blobs(n, 5, 6, seed=n)
    means, sizes = kmeans(samples, k, iters, seeded(123))
    init = initial_rows(samples, k, seeded(123))
    expected_means, expected_sizes = lloyd_numpy(samples.numpy(), init.numpy(), iters)
    np.testing.assert_allclose(means.numpy(), expected_means, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sizes.numpy(), expected_sizes)
    assert sizes.sum() == n


def test_kmeans_with_fewer_samples_than_clusters_keeps_empty_centroids():
    """Rows drawn with replacement: duplicated starting rows leave clusters empty, and an
    empty cluster keeps its starting vector (checked against the numpy version)."""
    samples = blobs(6, 3, 2, seed=0)
    means, sizes = kmeans(samples, 10, 5, seeded(7))
    init = initial_rows(samples, 10, seeded(7))
    expected_means, expected_sizes = lloyd_numpy(samples.numpy(), init.numpy(), 5)
    assert (expected_sizes == 0).any()
    np.testing.assert_allclose(means.numpy(), expected_means, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(sizes.numpy(), expected_sizes)


def test_initialize_sets_embed_sizes_sums_and_inited():
    codebook = EuclideanCodebook(dim=5, codebook_size=8, kmeans_iters=6)
    assert codebook.inited.item() == 0 and not codebook.embed.any()
    samples = blobs(200, 5, 4, seed=3)
    codebook.initialize(samples, seeded(11))
    # k-means starts from rows drawn with a generator seeded by one draw from the given one
    seed = int(torch.randint(2**62, (), generator=seeded(11)))
    init = initial_rows(samples, 8, seeded(seed))
    expected_means, expected_sizes = lloyd_numpy(samples.numpy(), init.numpy(), 6)
    np.testing.assert_allclose(codebook.embed.numpy(), expected_means, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(codebook.cluster_size.numpy(), expected_sizes)
    # embed = embed_avg / cluster_size, so the sums start as embed × size.
    expected_avg = codebook.embed * codebook.cluster_size[:, None]
    assert torch.equal(codebook.embed_avg, expected_avg)
    assert codebook.inited.item() == 1


def hand_built_codebook(decay: float, threshold: float, epsilon: float = 1e-5):
    """Two codes in 2-D: (0, 0) and (10, 10), each with EMA count 1."""
    codebook = EuclideanCodebook(
        dim=2, codebook_size=2, decay=decay, epsilon=epsilon, dead_code_threshold=threshold
    )
    codebook.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    codebook.embed_avg.copy_(codebook.embed)
    codebook.cluster_size.fill_(1.0)
    codebook.inited.fill_(1.0)
    return codebook


def test_ema_update_values_by_hand():
    codebook = hand_built_codebook(decay=0.5, threshold=0.0)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 10.0], [11.0, 10.0], [10.0, 12.0]])
    codes = codebook.encode(x)
    assert codes.tolist() == [0, 0, 1, 1, 1]
    counts, replaced = codebook.update(x, codes)
    assert counts.tolist() == [2.0, 3.0]
    assert replaced.item() == 0.0
    # cluster_size = 0.5 · 1 + 0.5 · counts
    assert codebook.cluster_size.tolist() == [1.5, 2.0]
    # embed_avg = 0.5 · old sums + 0.5 · batch sums ((1, 1) and (30, 32))
    assert codebook.embed_avg.tolist() == [[0.5, 0.5], [20.0, 21.0]]
    # Laplace smoothing: (n_k + ε) / (n + K ε) · n with n = 3.5, K = 2
    eps, n = 1e-5, 3.5
    smoothed = [(1.5 + eps) / (n + 2 * eps) * n, (2.0 + eps) / (n + 2 * eps) * n]
    expected = [[0.5 / smoothed[0]] * 2, [20.0 / smoothed[1], 21.0 / smoothed[1]]]
    np.testing.assert_allclose(codebook.embed.numpy(), expected, rtol=1e-6)


def test_ema_update_equals_official_codebook_step():
    """Without dead codes the EMA step is the official one: compare with `encodec`'s."""
    core_vq = pytest.importorskip("encodec.quantization.core_vq")
    gen = torch.Generator().manual_seed(0)
    ref = core_vq.EuclideanCodebook(
        dim=4, codebook_size=16, decay=0.9, epsilon=1e-5, threshold_ema_dead_code=0
    ).train()
    ours = EuclideanCodebook(dim=4, codebook_size=16, decay=0.9, dead_code_threshold=0.0)
    ours.load_state_dict(ref.state_dict())
    for _ in range(3):
        x = torch.randn(64, 4, generator=gen)
        ref(x)
        ours.update(x, ours.encode(x))
    for name, buffer in ref.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[name], buffer, rtol=1e-5, atol=1e-6)


def test_dead_code_is_revived_and_used_on_the_next_step():
    torch.manual_seed(0)
    threshold = 0.5
    codebook = EuclideanCodebook(dim=2, codebook_size=4, decay=0.9, dead_code_threshold=threshold)
    codebook.embed.copy_(torch.tensor([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0], [100.0, 100.0]]))
    codebook.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 0.0]))
    codebook.embed_avg.copy_(codebook.embed * codebook.cluster_size[:, None])
    codebook.inited.fill_(1.0)
    centres = torch.tensor([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0]]).repeat_interleave(20, dim=0)
    x = centres + 0.3 * torch.randn(60, 2)

    codes = codebook.encode(x)
    assert not (codes == 3).any()  # code 3 (far away) is dead
    assert codebook.update(x, codes).replaced.item() == 1.0
    revived = codebook.embed[3]
    assert (x == revived).all(dim=1).any(), "the dead code is replaced by a batch vector"
    assert codebook.cluster_size[3].item() == threshold
    assert torch.equal(codebook.embed_avg[3], revived * threshold)
    assert codebook.cluster_size[:3].min() > threshold  # live codes untouched

    codes = codebook.encode(x)
    counts, replaced = codebook.update(x, codes)
    assert replaced.item() == 0.0
    assert counts[3] > 0, "the revived code is used by the batch it came from"
    assert codebook.cluster_size[3] > threshold  # not dead again
    distance_to_data = (x - codebook.embed[3]).norm(dim=1).min()
    assert distance_to_data < 1.0, "after the EMA step the code is still among the data"


def test_official_ordering_would_lose_the_revived_code():
    """Why the statistics are reset: with the official order (replace, then EMA with the old
    statistics) the revived code is pulled back to embed_avg / smoothed count ≈ 0."""
    core_vq = pytest.importorskip("encodec.quantization.core_vq")
    torch.manual_seed(0)
    ref = core_vq.EuclideanCodebook(
        dim=2, codebook_size=4, decay=0.9, threshold_ema_dead_code=1
    ).train()
    ref.embed.copy_(torch.tensor([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0], [100.0, 100.0]]))
    ref.cluster_size.copy_(torch.tensor([5.0, 5.0, 5.0, 0.0]))
    ref.embed_avg.copy_(ref.embed * ref.cluster_size[:, None])
    x = torch.tensor([[0.1, 0.0], [3.0, 3.1], [6.1, 6.0]]).repeat_interleave(20, dim=0)
    ref(x)
    assert ref.embed[3].norm() < 1e-3  # erased: our test above asserts the opposite


def test_dead_codes_are_replaced_by_rows_drawn_from_the_given_generator():
    """The replacement vectors are rows `randperm(n)[:codebook_size]` of the batch, drawn with
    a generator seeded by one draw from the caller's generator; torch's default generator
    is not touched."""
    codebook = EuclideanCodebook(dim=2, codebook_size=4, decay=0.9, dead_code_threshold=0.5)
    codebook.embed.copy_(torch.tensor([[0.0, 0.0], [3.0, 3.0], [6.0, 6.0], [100.0, 100.0]]))
    codebook.cluster_size.copy_(torch.tensor([5.0, 5.0, 0.0, 0.0]))
    codebook.embed_avg.copy_(codebook.embed * codebook.cluster_size[:, None])
    codebook.inited.fill_(1.0)
    x = blobs(40, 2, 2, seed=1)
    global_state = torch.get_rng_state()
    generator = seeded(21)
    codebook.update(x, codebook.encode(x), generator)
    assert torch.equal(torch.get_rng_state(), global_state)
    rows = initial_rows(x, 4, seeded(int(torch.randint(2**62, (), generator=seeded(21)))))
    dead = codebook.cluster_size == 0.5  # reset to the threshold
    assert dead.tolist() == [False, False, True, True]
    assert torch.equal(codebook.embed[dead], rows[dead])
    # exactly one draw was taken from the caller's generator
    expected = seeded(21)
    torch.randint(2**62, (), generator=expected)
    assert torch.equal(generator.get_state(), expected.get_state())


def test_derived_generator_takes_one_draw_whatever_is_drawn_from_it_later():
    first, second = seeded(4), seeded(4)
    derived_generator(first).manual_seed(0)
    torch.randperm(1000, generator=derived_generator(second))
    assert torch.equal(first.get_state(), second.get_state())
    assert torch.equal(
        torch.randperm(10, generator=derived_generator(seeded(4))),
        torch.randperm(10, generator=derived_generator(seeded(4))),
    )
