"""Architecture name -> builder.

A checkpoint is data: ``{arch, config}`` plus tensors. ``build_model(arch, config)`` makes the module.
Official Demucs pickles record their class as e.g. ``demucs.htdemucs.HTDemucs``; ``OFFICIAL_CLASSES``
maps those names to ours. Builders are imported lazily so that importing the registry is cheap.
"""
from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

from torch import nn

logger = logging.getLogger(__name__)

# arch name -> "module:ClassName" (relative to stemforge.models)
ARCHITECTURES: dict[str, str] = {
    "HTDemucs": "htdemucs:HTDemucs",
    "HDemucs": "hdemucs:HDemucs",
    "Demucs": "demucs:Demucs",
    "DemucsV2": "demucs_v2:DemucsV2",
    "TFMaskUNet": "tfmask:TFMaskUNet",
}

# fully qualified class names found in official checkpoints -> our arch name
OFFICIAL_CLASSES: dict[str, str] = {
    "demucs.htdemucs.HTDemucs": "HTDemucs",
    "demucs.hdemucs.HDemucs": "HDemucs",
    "demucs.demucs.Demucs": "Demucs",
}


class UnknownArchitectureError(ValueError):
    """The checkpoint names an architecture stemforge does not implement."""


def model_class(arch: str) -> type[nn.Module]:
    """Return the class implementing ``arch`` (imports its module on first use)."""
    try:
        target = ARCHITECTURES[arch]
    except KeyError:
        known = ", ".join(sorted(ARCHITECTURES))
        raise UnknownArchitectureError(f"unknown architecture {arch!r} (known: {known})") from None
    module_name, class_name = target.split(":")
    module = importlib.import_module(f"stemforge.models.{module_name}")
    return getattr(module, class_name)


def build_model(arch: str, config: dict[str, Any], strict: bool = False) -> nn.Module:
    """Instantiate ``arch`` from keyword ``config``.

    With ``strict=False`` (the behaviour of Demucs' own loader), keys the constructor does not
    know are dropped with a warning instead of failing.
    """
    klass = model_class(arch)
    config = dict(config)
    if not strict:
        accepted = inspect.signature(klass.__init__).parameters
        for key in list(config):
            if key not in accepted:
                logger.warning("%s: dropping unknown parameter %r", arch, key)
                del config[key]
    model = klass(**config)
    model.arch_name = arch  # type: ignore[attr-defined]
    model.config = dict(config)  # type: ignore[attr-defined]
    return model
