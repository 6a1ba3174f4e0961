"""Shared helpers for the synth tests: which voice backend to use, and skip reasons."""
from __future__ import annotations

import shutil

import pytest


def fast_voice() -> str:
    """espeak-ng is ~50x faster than Kokoro for the first synthesis of each word: prefer it in tests."""
    return "espeak" if shutil.which("espeak-ng") else "kokoro"


def require_synth(voice: str) -> None:
    from stemforge.data.synth import missing_dependencies

    missing = missing_dependencies(voice)
    if missing:
        pytest.skip("synth system packages missing (scripts/install_synth_deps.sh): " + "; ".join(missing))
