"""One entry point from what a user types (``-n NAME``, ``--repo DIR``, a file path) to a model."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Union

if TYPE_CHECKING:
    from torch import nn

    from .cards import ModelCard

MODEL_SUFFIXES = (".th", ".safetensors", ".yaml", ".yml")


class ModelResolutionError(Exception):
    """The model name or path cannot be resolved; the message says what to do."""


def load_model(name_or_path: Union[str, Path], repo: Optional[Union[str, Path]] = None, *,
               progress: bool = True, cards: Optional[Mapping[str, ModelCard]] = None) -> nn.Module:
    """A model (or bag) from ``repo/NAME…``, a checkpoint/bag file path, or the model table.

    A name of the model table (:mod:`stemforge.pretrained.cards`, or ``cards`` when given) is
    downloaded on first use into the cache (see :mod:`stemforge.pretrained.hub`; ``progress``
    shows a bar on stderr) and loaded from there.
    """
    from .builtin import builtin_path
    from .repo import load_from_repo, load_model_path

    if repo is not None:
        repo = Path(repo)
        if not repo.is_dir():
            raise ModelResolutionError(f"--repo {repo}: no such folder")
        return load_from_repo(str(name_or_path), repo)
    path = Path(name_or_path)
    if path.suffix in MODEL_SUFFIXES and path.exists():
        return load_model_path(path)
    name = str(name_or_path)
    packaged = builtin_path(name)
    if packaged is not None:
        return load_model_path(packaged)
    if name in card_table(cards):
        return _load_named(name, cards, progress)
    if path.suffix in MODEL_SUFFIXES:
        raise ModelResolutionError(f"model file {path} does not exist")
    raise ModelResolutionError(
        f"unknown model {name!r}; known models: {', '.join(card_table(cards))} (or pass "
        "--repo DIR with its files, or the path of a .th/.safetensors/.yaml file)")


def read_ahead(name_or_path: Union[str, Path], repo: Optional[Union[str, Path]] = None, *,
               cards: Optional[Mapping[str, ModelCard]] = None) -> list[Path]:
    """Start reading, in the background, the official checkpoint files :func:`load_model` will
    load for these arguments (see :mod:`stemforge.pretrained.readahead`); torch-free, so it can
    run while torch is being imported. Files that need a download, the built-in model and
    anything that does not resolve are left to :func:`load_model`. Returns the files started."""
    from . import readahead
    from .hub import models_dir
    from .repo import files_in_repo, files_of_path

    path = Path(name_or_path)
    if repo is not None:
        files = files_in_repo(str(name_or_path), repo)
    elif path.suffix in MODEL_SUFFIXES:
        files = files_of_path(path)
    elif str(name_or_path) in card_table(cards):
        card = card_table(cards)[str(name_or_path)]
        files = [models_dir() / file.filename for file in card.files]
    else:
        files = []
    torch_files = [file for file in files if file.suffix == ".th" and file.is_file()]
    readahead.start(torch_files)
    return torch_files


def card_table(cards: Optional[Mapping[str, ModelCard]] = None) -> Mapping[str, ModelCard]:
    """The model table: ``cards`` if given, else the official one."""
    from .cards import CARDS

    return CARDS if cards is None else cards


def _load_named(name: str, cards: Optional[Mapping[str, ModelCard]], progress: bool) -> nn.Module:
    """Fetch model ``name`` of the table into the cache (if needed) and load it from there."""
    from .hub import HubError, fetch_model_files
    from .repo import load_from_repo

    card = card_table(cards)[name]
    if card.quantized:
        plain = repr(name[:-2]) if name.endswith("_q") else "a non-quantized model"
        raise ModelResolutionError(
            f"model {name!r} holds diffq-quantized weights, which stemforge cannot read; "
            f"use {plain} instead (unquantized weights, a larger download)")
    try:
        folder = fetch_model_files(name, cards=cards, progress=progress)
    except HubError as exc:
        raise ModelResolutionError(str(exc)) from exc
    return load_from_repo(name, folder)


def model_display_name(name_or_path: Union[str, Path]) -> str:
    """The folder name used under ``-o``: the model name, or a file's stem."""
    path = Path(name_or_path)
    if path.suffix in MODEL_SUFFIXES:
        return path.stem
    return str(name_or_path).replace("/", "_")
