"""Writes synthetic songs in the MUSDB18-HQ layout, deterministically, resumably and atomically.

``OUT/train/song_00000/{mixture,drums,bass,other,vocals}.flac`` and the same under ``OUT/valid``.
Song ``i`` of a split depends only on (seed, split, i), so an interrupted run resumed later, or a
run with several processes, writes exactly the same files. A song folder is written under a
temporary name and renamed when complete; finished folders are skipped.
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrangement import STEMS

logger = logging.getLogger(__name__)

SPLITS = {"train": 0, "valid": 1}
FILES = ("mixture",) + STEMS
TEMP_PREFIX = ".tmp-"


@dataclass(frozen=True)
class DatasetSpec:
    out_dir: Path
    train_songs: int
    valid_songs: int
    seconds: float = 10.0
    seed: int = 0
    voice: str = "auto"  # singing voice backend: auto, kokoro or espeak


@dataclass(frozen=True)
class SongJob:
    split: str
    index: int

    @property
    def name(self) -> str:
        return f"song_{self.index:05d}"


def song_seed(seed: int, job: SongJob) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, SPLITS[job.split], job.index])


def song_dir(spec: DatasetSpec, job: SongJob) -> Path:
    return spec.out_dir / job.split / job.name


def is_complete(folder: Path) -> bool:
    return folder.is_dir() and all((folder / f"{name}.flac").is_file() for name in FILES)


def pending_jobs(spec: DatasetSpec) -> list[SongJob]:
    jobs = [SongJob("train", i) for i in range(spec.train_songs)]
    jobs += [SongJob("valid", i) for i in range(spec.valid_songs)]
    return [job for job in jobs if not is_complete(song_dir(spec, job))]


def remove_stale_temporaries(spec: DatasetSpec) -> None:
    """Delete half-written song folders left by an interrupted run (call before starting workers)."""
    for split in SPLITS:
        folder = spec.out_dir / split
        if folder.is_dir():
            for stale in folder.glob(TEMP_PREFIX + "*"):
                shutil.rmtree(stale, ignore_errors=True)


def quantise(audio: np.ndarray) -> np.ndarray:
    """Round ``(C, T)`` float audio to the 16-bit grid (values stay float)."""
    return np.round(np.clip(audio, -1.0, 32767 / 32768) * 32768.0) / 32768.0


def write_song(spec: DatasetSpec, job: SongJob, tools) -> Path:
    """Render and write one song folder atomically; returns its final path."""
    import soundfile

    from .song import render_song

    final = song_dir(spec, job)
    stems = render_song(song_seed(spec.seed, job), spec.seconds, tools)
    stems = {name: quantise(audio) for name, audio in stems.items()}
    mixture = quantise(sum(stems[name] for name in STEMS))
    temporary = final.parent / f"{TEMP_PREFIX}{job.name}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    for name, audio in [("mixture", mixture)] + [(n, stems[n]) for n in STEMS]:
        soundfile.write(str(temporary / f"{name}.flac"), audio.T, tools.samplerate, subtype="PCM_16")
    try:
        os.rename(temporary, final)
    except OSError:  # another process finished the same song first
        shutil.rmtree(temporary, ignore_errors=True)
        if not is_complete(final):
            raise
    return final


_worker_tools = None


def _worker_init(voice: str, cache_dir: str) -> None:
    global _worker_tools
    from .song import SynthTools

    _worker_tools = SynthTools(voice, Path(cache_dir))


def _worker_write(args: tuple[DatasetSpec, SongJob]) -> str:
    spec, job = args
    return str(write_song(spec, job, _worker_tools))


def voice_cache_dir(spec: DatasetSpec) -> Path:
    return spec.out_dir / ".cache" / "voices"


def write_dataset(spec: DatasetSpec, jobs: int = 1, progress: bool = True) -> int:
    """Write every missing song of ``spec``; returns how many were written."""
    from tqdm import tqdm

    remove_stale_temporaries(spec)
    todo = pending_jobs(spec)
    total = spec.train_songs + spec.valid_songs
    logger.info("%d of %d songs to write in %s", len(todo), total, spec.out_dir)
    if not todo:
        return 0
    bar = tqdm(total=total, initial=total - len(todo), unit="song", disable=not progress, dynamic_ncols=True)
    cache = str(voice_cache_dir(spec))
    try:
        if jobs <= 1:
            _worker_init(spec.voice, cache)
            for job in todo:
                _worker_write((spec, job))
                bar.update()
        else:
            import multiprocessing

            context = multiprocessing.get_context("spawn")
            with context.Pool(jobs, initializer=_worker_init, initargs=(spec.voice, cache)) as pool:
                for _ in pool.imap_unordered(_worker_write, [(spec, job) for job in todo]):
                    bar.update()
    finally:
        bar.close()
    return len(todo)
