"""The CPU-friendly formulations in ``stemforge.models.layers.fastops`` give the plain results."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from stemforge.models.layers.fastops import activate_fresh


@pytest.mark.parametrize("activation", [F.gelu, F.relu])
def test_activate_fresh_is_in_place_without_autograd(activation):
    x = torch.randn(3, 5, 7)
    expected = activation(x)
    for context in (torch.no_grad, torch.inference_mode):
        with context():
            fresh = x.clone()
            out = activate_fresh(activation, fresh)
        assert out.data_ptr() == fresh.data_ptr()  # no second tensor
        assert torch.equal(out, expected)


@pytest.mark.parametrize("activation", [F.gelu, F.relu])
def test_activate_fresh_keeps_autograd_intact(activation):
    weight = torch.randn(5, 5, requires_grad=True)
    x = torch.randn(4, 5)
    hidden = x @ weight
    out = activate_fresh(activation, hidden)
    assert out.data_ptr() != hidden.data_ptr()  # the backward pass needs `hidden`
    out.sum().backward()
    expected_weight = weight.detach().clone().requires_grad_(True)
    activation(x @ expected_weight).sum().backward()
    assert torch.equal(weight.grad, expected_weight.grad)


def test_activate_fresh_runs_other_activations_as_given():
    x = torch.randn(6)
    with torch.no_grad():
        out = activate_fresh(torch.tanh, x)
    assert out.data_ptr() != x.data_ptr() and torch.equal(out, torch.tanh(x))
