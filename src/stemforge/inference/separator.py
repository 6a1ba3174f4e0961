"""The public separator: audio in (array, tensor or file), stems out.

Demucs semantics: the mix is normalised by its whole-track mono mean and std, separated by every
pass (shifts x bag members) through the overlap-add engine, the passes are merged with per-source
weights, and the result is de-normalised.
"""
from __future__ import annotations

import logging
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn

from ..allocator import release_free_memory
from ..audio.ops import Normalisation, channels_of
from ..pretrained.builtin import DEFAULT_MODEL
from .chunking import ArraySource, SignalSource
from .device import DeviceRunner
from .engine import ModelRunner, PassSettings, run_shifted_pass
from .ensemble import plan_passes, weighted_merge

logger = logging.getLogger(__name__)

DEFAULT_GPU_BATCH = 4

ProgressCallback = Callable[[float, float], None]
"""``progress(done_seconds, total_seconds)`` of audio processed, summed over all passes."""


class NormalisedSource(SignalSource):
    """``base`` with :class:`Normalisation` applied inside the signal; still zero outside."""

    def __init__(self, base: SignalSource, stats: Normalisation):
        self.base = base
        self.stats = stats
        self.channels = base.channels
        self.length = base.length

    def _read_inside(self, start: int, stop: int) -> torch.Tensor:
        return self.stats.apply(self.base.read(start, stop))


def separate_blocks(model: nn.Module, source: SignalSource, shifts: int, settings: PassSettings,
                    runner: ModelRunner, rng: random.Random,
                    on_segment: Optional[Callable[[int], None]] = None, jobs: int = 0) -> Iterator[torch.Tensor]:
    """Stems of an already normalised ``source``, as consecutive ``(S, C, n)`` blocks.

    ``jobs > 1`` computes that many segments at once on a thread pool (same output).
    """
    passes, totals = plan_passes(model, shifts, rng)
    pool = ThreadPoolExecutor(jobs, thread_name_prefix="stemforge-segment") if jobs > 1 else None
    try:
        streams = [run_shifted_pass(spec.model, source, spec.delay, settings, runner, on_segment,
                                    pool, lookahead=jobs - 1)
                   for spec in passes]
        yield from weighted_merge(streams, [spec.weights for spec in passes], totals)
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class Separator:
    """Separate music into stems with a loaded model or bag.

    ``model``: a model name (resolved in ``repo`` or the model table), a checkpoint / bag path, or an
    ``nn.Module``. ``shifts``: random shifts averaged (0 = deterministic). ``seed``: makes shifts
    repeatable. ``segment``: seconds per segment (default: the model's). ``split=False``: whole track
    at once. ``progress``: callback for separation progress; ``download_progress``: show a bar
    on stderr when a model is downloaded. ``jobs``: segments computed in parallel (threads; on CPU
    give each fewer torch threads, e.g. ``torch.set_num_threads(cores // jobs)``; ``None``: see
    :func:`auto_jobs`). ``batch_size``:
    segments per forward (default: 1 on CPU, ``DEFAULT_GPU_BATCH`` on CUDA; halved automatically
    on out-of-memory). ``fast``: ``exact`` (default), or an approximate faster mode
    (``bf16-transformer``, ``bf16``, ``int8``; see :mod:`stemforge.models.fast`).
    """

    def __init__(self, model: Union[str, Path, nn.Module] = DEFAULT_MODEL, repo: Optional[Union[str, Path]] = None,
                 device: Optional[str] = None, shifts: int = 1, overlap: float = 0.25, split: bool = True,
                 segment: Optional[float] = None, seed: Optional[int] = None,
                 progress: Optional[ProgressCallback] = None, download_progress: bool = True,
                 jobs: Optional[int] = 0, batch_size: Optional[int] = None, fast: str = "exact"):
        from ..pretrained.resolve import load_model

        if shifts < 0:
            raise ValueError("shifts must be >= 0")
        if not 0 <= overlap < 1:
            raise ValueError("overlap must be in [0, 1)")
        if segment is not None and segment <= 0:
            raise ValueError("segment must be positive")
        self.model = model if isinstance(model, nn.Module) else load_model(model, repo, progress=download_progress)
        release_free_memory()  # the checkpoint's decoded bytes
        max_segment = getattr(self.model, "max_segment", None)
        if segment is not None and max_segment is not None and segment > max_segment:
            raise ValueError(f"this model cannot use segments longer than it was trained on "
                             f"({float(max_segment):.2f} s); got --segment {segment}")
        self.device = torch.device(device or default_device())
        self.model.to(self.device).eval()
        self.model = with_fast_mode(self.model, fast)
        self.runner = DeviceRunner(self.device)
        self.shifts = shifts
        if batch_size is None:
            batch_size = DEFAULT_GPU_BATCH if self.device.type == "cuda" else 1
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.settings = PassSettings(split=split, overlap=overlap, segment=segment, batch_size=batch_size)
        self.rng = random.Random(seed)
        self.progress = progress
        if jobs is None:
            jobs = auto_jobs(self.model, self.device.type)
        if jobs < 0:
            raise ValueError("jobs must be >= 0")
        self.jobs = jobs

    @property
    def sources(self) -> list[str]:
        return list(self.model.sources)

    @property
    def samplerate(self) -> int:
        return int(self.model.samplerate)

    @property
    def audio_channels(self) -> int:
        return int(self.model.audio_channels)

    def separate_tensor(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav: (C, T)`` float at the model rate with the model's channels -> ``(S, C, T)``."""
        stats = Normalisation.of(wav)
        blocks = list(self.iter_separate(ArraySource(wav), stats))
        return torch.cat(blocks, dim=-1)

    def iter_separate(self, source: SignalSource, stats: Normalisation) -> Iterator[torch.Tensor]:
        """Stems of ``source`` (model rate and channels) as finished ``(S, C, n)`` blocks."""
        normalised = NormalisedSource(source, stats)
        on_segment = self._progress_counter(source.length)
        for block in separate_blocks(self.model, normalised, self.shifts, self.settings, self.runner,
                                     self.rng, on_segment, self.jobs):
            yield stats.invert_(block)  # blocks are fresh tensors, not views of the engine's buffers

    def separate(self, audio: Union[np.ndarray, torch.Tensor], samplerate: Optional[int] = None
                 ) -> dict[str, np.ndarray]:
        """Separate ``audio: (C, T)`` or ``(T,)`` at ``samplerate`` (default: the model's).

        Returns ``{stem: (C, T) float32}`` at the input's sample rate.
        """
        from ..audio.resample import resample

        wav = torch.as_tensor(audio, dtype=torch.float32).cpu().numpy()
        if wav.ndim == 1:
            wav = wav[None]
        if wav.ndim != 2 or wav.shape[1] == 0:
            raise ValueError(f"expected audio of shape (channels, samples) or (samples,), got {wav.shape}")
        rate = samplerate or self.samplerate
        wav = channels_of(wav, self.audio_channels)
        model_wav = torch.from_numpy(resample(wav, rate, self.samplerate))
        stems = self.separate_tensor(model_wav).numpy()
        return {name: resample(stem, self.samplerate, rate) for name, stem in zip(self.sources, stems)}

    def separate_file(self, path: Union[str, Path]) -> dict[str, np.ndarray]:
        """Decode ``path`` and separate it; stems at the file's sample rate."""
        from ..audio.io import read_audio

        wav, rate = read_audio(path)
        return self.separate(wav, rate)

    def _progress_counter(self, length: int) -> Optional[Callable[[int], None]]:
        if self.progress is None:
            return None
        passes = len(plan_passes(self.model, self.shifts, random.Random(0))[0])
        total = passes * length
        done = 0
        rate = float(self.samplerate)
        callback = self.progress

        def on_segment(samples: int) -> None:
            nonlocal done
            done += samples
            callback(min(done, total) / passes / rate, total / passes / rate)

        return on_segment


def with_fast_mode(model: nn.Module, fast: str) -> nn.Module:
    """``model`` (or each member of a bag) wrapped for the ``fast`` mode; ``exact`` changes nothing."""
    from ..models.fast import make_fast

    members = getattr(model, "models", None)
    if members is None:
        return make_fast(model, fast)
    for index, member in enumerate(members):
        members[index] = make_fast(member, fast)
    return model


MAX_AUTO_JOBS = 4
AUTO_JOBS_MAX_PARAMETERS = 10_000_000


def auto_jobs(model: nn.Module, device: str) -> int:
    """``jobs=None``: on CPU, one single-threaded segment per core (at most ``MAX_AUTO_JOBS``) for
    models up to ``AUTO_JOBS_MAX_PARAMETERS``, which beats one segment on all cores (less
    synchronisation). Bigger models take one segment at a time: each parallel segment of htdemucs
    adds ~400 MB of peak memory (1.17 GB at ``-j 0``, 1.56 GB at ``-j 2``). Accelerators: 0."""
    import os

    cores = os.cpu_count() or 1
    if device != "cpu" or cores < 2:
        return 0
    if sum(p.numel() for p in model.parameters()) > AUTO_JOBS_MAX_PARAMETERS:
        return 0
    return min(cores, MAX_AUTO_JOBS)


def default_device() -> str:
    """``cuda`` if available, else ``mps`` if available, else ``cpu`` (Demucs' choice)."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"
