"""Turning the paths a user gives into the list of tracks to separate."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

logger = logging.getLogger("stemforge.inputs")

AUDIO_EXTENSIONS = frozenset({
    ".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".alac", ".aif", ".aiff",
    ".aifc", ".wma", ".mp4", ".m4v", ".mkv", ".webm", ".mka", ".mov", ".caf", ".w64", ".wv",
})


def collect_tracks(paths: list[Path]) -> tuple[list[Path], int]:
    """Files as given, folders searched recursively for audio files (sorted).

    Returns the tracks and the number of inputs that failed (missing path, folder without audio),
    each reported on stderr as one line.
    """
    tracks: list[Path] = []
    failures = 0
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                           and not p.name.startswith("."))
            if not found:
                print(f"stemforge: error: {path}: no audio files in this folder", file=sys.stderr)
                failures += 1
            tracks.extend(found)
        elif path.exists():
            tracks.append(path)
        else:
            print(f"stemforge: error: {path}: no such file (quote paths that contain spaces)", file=sys.stderr)
            failures += 1
    return tracks, failures
