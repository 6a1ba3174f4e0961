"""Song form: tempo grid with swing, sections with energy and harmony, note and part types.

A :class:`SongPlan` is pure data drawn from a random generator; the part generators
(``parts.py``, ``melody.py``) turn it into notes, and the renderers turn notes into audio.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .theory import Chord, Key, Meter, diatonic_chord, random_key, random_meter, random_progression, random_tempo

STEMS = ("drums", "bass", "other", "vocals")


@dataclass(frozen=True)
class Note:
    """One note: onset and length in seconds, MIDI pitch, MIDI velocity (1-127)."""

    start: float
    duration: float
    pitch: int
    velocity: int


@dataclass
class Part:
    """One instrument track. ``role`` names the pattern family (e.g. "comp", "arp", "lead")."""

    stem: str
    role: str
    notes: list[Note] = field(default_factory=list)
    program: int = 0  # General MIDI program (0-127); ignored for drums
    drums: bool = False
    gain_db: float = 0.0
    pan: float = 0.0


@dataclass(frozen=True)
class Grid:
    """Maps (bar, step) to seconds for a meter, tempo (beats per minute) and swing ratio.

    ``swing`` is where the off-beat eighth falls inside a beat (0.5 = straight, 2/3 = triplet swing);
    it only applies to simple meters.
    """

    meter: Meter
    tempo: float
    swing: float = 0.5

    @property
    def beat_seconds(self) -> float:
        return 60.0 / self.tempo

    @property
    def step_seconds(self) -> float:
        return self.beat_seconds / self.meter.steps

    @property
    def bar_seconds(self) -> float:
        return self.beat_seconds * self.meter.beats

    def time(self, bar: float, step: float = 0.0) -> float:
        """Seconds from the song start to ``step`` (grid steps, may be fractional) of ``bar``."""
        beat, within = divmod(step, self.meter.steps)
        fraction = within / self.meter.steps
        if self.meter.steps == 4 and self.swing != 0.5:
            fraction = self._swung(fraction)
        return (bar * self.meter.beats + beat + fraction) * self.beat_seconds

    def _swung(self, fraction: float) -> float:
        if fraction <= 0.5:
            return fraction / 0.5 * self.swing
        return self.swing + (fraction - 0.5) / 0.5 * (1.0 - self.swing)


@dataclass(frozen=True)
class Section:
    """``bars`` bars from ``start_bar``; ``energy`` in [0, 1]; ``vocals``: sung or instrumental."""

    name: str
    start_bar: int
    bars: int
    energy: float
    vocals: bool
    chords: tuple[Chord, ...]  # one per bar

    @property
    def end_bar(self) -> int:
        return self.start_bar + self.bars


@dataclass(frozen=True)
class SongPlan:
    key: Key
    grid: Grid
    sections: tuple[Section, ...]
    start: float  # seconds: where the rendered excerpt begins
    seconds: float  # excerpt length

    @property
    def bars(self) -> int:
        return self.sections[-1].end_bar

    def section_at_bar(self, bar: int) -> Section:
        for section in self.sections:
            if section.start_bar <= bar < section.end_bar:
                return section
        return self.sections[-1]

    def chord_at_bar(self, bar: int) -> Chord:
        section = self.section_at_bar(bar)
        return section.chords[(bar - section.start_bar) % len(section.chords)]

    def bars_in_window(self, margin_bars: int = 1) -> range:
        """Bars that can sound inside the rendered excerpt (with a margin for long notes)."""
        first = int(self.start // self.grid.bar_seconds) - margin_bars
        last = int((self.start + self.seconds) // self.grid.bar_seconds) + 1
        return range(max(first, 0), min(last + 1, self.bars))


FORMS: tuple[tuple[str, ...], ...] = (
    ("intro", "verse", "chorus", "verse", "chorus", "bridge", "chorus", "outro"),
    ("intro", "verse", "verse", "chorus", "verse", "chorus", "outro"),
    ("verse", "chorus", "verse", "chorus", "solo", "chorus"),
    ("intro", "verse", "prechorus", "chorus", "verse", "prechorus", "chorus", "outro"),
    ("intro", "a", "a", "b", "a", "solo", "a", "outro"),
)
ENERGY = {"intro": 0.3, "verse": 0.55, "prechorus": 0.65, "chorus": 0.9, "bridge": 0.6,
          "solo": 0.8, "outro": 0.35, "a": 0.6, "b": 0.75}
VOCAL_PROBABILITY = {"intro": 0.1, "verse": 0.9, "prechorus": 0.85, "chorus": 0.95, "bridge": 0.6,
                     "solo": 0.0, "outro": 0.25, "a": 0.85, "b": 0.8}


def random_swing(rng: np.random.Generator, meter: Meter) -> float:
    if meter.steps != 4 or rng.random() > 0.25:
        return 0.5
    return float(rng.uniform(0.56, 0.68))


def plan_song(rng: np.random.Generator, seconds: float, instrumental: bool = False) -> SongPlan:
    """Draw key, meter, tempo, form and harmony, and choose the excerpt to render."""
    key = random_key(rng)
    meter = random_meter(rng)
    tempo = random_tempo(rng, meter)
    grid = Grid(meter, tempo, random_swing(rng, meter))
    sections = _sections(rng, key, grid, seconds, instrumental)
    total = sections[-1].end_bar * grid.bar_seconds
    latest = max(total - seconds - grid.bar_seconds * 0.5, 0.0)
    start_bar = int(rng.integers(0, int(latest // grid.bar_seconds) + 1))
    offset = float(rng.choice([0.0, 0.0, 0.5])) * grid.bar_seconds
    start = min(start_bar * grid.bar_seconds + offset, latest)
    return SongPlan(key, grid, tuple(sections), start, seconds)


def _sections(rng: np.random.Generator, key: Key, grid: Grid, seconds: float,
              instrumental: bool) -> list[Section]:
    form = FORMS[rng.integers(len(FORMS))]
    needed_bars = int(np.ceil((seconds + 2.0) / grid.bar_seconds)) + 1
    harmony: dict[str, tuple[Chord, ...]] = {}
    vocal_choice: dict[str, bool] = {}
    sevenths = rng.random() < 0.3
    sections: list[Section] = []
    bar = 0
    while bar < needed_bars or not sections:
        for name in form:
            bars = int(rng.choice([4, 8, 8])) if grid.bar_seconds < 3.0 else int(rng.choice([2, 4, 4]))
            if name not in harmony:
                degrees = random_progression(rng, 4)
                harmony[name] = tuple(diatonic_chord(key, d, 4 if sevenths and rng.random() < 0.6 else 3)
                                      for d in degrees)
                vocal_choice[name] = (not instrumental) and rng.random() < VOCAL_PROBABILITY[name]
            energy = float(np.clip(ENERGY[name] + rng.normal(0, 0.08), 0.1, 1.0))
            sections.append(Section(name, bar, bars, energy, vocal_choice[name], harmony[name]))
            bar += bars
        if bar >= needed_bars:
            break
    return sections


def humanise_time(rng: np.random.Generator, t: float, spread: float) -> float:
    """``t`` plus a small Gaussian timing error (seconds), never negative."""
    return max(0.0, t + float(rng.normal(0.0, spread)))


def humanise_velocity(rng: np.random.Generator, velocity: float, spread: float = 7.0) -> int:
    return int(np.clip(round(velocity + rng.normal(0.0, spread)), 1, 127))
