"""Music theory for procedural songs: keys, modes, diatonic chords, meters, progressions.

Pitches are MIDI note numbers; scale degrees are 0-based indices into a mode.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Semitone offsets of the seven-note modes we draw from (plus harmonic minor).
MODES: dict[str, tuple[int, ...]] = {
    "ionian": (0, 2, 4, 5, 7, 9, 11),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "phrygian": (0, 1, 3, 5, 7, 8, 10),
    "lydian": (0, 2, 4, 6, 7, 9, 11),
    "mixolydian": (0, 2, 4, 5, 7, 9, 10),
    "aeolian": (0, 2, 3, 5, 7, 8, 10),
    "harmonic_minor": (0, 2, 3, 5, 7, 8, 11),
}
MODE_WEIGHTS: dict[str, float] = {
    "ionian": 0.34, "aeolian": 0.26, "dorian": 0.12, "mixolydian": 0.12,
    "harmonic_minor": 0.06, "phrygian": 0.05, "lydian": 0.05,
}

# Degree sequences (0 = tonic) that sound idiomatic in most modes.
PROGRESSIONS: tuple[tuple[int, ...], ...] = (
    (0, 4, 5, 3), (5, 3, 0, 4), (0, 3, 4, 3), (0, 5, 3, 4), (1, 4, 0, 0),
    (0, 6, 5, 6), (0, 3, 0, 4), (0, 3, 5, 4), (3, 0, 4, 5), (0, 2, 3, 4),
    (0, 0, 3, 3), (0, 6, 3, 0), (5, 4, 3, 4), (0, 4, 3, 3), (0, 1, 2, 3),
)


@dataclass(frozen=True)
class Key:
    """A tonic pitch class (0 = C) and a mode name."""

    tonic: int
    mode: str

    @property
    def intervals(self) -> tuple[int, ...]:
        return MODES[self.mode]

    def pitch(self, degree: int, octave: int = 4) -> int:
        """MIDI pitch of scale ``degree`` (any integer; wraps into octaves) around ``octave``."""
        steps = len(self.intervals)
        octave_shift, index = divmod(degree, steps)
        return 12 * (octave + 1 + octave_shift) + self.tonic + self.intervals[index]

    def degree_of(self, pitch: int) -> int | None:
        """Scale degree (0..6) of a pitch class, or None if it is outside the mode."""
        offset = (pitch - self.tonic) % 12
        return self.intervals.index(offset) if offset in self.intervals else None

    def scale_pitches(self, low: int, high: int) -> list[int]:
        """All pitches of the mode in ``[low, high]``."""
        return [p for p in range(low, high + 1) if (p - self.tonic) % 12 in self.intervals]


@dataclass(frozen=True)
class Chord:
    """A diatonic chord: root degree and the pitch classes of its tones (root first)."""

    degree: int
    pitch_classes: tuple[int, ...]

    @property
    def root(self) -> int:
        return self.pitch_classes[0]


def diatonic_chord(key: Key, degree: int, size: int = 3) -> Chord:
    """Stack thirds inside the mode: triad (size 3), seventh (4) or ninth (5)."""
    classes = tuple(key.pitch(degree + 2 * i, 0) % 12 for i in range(size))
    return Chord(degree % 7, classes)


@dataclass(frozen=True)
class Meter:
    """``beats`` per bar, ``steps`` grid subdivisions per beat (4: simple, 3: compound)."""

    beats: int
    steps: int

    @property
    def steps_per_bar(self) -> int:
        return self.beats * self.steps

    @property
    def name(self) -> str:
        if self.steps == 3:
            return f"{self.beats * 3}/8"
        return f"{self.beats}/4"


METERS: tuple[tuple[Meter, float], ...] = (
    (Meter(4, 4), 0.72), (Meter(3, 4), 0.08), (Meter(2, 3), 0.08), (Meter(4, 3), 0.12),
)


def choose(rng: np.random.Generator, weighted: dict | tuple) -> object:
    """Pick a key of a {item: weight} dict or an item of a ((item, weight), ...) tuple."""
    items = list(weighted.items()) if isinstance(weighted, dict) else list(weighted)
    weights = np.array([w for _, w in items], dtype=float)
    index = rng.choice(len(items), p=weights / weights.sum())
    return items[index][0]


def random_key(rng: np.random.Generator) -> Key:
    return Key(int(rng.integers(12)), str(choose(rng, MODE_WEIGHTS)))


def random_meter(rng: np.random.Generator) -> Meter:
    return choose(rng, METERS)  # type: ignore[return-value]


def random_tempo(rng: np.random.Generator, meter: Meter) -> float:
    """Beats per minute in 60-180 (compound beats, being longer, stay below 130)."""
    high = 130.0 if meter.steps == 3 else 180.0
    return float(rng.uniform(60.0, high))


def random_progression(rng: np.random.Generator, length: int) -> list[int]:
    """A degree sequence of ``length`` chords: a stock progression, or a random walk."""
    if rng.random() < 0.75:
        base = PROGRESSIONS[rng.integers(len(PROGRESSIONS))]
    else:
        steps = rng.choice([-3, -2, 2, 3, 4], size=3)
        base = tuple(int(x) % 7 for x in np.cumsum(np.concatenate([[0], steps])))
    return [base[i % len(base)] for i in range(length)]


def midi_to_hz(pitch: float | np.ndarray) -> float | np.ndarray:
    return 440.0 * 2.0 ** ((np.asarray(pitch, dtype=float) - 69.0) / 12.0)


def nearest_voicing(classes: tuple[int, ...], previous: list[int] | None, low: int, high: int,
                    rng: np.random.Generator) -> list[int]:
    """Close voicing of pitch ``classes`` in ``[low, high]``, as near as possible to ``previous``."""
    candidates = []
    for bottom in range(low, high - 6):
        if bottom % 12 not in classes:
            continue
        notes = [bottom]
        for pc in classes:
            if pc == bottom % 12:
                continue
            pitch = notes[-1] + (pc - notes[-1]) % 12
            notes.append(pitch)
        notes.sort()
        if notes[-1] <= high:
            candidates.append(notes)
    if not candidates:
        return [low + (pc - low) % 12 for pc in classes]
    if previous is None:
        return candidates[int(rng.integers(len(candidates)))]
    centre = float(np.mean(previous))
    return min(candidates, key=lambda notes: abs(float(np.mean(notes)) - centre))
