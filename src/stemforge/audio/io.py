"""Decoding and encoding audio files. Writes are atomic: temp file in the same folder, then rename.

Decoding uses ``soundfile`` (libsndfile bundled in its wheel: wav, flac, ogg, mp3, aiff...).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np


class AudioError(Exception):
    """A file could not be read or written as audio; the message says why and what to do."""


@dataclass(frozen=True)
class AudioInfo:
    samplerate: int
    channels: int
    frames: int


def audio_info(path: str | os.PathLike) -> AudioInfo:
    """Sample rate, channels and length of an audio file, without decoding it."""
    import soundfile

    path = _existing_file(path)
    try:
        info = soundfile.info(str(path))
    except Exception as error:  # soundfile raises several types for undecodable input
        raise AudioError(f"{path}: not a readable audio file ({_short(error)})") from error
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def read_audio(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """Decode a whole file to ``(channels, samples)`` float32 and its sample rate."""
    import soundfile

    path = _existing_file(path)
    try:
        data, samplerate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as error:
        raise AudioError(f"{path}: not a readable audio file ({_short(error)})") from error
    if data.shape[0] == 0:
        raise AudioError(f"{path}: the file contains no audio samples")
    return np.ascontiguousarray(data.T), int(samplerate)


@dataclass(frozen=True)
class OutputFormat:
    """How stems are encoded: ``kind`` in wav/flac; ``bits`` 16 or 24; ``float32`` for wav."""

    kind: str = "wav"
    bits: int = 16
    float32: bool = False

    @property
    def extension(self) -> str:
        return self.kind

    @property
    def subtype(self) -> str:
        if self.float32:
            return "FLOAT"
        return {16: "PCM_16", 24: "PCM_24"}[self.bits]


def quantise(wav: np.ndarray, fmt: OutputFormat) -> np.ndarray:
    """``wav: (C, T)`` float -> ``(T, C)`` samples ready for the encoder (clamped to [-1, 1]).

    Integer formats are scaled by ``2**(bits-1) - 1`` and rounded to the nearest integer.
    """
    frames = np.clip(wav.T, -1.0, 1.0)
    if fmt.float32:
        return frames.astype(np.float32)
    scale = 2 ** (fmt.bits - 1) - 1
    return np.rint(frames * scale).astype(np.int32) * (1 << (32 - fmt.bits))


def write_audio(path: str | os.PathLike, wav: np.ndarray, samplerate: int, fmt: OutputFormat) -> Path:
    """Encode ``wav: (C, T)`` float to ``path`` atomically."""
    import soundfile

    path = Path(path)
    samples = quantise(wav, fmt)
    with atomic_path(path) as tmp:
        soundfile.write(str(tmp), samples, samplerate, subtype=fmt.subtype, format=fmt.kind.upper())
    return path


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it into place, on error remove it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    if path.is_dir():
        raise AudioError(f"{path}: is a folder, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(f"{path}: the file is empty")
    return path


def _short(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[-1] if text else type(error).__name__
