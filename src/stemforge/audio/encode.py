"""Block-wise encoding of stems: wav / flac (soundfile), mp3 (PyAV's bundled LAME).

An :class:`Encoder` writes to a temporary file beside the destination and only renames it into
place on :meth:`Encoder.commit`; :meth:`Encoder.abort` (or an exception inside ``with``) removes it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import temp_file_beside
from .io import AudioError

FORMATS = ("wav", "flac", "mp3")
MP3_PRESETS = range(2, 8)


@dataclass(frozen=True)
class OutputFormat:
    """How stems are encoded.

    ``kind``: wav, flac or mp3; ``bits``: 16 or 24 (wav/flac); ``float32``: 32-bit float wav;
    ``mp3_bitrate`` in kbps and ``mp3_preset`` (2 = best quality ... 7 = fastest), as in Demucs.
    """

    kind: str = "wav"
    bits: int = 16
    float32: bool = False
    mp3_bitrate: int = 320
    mp3_preset: int = 2

    def __post_init__(self):
        if self.kind not in FORMATS:
            raise ValueError(f"unknown output format {self.kind!r} (choose from {', '.join(FORMATS)})")
        if self.bits not in (16, 24):
            raise ValueError("bits must be 16 or 24")
        if self.float32 and self.kind != "wav":
            raise ValueError("32-bit float output is only available for wav")
        if self.mp3_preset not in MP3_PRESETS:
            raise ValueError("--mp3-preset must be between 2 (best) and 7 (fastest)")
        if not 8 <= self.mp3_bitrate <= 320:
            raise ValueError("--mp3-bitrate must be between 8 and 320 kbps")

    @property
    def extension(self) -> str:
        return self.kind

    @property
    def subtype(self) -> str:
        if self.float32:
            return "FLOAT"
        return {16: "PCM_16", 24: "PCM_24"}[self.bits]


def quantise(wav: np.ndarray, fmt: OutputFormat) -> np.ndarray:
    """``wav: (C, T)`` float -> ``(T, C)`` samples ready for libsndfile (clamped to [-1, 1]).

    Integer formats are scaled by ``2**(bits-1) - 1`` (as Demucs does), rounded to the nearest
    integer and left-aligned in int32 (libsndfile keeps the top ``bits``).
    """
    frames = np.clip(wav.T, -1.0, 1.0)  # a new array: the steps below work in place
    if fmt.float32:
        return np.ascontiguousarray(frames, dtype=np.float32)
    frames *= 2 ** (fmt.bits - 1) - 1
    samples = np.rint(frames, out=frames).astype(np.int32)
    samples *= 1 << (32 - fmt.bits)
    return samples


class Encoder:
    """Streams ``(C, n)`` float blocks into ``path`` atomically."""

    def __init__(self, path: Path, samplerate: int, channels: int, fmt: OutputFormat):
        self.path = Path(path)
        self.samplerate = samplerate
        self.channels = channels
        self.fmt = fmt
        self.tmp = temp_file_beside(self.path)
        try:
            self._open()
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise

    def _open(self) -> None:
        raise NotImplementedError

    def write(self, block: np.ndarray) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def commit(self) -> Path:
        self._close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self._close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def __enter__(self) -> "Encoder":
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if kind is None:
            self.commit()
        else:
            self.abort()


class SoundfileEncoder(Encoder):
    def _open(self) -> None:
        import soundfile

        self._file = soundfile.SoundFile(str(self.tmp), "w", samplerate=self.samplerate,
                                         channels=self.channels, subtype=self.fmt.subtype,
                                         format=self.fmt.kind.upper())

    def write(self, block: np.ndarray) -> None:
        self._file.write(quantise(block, self.fmt))

    def _close(self) -> None:
        if not self._file.closed:
            self._file.close()


class Mp3Encoder(Encoder):
    """MP3 through PyAV's libmp3lame: constant bitrate, LAME quality = ``mp3_preset``."""

    def _open(self) -> None:
        import av

        self._container = av.open(str(self.tmp), "w", format="mp3")
        self._stream = self._container.add_stream("libmp3lame", rate=self.samplerate,
                                                  layout="mono" if self.channels == 1 else "stereo")
        self._stream.bit_rate = self.fmt.mp3_bitrate * 1000
        self._stream.codec_context.options = {"compression_level": str(self.fmt.mp3_preset)}
        self._pts = 0
        self._closed = False

    def write(self, block: np.ndarray) -> None:
        import av

        planar = np.ascontiguousarray(np.clip(block, -1.0, 1.0), dtype=np.float32)
        frame = av.AudioFrame.from_ndarray(planar, format="fltp",
                                           layout="mono" if self.channels == 1 else "stereo")
        frame.sample_rate = self.samplerate
        frame.pts = self._pts
        self._pts += planar.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for packet in self._stream.encode(None):
            self._container.mux(packet)
        self._container.close()


def open_encoder(path: Path, samplerate: int, channels: int, fmt: OutputFormat) -> Encoder:
    """An atomic block encoder for ``fmt``."""
    if fmt.kind == "mp3":
        if channels > 2:
            raise AudioError("mp3 output supports at most 2 channels")
        return Mp3Encoder(path, samplerate, channels, fmt)
    return SoundfileEncoder(path, samplerate, channels, fmt)
