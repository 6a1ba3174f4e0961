"""Where stems go: ``OUT/{model}/{template}``, templates kept inside ``OUT``, atomic writes."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..audio.encode import OutputFormat
from ..audio.io import write_audio


class OutputPathError(ValueError):
    """The --filename template is invalid or points outside the output folder."""


class StemWriter:
    """Writes a track's stems under ``root`` following ``template``."""

    def __init__(self, root: Path, template: str, fmt: OutputFormat, clip_mode: str):
        self.root = root
        self.template = template
        self.fmt = fmt
        self.clip_mode = clip_mode
        # Fail fast on a bad template, before any separation work.
        self.stem_path(Path("track.wav"), "stem")

    def stem_path(self, track: Path, stem: str) -> Path:
        """The file for ``stem`` of ``track``; refuses templates that leave the output folder."""
        name, _, ext = track.name.rpartition(".")
        if not name:
            name, ext = track.name, ""
        try:
            relative = self.template.format(track=name, trackext=ext, stem=stem, ext=self.fmt.extension)
        except (KeyError, IndexError, ValueError) as error:
            raise OutputPathError(f"--filename {self.template!r}: unknown placeholder {error}; "
                                  "use {track} {trackext} {stem} {ext}") from None
        root = self.root.resolve()
        path = (root / relative).resolve()
        if path == root or root not in path.parents:
            raise OutputPathError(f"--filename {self.template!r} would write outside {self.root}")
        return path

    def all_exist(self, track: Path, stems: list[str]) -> bool:
        """True when every stem file of ``track`` is already there (``--skip-existing``)."""
        return all(self.stem_path(track, stem).is_file() for stem in stems)

    def write(self, track: Path, stems: dict[str, np.ndarray], samplerate: int) -> list[Path]:
        """Write every ``{stem: (C, T) float32}``; each file appears complete or not at all."""
        import torch

        from ..audio.ops import prevent_clip

        paths = []
        for stem, audio in stems.items():
            path = self.stem_path(track, stem)
            audio = prevent_clip(torch.from_numpy(np.asarray(audio)), self.clip_mode).numpy()
            paths.append(write_audio(path, audio, samplerate, self.fmt))
        return paths
