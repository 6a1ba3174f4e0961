"""museval 0.4.1's ``metrics`` module, loaded without importing the ``museval`` package.

``import museval`` pulls musdb -> stempeg, which refuses to import without an ffmpeg binary; the
metrics module itself only needs numpy and scipy, so it is loaded from its file.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Optional

import numpy as np


def load_museval_metrics() -> Optional[ModuleType]:
    """The module, or None when museval (or scipy) is not installed."""
    spec = importlib.util.find_spec("museval")
    if spec is None or not spec.submodule_search_locations or importlib.util.find_spec("scipy") is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("_museval_metrics_oracle", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def museval_frames(metrics: ModuleType, references: np.ndarray, estimates: np.ndarray,
                   window: int, hop: int) -> dict[str, np.ndarray]:
    """museval's v4 per-frame scores for ``(S, C, T)`` inputs: ``{metric: (S, n_frames)}``."""
    sdr, isr, sir, sar, _ = metrics.bss_eval(
        np.transpose(references, (0, 2, 1)).astype(np.float64),
        np.transpose(estimates, (0, 2, 1)).astype(np.float64),
        window=window, hop=hop, compute_permutation=False, filters_len=512,
        framewise_filters=False, bsseval_sources_version=False)
    return {"SDR": sdr, "SIR": sir, "ISR": isr, "SAR": sar}
