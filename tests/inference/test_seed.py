"""``seed`` makes random shifts repeatable; different seeds give different shifts."""
from __future__ import annotations

import torch

from stemforge.inference.separator import Separator
from tests.inference.test_engine import ContextModel


def separate(seed: int) -> torch.Tensor:
    torch.manual_seed(0)
    model = ContextModel().eval()
    return Separator(model, device="cpu", shifts=2, seed=seed).separate_tensor(torch.randn(2, 1200))


def test_same_seed_same_output_different_seed_different_output():
    torch.manual_seed(5)
    first, again, other = separate(7), separate(7), separate(8)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)
