"""Score separations: tracks in, museval-style scores out (JSON and a table).

A *track* is a set of reference stems and estimated stems (``{stem: (C, T)}`` at one rate). Per
track and stem we report the BSSEval v4 scores (median over 1 s frames, NaN frames ignored) and the
SDX SDR (``nSDR``). Over tracks: the median of the BSSEval scores and the mean of ``nSDR``.

Folders: one folder per track holding ``<stem>.wav|flac`` (and optionally ``mixture.*``), as in
MUSDB18-HQ (``root/{train,test}/<track>/``) and as ``stemforge separate`` writes them. MUSDB18
``.stem.mp4`` files are read with PyAV when it is installed.

As museval does for MUSDB, an estimate named ``accompaniment`` (or ``no_<stem>``, what
``stemforge separate --two-stems`` writes) is scored against the sum of the other references,
together with its counterpart (``vocals``, resp. ``<stem>``) as a separate pair.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np

from .metrics import FILTER_LENGTH, METRICS, bss_eval_v4, sdx_sdr

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = (".wav", ".flac")
MIXTURE = "mixture"
STEM_MP4_SUFFIX = ".stem.mp4"
MUSDB_STREAMS = ("mixture", "drums", "bass", "other", "vocals")
"""Stream order inside a MUSDB18 ``.stem.mp4`` file."""
SCORE_NAMES = METRICS + ("nSDR",)


class EvaluationError(Exception):
    """Inputs that cannot be scored; the message says what to fix."""


@dataclass(frozen=True)
class EvalSettings:
    """Framing of BSSEval v4 in seconds (museval: 1 s windows, 1 s hop) and filter taps."""

    window: float = 1.0
    hop: float = 1.0
    filter_length: int = FILTER_LENGTH


@dataclass
class TrackResult:
    """Scores of one track: ``frames[stem][metric]`` per frame, ``scores[stem][name]`` summary."""

    name: str
    frames: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------
# Scoring
# ---------------------------------------------------------------------------------------------

def score_track(name: str, references: dict[str, np.ndarray], estimates: dict[str, np.ndarray],
                samplerate: int, settings: EvalSettings = EvalSettings()) -> TrackResult:
    """Score ``estimates`` against ``references`` (``{stem: (C, T)}`` at ``samplerate``).

    Stems estimated but without a reference (and not derivable, see module doc) are skipped with a
    warning. Estimates are zero padded or truncated to the reference length, as museval does.
    """
    references = _with_derived_references(references, estimates)
    stems = sorted((stem for stem in estimates if stem in references and stem != MIXTURE), key=stem_sort_key)
    for stem in estimates:
        if stem not in references and stem != MIXTURE:
            logger.warning("%s: no reference for estimated stem %r; skipped", name, stem)
    if not stems:
        raise EvaluationError(f"{name}: no estimated stem has a reference "
                              f"(estimates: {sorted(estimates)}, references: {sorted(references)})")
    result = TrackResult(name)
    for group, reported in evaluation_groups(stems):
        _score_group(result, group, reported, references, estimates, samplerate, settings)
    result.frames = {stem: result.frames[stem] for stem in stems}
    result.scores = {stem: result.scores[stem] for stem in stems}
    return result


def stem_sort_key(stem: str) -> tuple[int, str]:
    """Demucs' stem order first (drums, bass, other, vocals), then the rest alphabetically."""
    order = MUSDB_STREAMS[1:]
    return (order.index(stem), "") if stem in order else (len(order), stem)


def evaluation_groups(stems: list[str]) -> list[tuple[list[str], list[str]]]:
    """``[(stems scored together, stems reported from that group)]``, museval's grouping.

    Complementary pairs (``vocals``/``accompaniment``, ``X``/``no_X``) are scored as their own pair;
    all the other stems are scored together (a stem with a complement is reported from its pair).
    """
    pairs = [(complement_target(stem), stem) for stem in stems
             if complement_target(stem) in stems]
    paired = {stem for pair in pairs for stem in pair}
    complements = {complement for _, complement in pairs}
    main = [stem for stem in stems if stem not in complements]
    groups = []
    reported_main = [stem for stem in main if stem not in paired]
    if reported_main:
        groups.append((main, reported_main))
    groups.extend(([target, complement], [target, complement]) for target, complement in pairs)
    return groups


def complement_target(stem: str) -> Optional[str]:
    """The stem whose complement ``stem`` is: ``accompaniment`` -> ``vocals``, ``no_X`` -> ``X``."""
    if stem == "accompaniment":
        return "vocals"
    if stem.startswith("no_"):
        return stem[3:]
    return None


def _with_derived_references(references: dict[str, np.ndarray], estimates: Iterable[str]
                             ) -> dict[str, np.ndarray]:
    """Add references for complements: the sum of every other (non-mixture) reference."""
    out = dict(references)
    for stem in estimates:
        target = complement_target(stem)
        if stem in out or target not in references:
            continue
        others = [audio for name, audio in references.items()
                  if name not in (target, MIXTURE) and complement_target(name) is None]
        if others:
            out[stem] = np.sum(others, axis=0)
    return out


def _score_group(result: TrackResult, group: list[str], reported: list[str],
                 references: dict[str, np.ndarray], estimates: dict[str, np.ndarray],
                 samplerate: int, settings: EvalSettings) -> None:
    ref = np.stack([_as_channels_first(references[stem]) for stem in group])
    est = np.stack([_fit_length(_as_channels_first(estimates[stem]), ref.shape[-1]) for stem in group])
    if ref.shape[1] != est.shape[1]:
        raise EvaluationError(f"{result.name}: references have {ref.shape[1]} channels, "
                              f"estimates {est.shape[1]}")
    try:
        frames = bss_eval_v4(ref, est, window=int(settings.window * samplerate),
                             hop=int(settings.hop * samplerate), filter_length=settings.filter_length)
    except ValueError as error:
        raise EvaluationError(f"{result.name}: {error}") from error
    nsdr = sdx_sdr(ref, est)
    medians = frames.medians()
    per_frame = frames.as_dict()
    for index, stem in enumerate(group):
        if stem not in reported:
            continue
        result.frames[stem] = {metric: per_frame[metric][index].tolist() for metric in METRICS}
        result.scores[stem] = {metric: float(medians[metric][index]) for metric in METRICS}
        result.scores[stem]["nSDR"] = float(nsdr[index])


def _as_channels_first(audio: np.ndarray) -> np.ndarray:
    audio = np.asarray(audio, dtype=np.float64)
    return audio[None] if audio.ndim == 1 else audio


def _fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero pad or truncate ``audio: (C, T)`` to ``length`` samples (museval's pad_or_truncate)."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    return np.pad(audio, [(0, 0), (0, length - audio.shape[-1])])


# ---------------------------------------------------------------------------------------------
# Aggregation and output
# ---------------------------------------------------------------------------------------------

def aggregate(results: list[TrackResult]) -> dict[str, dict[str, float]]:
    """Per stem over tracks: median of each BSSEval score (NaN ignored), mean of ``nSDR``."""
    stems: list[str] = []
    for result in results:
        stems.extend(stem for stem in result.scores if stem not in stems)
    summary = {}
    for stem in stems:
        rows = [result.scores[stem] for result in results if stem in result.scores]
        values = {metric: _nan_median([row[metric] for row in rows]) for metric in METRICS}
        values["nSDR"] = float(np.mean([row["nSDR"] for row in rows]))
        summary[stem] = values
    return summary


def _nan_median(values: list[float]) -> float:
    finite_or_inf = [value for value in values if not math.isnan(value)]
    return float(np.median(finite_or_inf)) if finite_or_inf else math.nan


def results_json(results: list[TrackResult], settings: EvalSettings = EvalSettings(),
                 include_frames: bool = False) -> dict:
    """``{"tracks": {track: {stem: {SDR, SIR, ISR, SAR, nSDR}}}, "aggregate": {stem: {...}}}``
    plus ``"settings"`` (and ``"frames"``: per-frame scores, if asked).

    JSON has no NaN or infinity: non-finite values are written as ``null``.
    """
    payload = {
        "tracks": {result.name: _clean(result.scores) for result in results},
        "aggregate": _clean(aggregate(results)),
        "settings": {"window_seconds": settings.window, "hop_seconds": settings.hop,
                     "filter_length": settings.filter_length, "bsseval": "v4 (museval 0.4.1)",
                     "track_score": "median over frames", "aggregate": "median over tracks; nSDR: mean"},
    }
    if include_frames:
        payload["frames"] = {result.name: _clean(result.frames) for result in results}
    return payload


def _clean(value):
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def format_table(summary: dict[str, dict[str, float]]) -> str:
    """A text table: one row per stem plus their average; columns SDR SIR ISR SAR nSDR (dB)."""
    headers = ("stem",) + SCORE_NAMES
    rows = [[stem] + [_fmt(values[name]) for name in SCORE_NAMES] for stem, values in summary.items()]
    if summary:
        rows.append(["average"] + [_fmt(_mean_finite([values[name] for values in summary.values()]))
                                   for name in SCORE_NAMES])
    widths = [max(len(str(row[i])) for row in [list(headers)] + rows) for i in range(len(headers))]
    lines = ["  ".join(str(cell).rjust(width) if i else str(cell).ljust(width)
                       for i, (cell, width) in enumerate(zip(row, widths)))
             for row in [list(headers)] + rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _mean_finite(values: list[float]) -> float:
    kept = [value for value in values if not math.isnan(value)]
    return float(np.mean(kept)) if kept else math.nan


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.3f}"


# ---------------------------------------------------------------------------------------------
# Reading tracks
# ---------------------------------------------------------------------------------------------

@dataclass
class TrackSource:
    """Where one track's audio lives: a stem folder or a ``.stem.mp4`` file."""

    name: str
    path: Path

    @property
    def is_stem_mp4(self) -> bool:
        return self.path.name.endswith(STEM_MP4_SUFFIX)

    def read(self) -> tuple[dict[str, np.ndarray], int]:
        """``({stem: (C, T)}, samplerate)``, the mixture included when present."""
        return read_stem_mp4(self.path) if self.is_stem_mp4 else read_stem_folder(self.path)

    def mixture_file(self) -> Optional[Path]:
        return None if self.is_stem_mp4 else _audio_file(self.path, MIXTURE)


def find_tracks(root: Path, subset: Optional[str] = None) -> list[TrackSource]:
    """Tracks under ``root``: ``root`` itself if it holds stems, else its track folders and
    ``.stem.mp4`` files; ``root/<subset>`` is used when it exists (MUSDB layout)."""
    root = Path(root)
    if not root.is_dir():
        raise EvaluationError(f"{root}: not a folder")
    if subset and (root / subset).is_dir():
        root = root / subset
    if _audio_files(root):
        return [TrackSource(root.name, root)]
    tracks = [TrackSource(folder.name, folder) for folder in sorted(root.iterdir())
              if folder.is_dir() and _audio_files(folder)]
    tracks += [TrackSource(path.name[: -len(STEM_MP4_SUFFIX)], path)
               for path in sorted(root.glob("*" + STEM_MP4_SUFFIX))]
    if not tracks:
        raise EvaluationError(f"{root}: no tracks found (expected folders of <stem>.wav|flac "
                              f"or {STEM_MP4_SUFFIX} files)")
    return tracks


def read_stem_folder(folder: Path) -> tuple[dict[str, np.ndarray], int]:
    """Every ``<stem>.wav|flac`` in ``folder`` as ``({stem: (C, T)}, samplerate)``."""
    from ..audio.io import read_audio

    stems: dict[str, np.ndarray] = {}
    rate: Optional[int] = None
    for path in _audio_files(folder):
        audio, file_rate = read_audio(path)
        if rate is not None and file_rate != rate:
            raise EvaluationError(f"{folder}: stems have different sample rates ({rate} and {file_rate})")
        rate = file_rate
        stems[path.name[: -len(path.suffix)]] = audio
    if rate is None:
        raise EvaluationError(f"{folder}: no .wav or .flac stems")
    return stems, rate


def read_stem_mp4(path: Path) -> tuple[dict[str, np.ndarray], int]:
    """A MUSDB18 ``.stem.mp4`` (streams: mixture, drums, bass, other, vocals); needs PyAV."""
    try:
        import av
    except ImportError as error:
        raise EvaluationError(f"{path}: reading .stem.mp4 needs PyAV (pip install av); or use the "
                              "MUSDB18-HQ wav folders") from error
    stems: dict[str, np.ndarray] = {}
    rate = 0
    with av.open(str(path)) as container:
        streams = [stream for stream in container.streams if stream.type == "audio"]
        for name, stream in zip(MUSDB_STREAMS, streams):
            audio, rate = _decode_stream(path, stream.index)
            stems[name] = audio
    if not stems:
        raise EvaluationError(f"{path}: no audio streams")
    length = min(audio.shape[-1] for audio in stems.values())
    return {name: audio[:, :length] for name, audio in stems.items()}, rate


def _decode_stream(path: Path, index: int) -> tuple[np.ndarray, int]:
    """Decode audio stream ``index`` of ``path`` to ``(C, T)`` float32 (planar resampling, same rate)."""
    import av

    chunks = []
    with av.open(str(path)) as container:
        stream = container.streams[index]
        resampler = av.AudioResampler(format="fltp", layout=stream.layout.name, rate=stream.rate)
        for frame in container.decode(stream):
            chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
        chunks.extend(out.to_ndarray() for out in resampler.resample(None))
        rate = stream.rate
    if not chunks:
        raise EvaluationError(f"{path}: audio stream {index} is empty")
    return np.concatenate(chunks, axis=-1).astype(np.float32), int(rate)


def _audio_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir()
                  if path.is_file() and path.suffix.lower() in AUDIO_EXTENSIONS)


def _audio_file(folder: Path, stem: str) -> Optional[Path]:
    for extension in AUDIO_EXTENSIONS:
        if (folder / (stem + extension)).is_file():
            return folder / (stem + extension)
    return None


# ---------------------------------------------------------------------------------------------
# Whole runs
# ---------------------------------------------------------------------------------------------

def evaluate_folders(references_dir: Path, estimates_dir: Path, subset: Optional[str] = None,
                     settings: EvalSettings = EvalSettings()) -> list[TrackResult]:
    """Score every reference track that has an estimate folder of the same name."""
    results = []
    for track in find_tracks(references_dir, subset):
        estimate_folder = _estimate_folder(Path(estimates_dir), track.name, subset)
        if estimate_folder is None:
            logger.warning("%s: no estimates in %s; skipped", track.name, estimates_dir)
            continue
        references, rate = track.read()
        estimates, estimate_rate = read_stem_folder(estimate_folder)
        estimates = _resampled(estimates, estimate_rate, rate)
        results.append(score_track(track.name, references, estimates, rate, settings))
        logger.info("%s: %s", track.name, _short_summary(results[-1]))
    if not results:
        raise EvaluationError(f"no track of {references_dir} has estimates in {estimates_dir}")
    return results


def _estimate_folder(root: Path, name: str, subset: Optional[str]) -> Optional[Path]:
    """``root/<name>``, ``root/<subset>/<name>``, or ``root`` itself when it holds the stems."""
    if not root.is_dir():
        raise EvaluationError(f"{root}: not a folder")
    for folder in [root / name] + ([root / subset / name] if subset else []):
        if folder.is_dir() and _audio_files(folder):
            return folder
    return root if _audio_files(root) else None


def evaluate_model(separator, tracks_dir: Path, subset: Optional[str] = "test",
                   settings: EvalSettings = EvalSettings()) -> list[TrackResult]:
    """Separate each track's mixture with ``separator`` (a :class:`Separator`) and score it.

    The mixture is ``mixture.*`` when present (separated from the file), else the sum of the stems.
    """
    results = []
    for track in find_tracks(tracks_dir, subset):
        stems, rate = track.read()
        references = {name: audio for name, audio in stems.items() if name != MIXTURE}
        mixture_file = track.mixture_file()
        if mixture_file is not None:
            estimates = separator.separate_file(mixture_file)
        else:
            mixture = stems.get(MIXTURE)
            if mixture is None:
                mixture = np.sum(list(references.values()), axis=0)
            estimates = separator.separate(mixture, rate)
        estimates = {name: audio for name, audio in estimates.items() if name in references}
        results.append(score_track(track.name, references, estimates, rate, settings))
        logger.info("%s: %s", track.name, _short_summary(results[-1]))
    return results


def _resampled(stems: dict[str, np.ndarray], from_rate: int, to_rate: int) -> dict[str, np.ndarray]:
    if from_rate == to_rate:
        return stems
    from ..audio.resample import resample

    logger.warning("estimates at %d Hz, references at %d Hz: resampling the estimates", from_rate, to_rate)
    return {name: resample(np.asarray(audio, dtype=np.float32), from_rate, to_rate)
            for name, audio in stems.items()}


def _short_summary(result: TrackResult) -> str:
    return ", ".join(f"{stem} SDR {scores['SDR']:.2f}" for stem, scores in result.scores.items())
