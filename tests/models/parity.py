"""Scaffolding of the parity tests of our models against the reference ``demucs`` (4.1.0)."""
from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping

import torch
from torch import nn

TOL = 1e-5  # largest absolute output difference allowed between our model and the reference


def same_seed_pair(ref_cls: Callable[..., nn.Module], our_cls: Callable[..., nn.Module],
                   kw: Mapping[str, Any], *, check_values: bool = True,
                   eval_mode: bool = False) -> tuple[nn.Module, nn.Module]:
    """The reference and our model built with ``kw`` from the same seed.

    Checks that the state-dict keys (in order) and shapes are the reference's, with
    ``check_values`` that the initial values are too, and that the reference state loads into our
    model strictly (the real use: official weights). Returns ``(ref, ours)``, switched to eval
    mode with ``eval_mode``.
    """
    torch.manual_seed(0)
    ref = ref_cls(**kw)
    torch.manual_seed(0)
    ours = our_cls(**kw)
    ref_state, our_state = ref.state_dict(), ours.state_dict()
    assert list(ref_state) == list(our_state)
    for key, value in ref_state.items():
        assert our_state[key].shape == value.shape, key
        if check_values:
            assert torch.equal(our_state[key], value), key
    ours.load_state_dict(ref_state, strict=True)
    if eval_mode:
        return ref.eval(), ours.eval()
    return ref, ours


def max_diff(ref: nn.Module, ours: nn.Module, mix: torch.Tensor) -> float:
    """Largest absolute difference between the two models' outputs on ``mix`` (same shape)."""
    with torch.no_grad():
        expected, got = ref(mix), ours(mix)
    assert got.shape == expected.shape
    return (expected - got).abs().max().item()


def assert_same_signature(ref_cls: type, our_cls: type) -> None:
    """Our constructor takes the reference's parameters, in the same order, with the same
    defaults."""
    ref_params = inspect.signature(ref_cls.__init__).parameters
    our_params = inspect.signature(our_cls.__init__).parameters
    assert list(ref_params) == list(our_params)
    for name, param in ref_params.items():
        assert our_params[name].default == param.default, name
