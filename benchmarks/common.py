"""Shared helpers of the benchmark scripts: machine description, reference checkpoints, result files.

Benchmarks are not unit tests: they measure stemforge against the reference (``demucs==4.1.0``,
a test/benchmark-only dependency) in the same run on the same machine, and write
``benchmarks/results/<name>.json`` plus ``<name>.md``.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).resolve().parent / "results"
SAMPLERATE = 44100
SOURCES = ["drums", "bass", "other", "vocals"]

if str(ROOT) not in sys.path:  # benchmarks reuse the test helpers (reference checkpoint writer)
    sys.path.insert(0, str(ROOT))


# ------------------------------------------------------------------------------------------------
# Machine and versions
# ------------------------------------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                return sorted(f for f in flags if f.startswith(("avx", "amx", "fma")))
    except OSError:
        pass
    return []


def _version(package: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(package)
    except Exception:  # noqa: BLE001 - not installed
        return None


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    """Where and with what the numbers were measured."""
    import torch

    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_flags": _cpu_flags(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": _memory_gb(),
        "load_average_at_start": load_average(),
        "versions": {name: _version(name) for name in
                     ("stemforge", "torch", "numpy", "demucs", "soundfile", "psutil")},
        "stemforge_commit": _git_commit(),
    }


def _memory_gb() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024 ** 2, 1)
    except OSError:
        pass
    return None


# ------------------------------------------------------------------------------------------------
# Inputs and checkpoints
# ------------------------------------------------------------------------------------------------

def write_music(path: Path, seconds: float, seed: int = 0, samplerate: int = SAMPLERATE,
                block_seconds: float = 30.0) -> Path:
    """Write ``seconds`` of generated stereo 'music' (tones + noise) as 16-bit wav, in blocks.

    Written block by block so that hour-long inputs do not need the whole track in memory.
    """
    import soundfile

    rng = np.random.default_rng(seed)
    total = int(seconds * samplerate)
    block = int(block_seconds * samplerate)
    with soundfile.SoundFile(str(path), "w", samplerate, 2, subtype="PCM_16") as out:
        for start in range(0, total, block):
            n = min(block, total - start)
            out.write(_music_block(rng, start, n, samplerate).T)
    return path


def _music_block(rng: np.random.Generator, start: int, n: int, samplerate: int) -> np.ndarray:
    """``(2, n)`` float32: a few decaying panned tones over noise, continuing at sample ``start``."""
    t = (start + np.arange(n)) / samplerate
    out = rng.normal(0, 0.02, size=(2, n))
    for _ in range(8):
        freq = rng.uniform(40, 3000)
        onset = t[0] + rng.uniform(0, n / samplerate)
        env = np.exp(-np.clip(t - onset, 0, None) * rng.uniform(0.5, 4)) * (t >= onset)
        pan = rng.uniform(0.1, 0.9)
        tone = np.sin(2 * np.pi * freq * t) * env * rng.uniform(0.05, 0.25)
        out[0] += pan * tone
        out[1] += (1 - pan) * tone
    return np.clip(out, -1, 1).astype(np.float32)


def small_htdemucs_kwargs() -> dict[str, Any]:
    """A small HTDemucs (same structure as the official one, ~1/16 of the channels)."""
    from fractions import Fraction

    return dict(sources=SOURCES, channels=12, depth=4, nfft=4096, t_layers=1, t_heads=4,
                bottom_channels=64, dconv_mode=3, segment=Fraction(39, 5))


def make_repo(folder: Path, model: str = "official", seed: int = 1, bag: bool = True,
              layer_scale: float | None = None) -> dict[str, str]:
    """Write a model folder usable by both ``--repo`` command lines.

    ``htdemucs`` (``955717e8-<sha>.th`` + ``htdemucs.yaml``): the official htdemucs
    configuration (``model="official"``) or :func:`small_htdemucs_kwargs` (``"small"``), random
    weights. With ``bag``, also ``bag4`` = four such models (``bag4.yaml``, like ``htdemucs_ft``
    without per-source weights). Returns ``{name: description}``.
    """
    import torch
    from demucs.htdemucs import HTDemucs

    from tests.models.configs import official_htdemucs_kwargs, with_layer_scales
    from tests.reference import official_package, save_official

    kwargs = official_htdemucs_kwargs() if model == "official" else small_htdemucs_kwargs()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    def build():
        return with_layer_scales(HTDemucs(**kwargs), layer_scale)

    first = save_official(official_package(build()), folder, "955717e8")
    (folder / "htdemucs.yaml").write_text("models: ['955717e8']\n")
    names = {"htdemucs": f"{model} htdemucs config, random weights ({first.name})"}
    if bag:
        members = []
        for index in range(4):
            sig = f"f{index}bag{seed:03d}"
            save_official(official_package(build()), folder, sig)
            members.append(sig)
        (folder / "bag4.yaml").write_text(f"models: {members!r}\n")
        names["bag4"] = f"bag of 4 {model}-config htdemucs models, random weights"
    return names


# ------------------------------------------------------------------------------------------------
# Measuring
# ------------------------------------------------------------------------------------------------

def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def read_stems(folder: Path) -> dict[str, np.ndarray]:
    import soundfile

    return {p.stem: soundfile.read(str(p), dtype="float32")[0] for p in sorted(folder.glob("*.wav"))}


def max_stem_difference(a: Path, b: Path) -> float | None:
    """Largest absolute sample difference between same-named stems of two folders."""
    left, right = read_stems(a), read_stems(b)
    if not left or sorted(left) != sorted(right):
        return None
    return max(float(np.abs(left[k] - right[k]).max()) for k in left)


def stems_sdr_db(reference: Path, estimate: Path) -> float | None:
    """SDR (dB) of all of ``estimate``'s stems against ``reference``'s, pooled over stems and
    samples (how far a fast mode is from the exact output); None if the folders differ, inf if
    equal."""
    left, right = read_stems(reference), read_stems(estimate)
    if not left or sorted(left) != sorted(right):
        return None
    signal = sum(float(np.square(left[k], dtype=np.float64).sum()) for k in left)
    error = sum(float(np.square(left[k].astype(np.float64) - right[k]).sum()) for k in left)
    return float("inf") if error == 0 else 10 * float(np.log10(signal / error))


# ------------------------------------------------------------------------------------------------
# Writing results
# ------------------------------------------------------------------------------------------------

def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.4g}"
        return "" if value is None else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_results(name: str, payload: dict[str, Any], markdown: str,
                  directory: Path = RESULTS) -> tuple[Path, Path]:
    """Write ``name.json`` (payload + machine info) and ``name.md`` (markdown + machine info)."""
    directory.mkdir(parents=True, exist_ok=True)
    info = payload.setdefault("machine", machine_info())
    json_path = directory / f"{name}.json"
    json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    md_path = directory / f"{name}.md"
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items() if v)
    footer = (f"\n\nMachine: {info['cpu']} ({info['cpu_count']} CPUs, {info['memory_gb']} GB, "
              f"{' '.join(info['cpu_flags'])}); {info['platform']}; Python {info['python']}; "
              f"{versions}; stemforge commit {info['stemforge_commit']}; date {info['date']}; "
              f"load average at start {info['load_average_at_start']}.\n")
    md_path.write_text(markdown.rstrip() + footer)
    return json_path, md_path


def publish(name: str, payload: dict[str, Any], markdown: str, *,
            show: bool = True) -> dict[str, Any]:
    """The end of a benchmark report: print ``markdown`` (if ``show``), write the result files
    (:func:`write_results`) and return ``payload``."""
    if show:
        print(markdown)
    write_results(name, payload, markdown)
    return payload


# ------------------------------------------------------------------------------------------------
# Running
# ------------------------------------------------------------------------------------------------

@contextlib.contextmanager
def work_directory(keep: Path | None, prefix: str) -> Iterator[Path]:
    """The folder for a run's files: ``keep`` (created if needed, left in place) or else a
    temporary folder named ``prefix...``, deleted afterwards."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        work = keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        yield work


def run_script(main: Callable[[], object]) -> None:
    """Run a benchmark script's ``main()`` with progress messages (INFO logs) on stderr."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main()
