"""Instrument rendering with SoundFonts through ``tinysoundfont`` (no system library needed).

General MIDI banks (FluidR3, TimGM6mb, MuseScore General...) give the melodic programs and some
kits; the recorded acoustic kits of ``avldrums`` (Debian ``avldrums.lv2-soundfont``) are preferred
for drums. Soundfonts are found in the usual Debian folders or in ``$STEMFORGE_SOUNDFONTS``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .arrangement import Part

logger = logging.getLogger(__name__)

SEARCH_DIRS = ("/usr/share/sounds/sf2", "/usr/share/sounds/sf3", "/usr/share/soundfonts",
               "/usr/lib/lv2/avldrums.lv2")
GM_KIT_PRESETS = (0, 8, 16, 24, 25, 32, 40)
MELODIC_CHANNEL, DRUM_CHANNEL = 0, 9
PREFERRED_KIT_SHARE = 0.6  # share of songs using a recorded (avldrums) kit when available


class MissingSoundfontError(RuntimeError):
    """No usable SoundFont was found; the message says what to install."""


@dataclass(frozen=True)
class SoundfontSet:
    """Paths of General MIDI banks and of single-kit drum soundfonts, in a fixed order."""

    general_midi: tuple[Path, ...]
    drum_kits: tuple[Path, ...]


def find_soundfonts(extra: str | None = None) -> SoundfontSet:
    """Scan ``$STEMFORGE_SOUNDFONTS`` (os.pathsep-separated files/folders) and the Debian folders."""
    extra = os.environ.get("STEMFORGE_SOUNDFONTS") if extra is None else extra
    places = [Path(p) for p in (extra.split(os.pathsep) if extra else []) if p] + [Path(d) for d in SEARCH_DIRS]
    seen: dict[Path, Path] = {}
    for place in places:
        files = [place] if place.is_file() else sorted(place.glob("*.sf[23]")) if place.is_dir() else []
        for path in files:
            seen.setdefault(path.resolve(), path.resolve())
    kits = tuple(sorted(p for p in seen if "lv2" in p.name.lower()))
    banks = tuple(sorted(p for p in seen if p not in kits))
    return SoundfontSet(banks, kits)


def require_soundfonts(fonts: SoundfontSet) -> None:
    if not fonts.general_midi:
        raise MissingSoundfontError(
            "no General MIDI soundfont found: install the Debian package timgm6mb-soundfont or "
            "fluid-soundfont-gm (scripts/install_synth_deps.sh), or set STEMFORGE_SOUNDFONTS")


@dataclass(frozen=True)
class Patch:
    sfid: int
    bank: int
    preset: int
    drums: bool


class InstrumentRenderer:
    """Renders :class:`Part` notes to stereo audio. Holds one synth with every soundfont loaded."""

    def __init__(self, fonts: SoundfontSet, samplerate: int = 44100) -> None:
        require_soundfonts(fonts)
        import tinysoundfont

        self.samplerate = samplerate
        self._synth = tinysoundfont.Synth(samplerate=samplerate)
        self._banks = [self._synth.sfload(str(p)) for p in fonts.general_midi]
        self._kits = [self._synth.sfload(str(p)) for p in fonts.drum_kits]

    def choose_patch(self, part: Part, rng: np.random.Generator) -> Patch:
        """A soundfont preset for ``part`` (recorded kits preferred for drums)."""
        if part.drums:
            if self._kits and rng.random() < PREFERRED_KIT_SHARE:
                return Patch(self._kits[int(rng.integers(len(self._kits)))], 0, 0, True)
            sfid = self._banks[int(rng.integers(len(self._banks)))]
            presets = [p for p in GM_KIT_PRESETS if self._has_preset(sfid, 128, p)] or [0]
            return Patch(sfid, 128, int(rng.choice(presets)), True)
        order = [self._banks[int(i)] for i in rng.permutation(len(self._banks))]
        for sfid in order:
            if self._has_preset(sfid, 0, part.program):
                return Patch(sfid, 0, part.program, False)
        return Patch(order[0], 0, 0, False)

    def _has_preset(self, sfid: int, bank: int, preset: int) -> bool:
        try:
            return bool(self._synth.sfpreset_name(sfid, bank, preset))
        except Exception:  # tinysoundfont raises for a missing preset
            return False

    def render(self, part: Part, patch: Patch, start: float, frames: int) -> np.ndarray:
        """Audio of ``part`` from song time ``start`` (s) for ``frames`` samples: ``(2, frames)`` float32."""
        channel = DRUM_CHANNEL if patch.drums else MELODIC_CHANNEL
        synth = self._synth
        self._silence()
        synth.program_select(channel, patch.sfid, patch.bank, patch.preset, patch.drums)
        out = np.zeros((frames, 2), dtype=np.float32)
        position = 0
        for frame, is_on, pitch, velocity in self._events(part, start, frames):
            if frame > position:
                out[position:frame] = self._generate(frame - position)
                position = frame
            if is_on:
                synth.noteon(channel, pitch, velocity)
            else:
                synth.noteoff(channel, pitch)
        if position < frames:
            out[position:] = self._generate(frames - position)
        self._silence()
        return np.ascontiguousarray(out.T)

    def _silence(self) -> None:
        """Stop every voice and let the quick release run out, so no tail leaks into the next part."""
        self._synth.sounds_off()
        for _ in range(64):
            if not np.any(self._generate(2048)):
                return
        logger.debug("synth voices still sounding after sounds_off")

    def _generate(self, count: int) -> np.ndarray:
        return np.frombuffer(self._synth.generate(count), dtype=np.float32).reshape(count, 2)

    def _events(self, part: Part, start: float, frames: int) -> list[tuple[int, bool, int, int]]:
        """(frame, on?, pitch, velocity) sorted by time, note-offs before note-ons at the same frame."""
        events = []
        for note in part.notes:
            on = int(round((note.start - start) * self.samplerate))
            off = int(round((note.start + note.duration - start) * self.samplerate))
            if off <= 0 or on >= frames:
                continue
            events.append((max(on, 0), True, note.pitch, note.velocity))
            if off < frames:
                events.append((off, False, note.pitch, 0))
        events.sort(key=lambda e: (e[0], e[1]))
        return events
