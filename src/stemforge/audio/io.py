"""Decoding and encoding audio files. Writes are atomic: temp file in the same folder, then rename.

Decoding is in :mod:`.decode` (soundfile, PyAV fallback); this module holds the shared errors,
whole-file helpers and the atomic-write mechanism.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..atomic import atomic_path  # noqa: F401 - re-exported: the shared atomic-write helper

if TYPE_CHECKING:
    from .encode import OutputFormat


class AudioError(Exception):
    """A file could not be read or written as audio; the message says why and what to do."""


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file to ``(channels, samples)`` float32 and its sample rate (any format)."""
    from .decode import decode_all

    return decode_all(path)


def write_audio(path: str | os.PathLike, wav: np.ndarray, samplerate: int, fmt: "OutputFormat") -> Path:
    """Encode ``wav: (C, T)`` float to ``path`` atomically, in one go."""
    from .encode import open_encoder

    with open_encoder(Path(path), samplerate, wav.shape[0], fmt) as encoder:
        encoder.write(wav)
    return Path(path)


def check_input_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty")
    return path


def short_reason(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__


def save_stems(stems: dict[str, np.ndarray], folder: str | os.PathLike, samplerate: int, fmt: str = "wav",
               clip_mode: str = "rescale", **format_options) -> list[Path]:
    """Write ``{stem: (C, T) float32}`` as ``folder/{stem}.{fmt}`` (atomic writes).

    ``fmt``: wav, flac or mp3; ``format_options``: ``bits``, ``float32``, ``mp3_bitrate``,
    ``mp3_preset`` (see :class:`stemforge.audio.encode.OutputFormat`). ``clip_mode``: rescale,
    clamp or none, as in the command line.
    """
    import torch

    from .encode import OutputFormat
    from .ops import prevent_clip

    output = OutputFormat(kind=fmt, **format_options)
    folder = Path(folder)
    paths = []
    for name, audio in stems.items():
        audio = prevent_clip(torch.as_tensor(np.asarray(audio, dtype=np.float32)), clip_mode).numpy()
        paths.append(write_audio(folder / f"{name}.{output.extension}", audio, samplerate, output))
    return paths
