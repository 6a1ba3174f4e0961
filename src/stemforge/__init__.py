"""stemforge: music source separation.

Public API (imported lazily, so ``import stemforge`` stays cheap)::

    from stemforge import Separator, save_stems
"""
from __future__ import annotations

__version__ = "0.1.0"

_LAZY = {
    "Separator": ("stemforge.inference.separator", "Separator"),
    "save_stems": ("stemforge.audio.io", "save_stems"),
    "read_audio": ("stemforge.audio.io", "read_audio"),
}


__all__ = ["Separator", "save_stems", "read_audio", "__version__"]


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        return getattr(importlib.import_module(module_name), attr)
    raise AttributeError(f"module 'stemforge' has no attribute {name!r}")
