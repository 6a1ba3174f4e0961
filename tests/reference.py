"""Helpers for parity tests against the reference implementation (``demucs==4.1.0``, test extra).

Only tests import ``demucs``; stemforge itself never does.
"""
from __future__ import annotations

import hashlib
import io
from pathlib import Path

import torch


def official_package(model: torch.nn.Module, half: bool = False) -> dict:
    """The dict Demucs pickles into an official ``.th`` file for ``model`` (a reference model)."""
    args, kwargs = model._init_args_kwargs
    dtype = torch.half if half else None
    state = {k: v.detach().to("cpu", dtype=dtype) for k, v in model.state_dict().items()}
    return {"klass": model.__class__, "args": args, "kwargs": kwargs, "state": state,
            "training_args": {}}


def save_official(content: object, directory: Path, name: str) -> Path:
    """Save ``content`` like ``demucs.states.save_with_checksum``: ``directory/name-<sha8>.th``."""
    buf = io.BytesIO()
    torch.save(content, buf)
    sig = hashlib.sha256(buf.getvalue()).hexdigest()[:8]
    path = Path(directory) / f"{name}-{sig}.th"
    path.write_bytes(buf.getvalue())
    return path
