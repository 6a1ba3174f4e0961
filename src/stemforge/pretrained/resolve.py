"""One entry point from what a user types (``-n NAME``, ``--repo DIR``, a file path) to a model."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from torch import nn

MODEL_SUFFIXES = (".th", ".safetensors", ".yaml", ".yml")


class ModelResolutionError(Exception):
    """The model name or path cannot be resolved; the message says what to do."""


def load_model(name_or_path: Union[str, Path], repo: Optional[Union[str, Path]] = None) -> nn.Module:
    """A model (or bag) from ``repo/NAME…``, a checkpoint/bag file path, or the model table."""
    from .repo import load_from_repo, load_model_path

    if repo is not None:
        repo = Path(repo)
        if not repo.is_dir():
            raise ModelResolutionError(f"--repo {repo}: no such folder")
        return load_from_repo(str(name_or_path), repo)
    path = Path(name_or_path)
    if path.suffix in MODEL_SUFFIXES and path.exists():
        return load_model_path(path)
    raise ModelResolutionError(
        f"model {str(name_or_path)!r} is not available offline: pass --repo DIR with its checkpoint "
        f"files, or the path of a .th/.safetensors/.yaml file")


def model_display_name(name_or_path: Union[str, Path]) -> str:
    """The folder name used under ``-o``: the model name, or a file's stem."""
    path = Path(name_or_path)
    if path.suffix in MODEL_SUFFIXES:
        return path.stem
    return str(name_or_path).replace("/", "_")
