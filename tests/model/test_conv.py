"""Padding of the SEANet convolutions (`encodec_train.model.conv.pad1d`) against `F.pad`."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from encodec_train.model.conv import pad1d


@pytest.mark.parametrize(("left", "right"), [(6, 0), (0, 3), (2, 5), (1, 1), (0, 0)])
def test_reflect_padding_is_f_pad_s_in_values_and_gradients(left, right):
    x = torch.randn(2, 3, 40, dtype=torch.float64, requires_grad=True)
    ours, theirs = pad1d(x, (left, right), "reflect"), F.pad(x, (left, right), "reflect")
    assert torch.equal(ours, theirs)
    weights = torch.randn_like(theirs)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), x)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), x)
    assert torch.allclose(grad_ours, grad_theirs, rtol=0, atol=1e-12)


def test_reflect_padding_of_an_input_shorter_than_the_pad_zero_extends_it_first():
    """The official model's rule: [1, 2] padded by 3 on the left reflects [1, 2, 0, 0]."""
    x = torch.tensor([[[1.0, 2.0]]])
    assert pad1d(x, (3, 0), "reflect").flatten().tolist() == [0.0, 0.0, 2.0, 1.0, 2.0]
