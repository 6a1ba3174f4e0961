"""Convert an official Demucs ``.th`` file into a stemforge ``.safetensors`` file."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Mapping

from .checkpoint import load_official, save_stemforge

logger = logging.getLogger(__name__)


def convert(src_path: str | os.PathLike, dst_path: str | os.PathLike,
            meta: Mapping[str, Any] | None = None) -> Path:
    """Read ``src_path`` safely, rebuild the model, and save it to ``dst_path`` (atomic write).

    ``meta`` (model card) is merged over ``{"converted_from": <file name>, "arch": ...}``.
    Returns the written path.
    """
    src, dst = Path(src_path), Path(dst_path)
    model = load_official(src)
    card = {"converted_from": src.name, "arch": model.arch_name}
    card.update(meta or {})
    save_stemforge(model, dst, meta=card)
    logger.info("converted %s (%s) to %s", src, model.arch_name, dst)
    return dst
