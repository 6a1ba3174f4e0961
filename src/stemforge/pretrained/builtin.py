"""Models shipped inside the package (no download): stemforge's own, clearly licensed weights."""
from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    filename: str
    description: str
    licence: str = "MIT (weights and code); trained only on stemforge's synthetic songs"


BUILTIN_MODELS: dict[str, BuiltinModel] = {
    "stemforge-small": BuiltinModel(
        "stemforge-small", "stemforge-small.safetensors",
        "stemforge's TF-mask U-Net (2.1 M parameters, 8 MB) trained on CPU on synthetic songs; "
        "see its model card (stemforge models -l)"),
}

DEFAULT_MODEL = "stemforge-small"
"""The model used when none is named: shipped in the package, so it works with no network."""


def builtin_path(name: str) -> Optional[Path]:
    """The packaged file of built-in model ``name``, or None if there is no such model/file."""
    model = BUILTIN_MODELS.get(name)
    if model is None:
        return None
    path = Path(str(resources.files("stemforge.weights").joinpath(model.filename)))
    return path if path.is_file() else None
