"""The fused inference path of DConv layers equals the module path (float32 rounding)."""
from __future__ import annotations

import pytest
import torch

from stemforge.models.layers.conv_blocks import DConv
from stemforge.models.layers.fused_dconv import fusable_layer, fused_dconv_layer


def _dconv(channels: int, **kwargs) -> DConv:
    torch.manual_seed(0)
    dconv = DConv(channels, compress=8, depth=2, init=1e-3, **kwargs).eval()
    with torch.no_grad():  # trained-like values: the init hides most of the branch
        for layer in dconv.layers:
            for module in layer:
                if isinstance(module, torch.nn.GroupNorm):
                    module.weight.uniform_(0.5, 1.5)
                    module.bias.normal_()
            layer[-1].scale.uniform_(-1, 1)
    return dconv


@pytest.mark.parametrize("rows,channels,steps,offset", [(7, 48, 50, 0.0), (3, 96, 200, 0.0),
                                                        (2, 16, 300, 30.0), (1, 48, 1000, 0.0)])
def test_fused_layers_equal_the_modules(rows, channels, steps, offset):
    dconv = _dconv(channels)
    x = torch.randn(rows, channels, steps) * 3 + offset  # offset: large means, small spread
    with torch.no_grad():
        fused = dconv(x)
    with torch.enable_grad():  # autograd enabled: the plain module path
        plain = dconv(x).detach()
    scale = plain.abs().max()
    assert (fused - plain).abs().max() <= 1e-6 * scale
    assert not torch.equal(fused, x)  # the branch did something


def test_each_layer_alone_is_x_plus_branch():
    dconv = _dconv(32)
    layer = dconv.layers[1]
    x = torch.randn(4, 32, 64)
    parts = fusable_layer(layer)
    assert parts is not None
    with torch.no_grad():
        assert torch.allclose(fused_dconv_layer(parts, x), x + layer(x), atol=1e-5)


def test_layers_with_lstm_or_attention_are_not_fused():
    assert all(fusable_layer(layer) is None for layer in _dconv(32, lstm=True).layers)
    assert all(fusable_layer(layer) is None for layer in _dconv(32, attn=True).layers)
    assert all(fusable_layer(layer) is None for layer in DConv(32, norm=False).layers)
