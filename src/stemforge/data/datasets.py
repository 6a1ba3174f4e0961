"""Stem folders as training data (the MUSDB18-HQ layout).

A dataset root holds one folder per split, one folder per song, one audio file per stem::

    ROOT/train/<song>/{mixture,drums,bass,other,vocals}.{flac,wav}
    ROOT/valid/<song>/...

Any number and names of stems work: the caller says which (``sources``). Folders whose name starts
with ``.`` are ignored (writers use them for songs still being written), and so are folders missing
a stem.

:class:`StemSegments` draws random fixed-length segments. Example ``i`` of epoch ``e`` is a pure
function of ``(seed, e, i)`` and of the track list, so a run resumed in the middle of an epoch sees
exactly the examples it would have seen, whatever the order, the number of worker processes or
the number of ranks. With ``remix_prob`` each stem of an example may come from a different song
(at a different offset): new mixtures, as Demucs makes in its batches.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]
AUDIO_EXTENSIONS = (".flac", ".wav")
MIXTURE = "mixture"


class DatasetError(ValueError):
    """A dataset folder is missing, empty or inconsistent; the message says what to fix."""


@dataclass(frozen=True)
class Track:
    """One song: its folder, stem files and shape (``length`` frames at ``samplerate``)."""

    name: str
    folder: Path
    files: dict[str, Path]
    length: int
    samplerate: int
    channels: int

    @property
    def seconds(self) -> float:
        return self.length / self.samplerate


def _stem_file(folder: Path, stem: str) -> Optional[Path]:
    for ext in AUDIO_EXTENSIONS:
        path = folder / f"{stem}{ext}"
        if path.is_file():
            return path
    return None


def read_track(folder: Path, sources: Sequence[str]) -> Optional[Track]:
    """The :class:`Track` in ``folder``, or ``None`` if a stem is missing or unreadable."""
    files: dict[str, Path] = {}
    for stem in list(sources) + [MIXTURE]:
        path = _stem_file(folder, stem)
        if path is not None:
            files[stem] = path
        elif stem != MIXTURE:
            return None
    try:
        infos = [sf.info(str(path)) for path in files.values()]
    except (RuntimeError, sf.LibsndfileError) as exc:  # type: ignore[attr-defined]
        logger.warning("skipping %s: %s", folder, exc)
        return None
    rates = {info.samplerate for info in infos}
    if len(rates) != 1:
        logger.warning("skipping %s: stems have different sample rates %s", folder, sorted(rates))
        return None
    length = min(info.frames for info in infos)
    channels = max(info.channels for info in infos)
    return Track(folder.name, folder, files, length, rates.pop(), channels)


def find_tracks(root: PathLike, split: str, sources: Sequence[str],
                exclude: Sequence[str] = ()) -> list[Track]:
    """Complete songs of ``root/split`` sorted by name (hidden folders and ``exclude`` skipped)."""
    folder = Path(root) / split
    if not folder.is_dir():
        return []
    skip = set(exclude)
    tracks = []
    for song in sorted(folder.iterdir()):
        if not song.is_dir() or song.name.startswith(".") or song.name in skip:
            continue
        track = read_track(song, sources)
        if track is not None and track.length > 0:
            tracks.append(track)
    return tracks


def load_segment(path: Path, start: int, frames: int, channels: int) -> np.ndarray:
    """``frames`` frames of ``path`` from ``start`` as ``(channels, frames)`` float32, zero padded
    past the end; mono is duplicated, extra channels dropped."""
    start = max(0, start)
    with sf.SoundFile(str(path)) as handle:
        if start < handle.frames:
            handle.seek(start)
            data = handle.read(frames, dtype="float32", always_2d=True)
        else:
            data = np.zeros((0, handle.channels), dtype=np.float32)
    out = np.zeros((channels, frames), dtype=np.float32)
    data = data.T
    if data.shape[0] == 1 and channels > 1:
        data = np.repeat(data, channels, axis=0)
    out[:, :data.shape[1]] = data[:channels]
    return out


def load_mixture(track: Track, sources: Sequence[str], channels: int) -> torch.Tensor:
    """Whole mixture ``(C, T)``: the mixture file, or the stem sum when the folder has none."""
    if MIXTURE in track.files:
        return torch.from_numpy(load_segment(track.files[MIXTURE], 0, track.length, channels))
    return load_stems(track, sources, channels).sum(dim=0)


def load_stems(track: Track, sources: Sequence[str], channels: int) -> torch.Tensor:
    """Whole song stems ``(S, C, T)``."""
    return torch.from_numpy(np.stack([load_segment(track.files[s], 0, track.length, channels)
                                      for s in sources]))


def track_scale(track: Track, sources: Sequence[str], channels: int) -> float:
    """Standard deviation of the track's mono mixture (what the inference engine divides by)."""
    mix = load_mixture(track, sources, channels)
    return float(mix.mean(0).std()) + 1e-8


class StemSegments(Dataset):
    """Random segments of stems: ``dataset[i] -> (S, C, length)`` float32.

    ``length`` frames per example at the tracks' sample rate (all tracks must share it).
    ``examples`` per epoch; call :meth:`set_epoch` to draw a new set. With ``normalize`` each stem
    is divided by its track's mixture std (as the inference engine normalises whole tracks).
    ``remix_prob``: probability that an example takes each stem from an independent random song.
    """

    def __init__(self, tracks: Sequence[Track], sources: Sequence[str], length: int, channels: int = 2,
                 examples: int = 1000, seed: int = 0, normalize: bool = True, remix_prob: float = 0.0):
        if not tracks:
            raise DatasetError("no complete songs to train on")
        rates = {t.samplerate for t in tracks}
        if len(rates) != 1:
            raise DatasetError(f"songs have different sample rates {sorted(rates)}; resample them first")
        self.tracks = list(tracks)
        self.sources = list(sources)
        self.length = int(length)
        self.channels = channels
        self.examples = int(examples)
        self.seed = seed
        self.normalize = normalize
        self.remix_prob = remix_prob
        self.epoch = 0
        self._scales: dict[str, float] = {}

    @property
    def samplerate(self) -> int:
        return self.tracks[0].samplerate

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.examples

    def __getitem__(self, index: int) -> torch.Tensor:
        """``(S, C, length)`` stems of example ``index`` of the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        base = int(rng.integers(len(self.tracks)))
        remix = self.remix_prob > 0 and rng.random() < self.remix_prob
        stems = []
        for source in self.sources:
            track = self.tracks[int(rng.integers(len(self.tracks)))] if remix else self.tracks[base]
            stems.append(self._read(track, source, rng))
        return torch.from_numpy(np.stack(stems))

    def _read(self, track: Track, source: str, rng: np.random.Generator) -> np.ndarray:
        start = int(rng.integers(max(1, track.length - self.length + 1)))
        audio = load_segment(track.files[source], start, self.length, self.channels)
        if self.normalize:
            audio /= self._scale(track)
        return audio

    def _scale(self, track: Track) -> float:
        key = str(track.folder)
        if key not in self._scales:
            self._scales[key] = track_scale(track, self.sources, self.channels)
        return self._scales[key]
