"""Block-wise decoding of any audio (or video) file, with pip-installable libraries only.

``soundfile`` (libsndfile bundled in its wheel) reads wav, flac, ogg/vorbis, opus, mp3, aiff...;
PyAV (ffmpeg bundled in its wheel) reads the rest: m4a/aac/alac, mp4/mkv/webm audio tracks, and
anything libsndfile refuses. Blocks are ``(channels, n)`` float32 arrays.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .io import AudioError, check_input_file, short_reason

logger = logging.getLogger(__name__)

BLOCK_FRAMES = 1 << 16
# ffmpeg decodes mp3 gaplessly (encoder delay removed) and quietly; libsndfile's mpg123 prints
# warnings straight to stderr on damaged files.
PREFER_PYAV = frozenset({".mp3"})


@dataclass(frozen=True)
class StreamInfo:
    """What a decoder knows before decoding: rate, channels, and frames when the container says."""

    samplerate: int
    channels: int
    frames: Optional[int]

    @property
    def seconds(self) -> Optional[float]:
        return None if self.frames is None else self.frames / self.samplerate


class Decoder:
    """Iterate over a file's audio as ``(channels, n)`` float32 blocks."""

    info: StreamInfo
    path: Path

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        raise NotImplementedError


class SoundfileDecoder(Decoder):
    def __init__(self, path: Path):
        import soundfile

        self.path = path
        with soundfile.SoundFile(str(path)) as handle:
            frames = handle.frames if handle.seekable() and handle.frames > 0 else None
            self.info = StreamInfo(int(handle.samplerate), int(handle.channels), frames)

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        import soundfile

        try:
            with soundfile.SoundFile(str(self.path)) as handle:
                while True:
                    block = handle.read(block_frames, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        return
                    yield np.ascontiguousarray(block.T)
        except soundfile.LibsndfileError as error:
            raise AudioError(f"{self.path}: decoding failed ({short_reason(error)}); "
                             "the file may be truncated or corrupt") from error


class PyAVDecoder(Decoder):
    """Decodes the first audio stream of any container ffmpeg knows."""

    def __init__(self, path: Path):
        import av

        self.path = path
        try:
            with av.open(str(path)) as container:
                stream = _audio_stream(container, path)
                frames = None
                if stream.duration is not None and stream.time_base is not None:
                    frames = int(round(float(stream.duration * stream.time_base) * stream.codec_context.sample_rate))
                self.info = StreamInfo(int(stream.codec_context.sample_rate), int(stream.codec_context.channels),
                                       frames)
        except AudioError:
            raise
        except Exception as error:
            raise AudioError(f"{path}: not a readable audio file ({short_reason(error)})") from error

    def blocks(self, block_frames: int = BLOCK_FRAMES) -> Iterator[np.ndarray]:
        import av

        try:
            with av.open(str(self.path)) as container:
                stream = _audio_stream(container, self.path)
                resampler = av.AudioResampler(format="fltp", layout=stream.codec_context.layout,
                                              rate=stream.codec_context.sample_rate)
                pending: list[np.ndarray] = []
                count = 0
                for frame in container.decode(stream):
                    for converted in resampler.resample(frame):
                        pending.append(converted.to_ndarray().reshape(self.info.channels, -1))
                        count += pending[-1].shape[1]
                    if count >= block_frames:
                        yield np.concatenate(pending, axis=1).astype(np.float32, copy=False)
                        pending, count = [], 0
                for converted in resampler.resample(None):
                    pending.append(converted.to_ndarray().reshape(self.info.channels, -1))
                if pending:
                    yield np.concatenate(pending, axis=1).astype(np.float32, copy=False)
        except AudioError:
            raise
        except Exception as error:
            raise AudioError(f"{self.path}: decoding failed ({short_reason(error)}); "
                             "the file may be truncated or corrupt") from error


def _audio_stream(container, path: Path):
    streams = [stream for stream in container.streams if stream.type == "audio"]
    if not streams:
        raise AudioError(f"{path}: contains no audio stream")
    return streams[0]


def open_decoder(path: str | Path) -> Decoder:
    """A decoder for ``path``: soundfile when libsndfile can read it, else PyAV.

    Raises :class:`AudioError` with a message a person can act on.
    """
    path = check_input_file(path)
    if path.suffix.lower() not in PREFER_PYAV:
        try:
            return SoundfileDecoder(path)
        except Exception as first:  # libsndfile does not know this format: let ffmpeg try
            logger.debug("soundfile cannot open %s (%s); trying PyAV", path, first)
    try:
        import av  # noqa: F401
    except ImportError:
        raise AudioError(f"{path}: format not supported without PyAV (pip install av)") from None
    return PyAVDecoder(path)


def decode_all(path: str | Path) -> tuple[np.ndarray, int]:
    """The whole file as ``(channels, samples)`` float32, and its sample rate."""
    decoder = open_decoder(path)
    blocks = list(decoder.blocks())
    if not blocks or sum(block.shape[1] for block in blocks) == 0:
        raise AudioError(f"{path}: the file contains no audio samples")
    return np.concatenate(blocks, axis=1), decoder.info.samplerate
