"""Melodies for the voice and for lead instruments: phrases of rhythm motifs over the harmony."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrangement import Note, Section, SongPlan, humanise_time, humanise_velocity


@dataclass(frozen=True)
class Phrase:
    """Consecutive notes sung in one breath. ``slurs[i]``: note i continues the previous syllable."""

    notes: tuple[Note, ...]
    slurs: tuple[bool, ...]

    @property
    def start(self) -> float:
        return self.notes[0].start

    @property
    def end(self) -> float:
        return self.notes[-1].start + self.notes[-1].duration


Rhythm = list[tuple[float, float]]  # (onset step, length in steps) within a phrase


def melody(plan: SongPlan, rng: np.random.Generator, sections: list[Section], low: int, high: int,
           timing_spread: float = 0.015) -> list[Phrase]:
    """Phrases over ``sections`` in the pitch range ``[low, high]``, restricted to the excerpt."""
    motifs: dict[str, tuple[int, Rhythm]] = {}
    phrases: list[Phrase] = []
    previous = int(rng.integers(low + 3, high - 3))
    window = plan.bars_in_window()
    for section in sections:
        if section.name not in motifs:
            motifs[section.name] = _motif(rng, plan, section)
        span, rhythm = motifs[section.name]
        lift = 2 if section.name in ("chorus", "b") else 0
        for first_bar in range(section.start_bar, section.end_bar, span):
            if first_bar not in window and first_bar + span - 1 not in window:
                continue
            if rng.random() < 0.12:
                continue  # a breath-length rest instead of a phrase
            varied = _vary(rng, rhythm, span * plan.grid.meter.steps_per_bar)
            phrase = _phrase(rng, plan, first_bar, varied, previous, low, high, lift, timing_spread)
            if phrase.notes:
                phrases.append(phrase)
                previous = phrase.notes[-1].pitch
    return phrases


def _motif(rng: np.random.Generator, plan: SongPlan, section: Section) -> tuple[int, Rhythm]:
    span = 1 if plan.grid.bar_seconds > 2.6 else int(rng.choice([1, 2, 2]))
    span = min(span, section.bars)
    return span, _rhythm(rng, plan, span)


def _rhythm(rng: np.random.Generator, plan: SongPlan, span: int) -> Rhythm:
    meter = plan.grid.meter
    total = span * meter.steps_per_bar
    if meter.steps == 4:
        lengths = [1, 2, 2, 2, 4, 4, 6, 8] if plan.grid.tempo < 110 else [2, 2, 2, 4, 4, 6, 8]
    else:
        lengths = [1, 1, 2, 3, 3, 6]
    sung = total * float(rng.uniform(0.55, 0.85))
    t = float(rng.choice([0, 0, 0, meter.steps // 2, meter.steps]))
    rhythm: Rhythm = []
    while t < sung:
        length = float(lengths[int(rng.integers(len(lengths)))])
        rhythm.append((t, length))
        t += length
    if rhythm:
        onset, _ = rhythm[-1]
        rhythm[-1] = (onset, max(min(total - onset - 1, float(meter.steps * 2)), 1.0))
    return rhythm


def _vary(rng: np.random.Generator, rhythm: Rhythm, total: int) -> Rhythm:
    varied = [(onset, length) for onset, length in rhythm if onset < total]
    if len(varied) > 3 and rng.random() < 0.3:
        i = int(rng.integers(1, len(varied) - 1))
        onset, length = varied[i]
        varied[i] = (onset, length / 2)
        varied.insert(i + 1, (onset + length / 2, length / 2))
    return varied


def _phrase(rng: np.random.Generator, plan: SongPlan, first_bar: int, rhythm: Rhythm, previous: int,
            low: int, high: int, lift: int, spread: float) -> Phrase:
    per_bar = plan.grid.meter.steps_per_bar
    notes: list[Note] = []
    slurs: list[bool] = []
    pitch = previous
    for i, (onset, length) in enumerate(rhythm):
        bar = first_bar + int(onset // per_bar)
        if bar >= plan.bars:
            break
        step = onset % per_bar
        chord = plan.chord_at_bar(bar)
        strong = step % plan.grid.meter.steps == 0
        pitch = _next_pitch(rng, plan, pitch, chord.pitch_classes, strong or i == len(rhythm) - 1,
                            low + lift, high)
        start = humanise_time(rng, plan.grid.time(bar, step), spread)
        end = plan.grid.time(first_bar, onset + length)
        duration = max(end - start, 0.08) * float(rng.uniform(0.85, 0.98))
        velocity = humanise_velocity(rng, 96 if strong else 84, 8.0)
        notes.append(Note(start, duration, pitch, velocity))
        slurs.append(bool(i > 0 and rng.random() < 0.08))
    return Phrase(tuple(notes), tuple(slurs))


def _next_pitch(rng: np.random.Generator, plan: SongPlan, pitch: int, chord_classes: tuple[int, ...],
                chord_tone: bool, low: int, high: int) -> int:
    candidates = plan.key.scale_pitches(low, high)
    if chord_tone and rng.random() < 0.75:
        tones = [p for p in candidates if p % 12 in chord_classes]
        candidates = tones or candidates
    distances = np.array([abs(p - pitch) for p in candidates], dtype=float)
    centre = (low + high) / 2
    # prefer small steps, and drift back toward the middle of the range
    weights = np.exp(-distances / 2.5) * np.exp(-np.abs(np.array(candidates) - centre) / 9.0)
    weights[distances == 0] *= 0.6
    return int(candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))])
