"""Where stems go: ``OUT/{model}/{template}``, templates kept inside ``OUT``, atomic writes."""
from __future__ import annotations

from pathlib import Path

from ..audio.encode import OutputFormat


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
