"""Checkpoint loading builds models on the meta device: every architecture must build there
without falling into PyTorch's Python reference ops, which import torch._dynamo
or sympy (0.4-1 s)."""
from __future__ import annotations

import subprocess
import sys

BUILD_ALL_ON_META = """
import sys, torch
from stemforge.models.registry import ARCHITECTURES, build_model
configs = {"HTDemucs": {"sources": ["a", "b"], "freq_emb": 0.2, "bottom_channels": 64},
           "HDemucs": {"sources": ["a", "b"], "freq_emb": 0.2},
           "Demucs": {"sources": ["a", "b"]}, "DemucsV2": {"sources": ["a", "b"]},
           "TFMaskUNet": {"sources": ["a", "b"]}}
assert set(configs) == set(ARCHITECTURES), sorted(ARCHITECTURES)
variants = list(configs.items())
variants.append(("HTDemucs", dict(configs["HTDemucs"], t_emb="scaled")))  # BoostedEmbedding
with torch.device("meta"):
    for arch, config in variants:
        model = build_model(arch, config)
        assert all(p.is_meta for p in model.parameters()), arch
slow_imports = ["torch._dynamo", "torch.fx.experimental.symbolic_shapes", "sympy"]
print("slow imports:", [name for name in slow_imports if name in sys.modules])
"""


def test_every_architecture_builds_on_meta_without_slow_imports():
    out = subprocess.run([sys.executable, "-c", BUILD_ALL_ON_META], check=True, capture_output=True,
                         text=True).stdout
    assert "slow imports: []" in out
