"""Separating a file in bounded memory: decode -> spool -> separate -> spool stems -> encode.

1. The input is decoded block by block, converted to the model's channels and rate, written to a
   disk spool, and the whole-track mono mean/std are accumulated (the cheap first pass).
2. The engine reads model inputs from the spool and yields finished stem blocks.
3. Stem blocks (optionally re-mixed, e.g. two stems) are resampled back to the output rate and
   spooled with their peak, since ``--clip-mode rescale`` needs the whole stem's peak.
4. Each stem is encoded from its spool to a temp file and renamed into place.

Memory is a few segments plus block buffers, whatever the track length.
"""
from __future__ import annotations

import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from ..audio.decode import Decoder, open_decoder
from ..audio.encode import OutputFormat, open_encoder
from ..audio.io import AudioError
from ..audio.ops import Normalisation, channels_of
from ..audio.resample import StreamResampler
from ..audio.spool import SampleSpool
from .chunking import SignalSource

logger = logging.getLogger(__name__)


class SpoolSource(SignalSource):
    """A :class:`SampleSpool` seen as a signal source for the engine."""

    def __init__(self, spool: SampleSpool):
        self.spool = spool
        self.channels = spool.channels
        self.length = spool.length

    def _read_inside(self, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(self.spool.read(start, stop).copy())


class RunningMonoStats:
    """Mean and unbiased std of the mono mix, accumulated block by block in float64."""

    def __init__(self):
        self.count = 0
        self.total = 0.0
        self.total_squares = 0.0

    def update(self, block: np.ndarray) -> None:
        mono = block.mean(axis=0, dtype=np.float64)
        self.count += mono.shape[0]
        self.total += float(mono.sum())
        # not np.dot: that is a BLAS call, which wakes OpenBLAS's worker thread, and it then
        # spins for ~0.1 s on the core the first model forward needs (measured +0.13 s on it)
        self.total_squares += float(np.einsum("i,i->", mono, mono))

    def result(self) -> Normalisation:
        if self.count == 0:
            return Normalisation(0.0, 1e-8)
        mean = self.total / self.count
        if self.count < 2:
            return Normalisation(mean, 1e-8)
        variance = max(self.total_squares - self.count * mean * mean, 0.0) / (self.count - 1)
        return Normalisation(mean, math.sqrt(variance) + 1e-8)


def spool_input(decoder: Decoder, samplerate: int, channels: int, spool: SampleSpool) -> tuple[Normalisation, int]:
    """Decode, convert and resample into ``spool``.

    Returns the whole-track statistics and the number of frames decoded (at the file's rate).
    """
    if decoder.info.channels > 2 and channels == 2:
        logger.warning("%s has %d channels: downmixing to stereo", decoder.path.name, decoder.info.channels)
    resampler = StreamResampler(decoder.info.samplerate, samplerate, channels)
    stats = RunningMonoStats()
    decoded = 0
    for block in decoder.blocks():
        decoded += block.shape[1]
        converted = resampler.process(channels_of(block, channels))
        spool.append(converted)
        stats.update(converted)
    tail = resampler.flush(channels)
    spool.append(tail)
    stats.update(tail)
    if spool.length == 0:
        raise AudioError(f"{decoder.path}: the file contains no audio samples")
    announced = decoder.info.frames
    if announced and decoded < 0.98 * announced - decoder.info.samplerate * 0.1:
        rate = decoder.info.samplerate
        logger.warning("%s: decoded %.1f s of the %.1f s the file announces; it may be truncated",
                       decoder.path.name, decoded / rate, announced / rate)
    return stats.result(), decoded


StemMixer = Callable[[np.ndarray, np.ndarray], dict[str, np.ndarray]]
"""``(stems (S, C, n), mix (C, n)) -> {name: (C, n)}``: which files to write from each block."""


def all_stems(sources: Sequence[str]) -> StemMixer:
    return lambda stems, mix: dict(zip(sources, stems))


def two_stems(sources: Sequence[str], stem: str, other_method: str = "add") -> StemMixer:
    """``stem`` and ``no_{stem}``: the sum of the others (``add``), the mix minus ``stem``
    (``minus``), or nothing (``none``)."""
    index = list(sources).index(stem)

    def mixer(stems: np.ndarray, mix: np.ndarray) -> dict[str, np.ndarray]:
        out = {stem: stems[index]}
        if other_method == "add":
            out[f"no_{stem}"] = np.delete(stems, index, axis=0).sum(axis=0)
        elif other_method == "minus":
            out[f"no_{stem}"] = mix - stems[index]
        return out

    return mixer


@dataclass
class StemOutputs:
    """Spools for each output stem at the output rate, with one resampler per stem."""

    names: list[str]
    spools: dict[str, SampleSpool]
    resamplers: dict[str, StreamResampler]

    def add(self, blocks: dict[str, np.ndarray]) -> None:
        for name, block in blocks.items():
            self.spools[name].append(self.resamplers[name].process(block))

    def finish(self, channels: int) -> None:
        for name in self.names:
            self.spools[name].append(self.resamplers[name].flush(channels))


def clip_gain(peak: float, clip_mode: str) -> float:
    """The gain ``--clip-mode rescale`` applies to a stem of this peak (1 otherwise)."""
    if clip_mode == "rescale":
        return 1.0 / max(1.01 * peak, 1.0)
    return 1.0


def encode_stem(spool: SampleSpool, length: int, path: Path, samplerate: int, fmt: OutputFormat,
                clip_mode: str) -> Path:
    """Encode the first ``length`` samples of ``spool`` (zero-padded if shorter) to ``path``."""
    gain = clip_gain(spool.peak, clip_mode)
    with open_encoder(path, samplerate, spool.channels, fmt) as encoder:
        for start in range(0, length, 1 << 16):
            stop = min(start + (1 << 16), length)
            block = spool.read(min(start, spool.length), min(stop, spool.length))
            if block.shape[1] < stop - start:
                block = np.pad(block, ((0, 0), (0, stop - start - block.shape[1])))
            if gain != 1.0:
                block = block * gain
            if clip_mode == "clamp":
                block = np.clip(block, -0.99, 0.99)
            encoder.write(block)
    return path


@dataclass
class PreparedInput:
    """A decoded input at the model's rate and channels, spooled, with its statistics."""

    path: Path
    spool: SampleSpool
    stats: Normalisation
    input_samplerate: int
    input_frames: int

    def close(self) -> None:
        self.spool.close()


def prepare_input(path: Path, samplerate: int, channels: int, spool_dir: Optional[str] = None) -> PreparedInput:
    """The cheap first pass over ``path``: decode, convert, spool, measure (see :func:`spool_input`)."""
    decoder = open_decoder(path)
    spool = SampleSpool(channels, spool_dir)
    try:
        stats, decoded = spool_input(decoder, samplerate, channels, spool)
    except BaseException:
        spool.close()
        raise
    return PreparedInput(Path(path), spool, stats, decoder.info.samplerate, decoded)


def separate_file(separator, path: Path | PreparedInput, stem_paths: Callable[[str], Path], fmt: OutputFormat,
                  clip_mode: str = "rescale", mixer: Optional[StemMixer] = None,
                  output_samplerate: Optional[int] = None, spool_dir: Optional[str] = None) -> list[Path]:
    """Separate ``path`` with ``separator`` in bounded memory; write each stem to ``stem_paths(name)``.

    ``path`` may already be prepared (:func:`prepare_input`, e.g. in a background thread while the
    previous file is separated); it is closed here. Stems are written at ``output_samplerate``
    (default: the input's rate). Returns the paths. Nothing is written unless the whole
    separation succeeded.
    """
    if isinstance(path, PreparedInput):
        prepared = path
    else:
        prepared = prepare_input(path, separator.samplerate, separator.audio_channels, spool_dir)
    rate = output_samplerate or prepared.input_samplerate
    mixer = mixer or all_stems(separator.sources)
    channels = separator.audio_channels
    with ExitStack() as stack:
        stack.callback(prepared.close)
        source = prepared.spool
        outputs: Optional[StemOutputs] = None
        done = 0
        for block in separator.iter_separate(SpoolSource(source), prepared.stats):
            mix = source.read(done, done + block.shape[-1])
            done += block.shape[-1]
            files = mixer(block.numpy(), mix)
            if outputs is None:
                outputs = StemOutputs(list(files), {}, {})
                for name in files:
                    outputs.spools[name] = stack.enter_context(SampleSpool(channels, spool_dir))
                    outputs.resamplers[name] = StreamResampler(separator.samplerate, rate, channels)
            outputs.add(files)
        assert outputs is not None
        outputs.finish(channels)
        length = round(prepared.input_frames * rate / prepared.input_samplerate)

        def encode(name: str) -> Path:
            return encode_stem(outputs.spools[name], length, stem_paths(name), rate, fmt, clip_mode)

        # the encoders (libsndfile, FFmpeg) and numpy release the GIL: stems encode side by side
        with ThreadPoolExecutor(min(len(outputs.names), os.cpu_count() or 1),
                                thread_name_prefix="stemforge-encode") as pool:
            return list(pool.map(encode, outputs.names))
