"""Drum parts: per-section one-bar grooves in several styles, fills into section changes, crashes.

Keys follow the General MIDI percussion map, which the recorded kits we use also follow.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .arrangement import Note, Part, Section, SongPlan, humanise_time, humanise_velocity

KICK, SIDE_STICK, SNARE, CLAP, SNARE_2 = 36, 37, 38, 39, 40
HAT_CLOSED, HAT_PEDAL, HAT_OPEN = 42, 44, 46
CRASH, CRASH_2, RIDE, RIDE_BELL = 49, 57, 51, 53
TOMS = (50, 48, 47, 45, 43, 41)  # high to low

STYLES = {"backbeat": 0.36, "four": 0.14, "half": 0.14, "funk": 0.12, "sparse": 0.12, "driving": 0.12}

Hit = tuple[float, int, float]  # (step within the bar, key, velocity)


@dataclass(frozen=True)
class Groove:
    """A one-bar pattern plus the kick steps (the bass may follow them)."""

    hits: tuple[Hit, ...]
    kick_steps: tuple[float, ...]
    cymbal: int


def drum_part(plan: SongPlan, rng: np.random.Generator) -> tuple[Part, dict[str, tuple[float, ...]]]:
    """The drum track of the whole song and, per section name, the kick steps of its groove."""
    grooves: dict[str, Groove | None] = {}
    notes: list[Note] = []
    spread = float(rng.uniform(0.002, 0.009))
    window = plan.bars_in_window()
    for section in plan.sections:
        if section.name not in grooves:
            grooves[section.name] = _section_groove(rng, plan, section)
        groove = grooves[section.name]
        if groove is None:
            continue
        for bar in range(section.start_bar, section.end_bar):
            if bar not in window:
                continue
            hits = _bar_hits(rng, plan, section, groove, bar)
            notes.extend(_hits_to_notes(rng, plan, bar, hits, spread))
    kicks = {name: (g.kick_steps if g is not None else ()) for name, g in grooves.items()}
    return Part("drums", "kit", sorted(notes, key=lambda n: n.start), drums=True), kicks


def _section_groove(rng: np.random.Generator, plan: SongPlan, section: Section) -> Groove | None:
    if section.energy < 0.4 and rng.random() < 0.35:
        return None  # a quiet intro/outro without drums
    names = list(STYLES)
    weights = np.array([STYLES[n] for n in names])
    style = names[int(rng.choice(len(names), p=weights / weights.sum()))]
    if section.energy < 0.45 and rng.random() < 0.5:
        style = "sparse"
    return build_groove(rng, plan.grid.meter.beats, plan.grid.meter.steps, style, section.energy,
                        plan.grid.tempo)


def build_groove(rng: np.random.Generator, beats: int, steps: int, style: str, energy: float,
                 tempo: float) -> Groove:
    """One bar of ``style`` on a ``beats`` x ``steps`` grid."""
    per_bar = beats * steps
    backbeats = _backbeats(beats, style)
    kick = [0.0]
    if style == "four":
        kick = [float(b * steps) for b in range(beats)]
    elif style in ("backbeat", "driving", "funk"):
        extras = [s for s in range(1, per_bar) if s % steps != 0 or (s // steps) not in backbeats]
        count = {"backbeat": 1, "driving": 2, "funk": 3}[style]
        chosen = rng.choice(extras, size=min(count, len(extras)), replace=False)
        kick += [float(s) for s in chosen if rng.random() < 0.85]
        if beats == 4 and style != "funk":
            kick.append(float(2 * steps))
    elif style == "half" and beats >= 3 and rng.random() < 0.6:
        kick.append(float(per_bar - steps // 2 if steps == 4 else per_bar - 1))
    kick = sorted(set(kick))
    snare_key = SIDE_STICK if style == "sparse" and rng.random() < 0.6 else (CLAP if style == "four" and rng.random() < 0.4 else SNARE)
    cymbal = RIDE if rng.random() < (0.35 if style == "sparse" else 0.15) else HAT_CLOSED
    hits: list[Hit] = [(s, KICK, 108.0) for s in kick]
    hits += [(float(b * steps), snare_key, 112.0) for b in backbeats]
    hits += _cymbal_hits(rng, beats, steps, style, cymbal, tempo)
    if style == "funk":
        ghosts = [s for s in range(per_bar) if s % 2 == 1]
        for s in rng.choice(ghosts, size=min(3, len(ghosts)), replace=False):
            hits.append((float(s), SNARE, 38.0))
    return Groove(tuple(hits), tuple(kick), cymbal)


def _backbeats(beats: int, style: str) -> list[int]:
    if style == "half":
        return [beats // 2] if beats >= 2 else []
    return {4: [1, 3], 3: [1, 2], 2: [1]}.get(beats, [1])


def _cymbal_hits(rng: np.random.Generator, beats: int, steps: int, style: str, cymbal: int,
                 tempo: float) -> list[Hit]:
    per_bar = beats * steps
    if steps == 3:
        every = 1 if rng.random() < 0.7 else 3
    elif style == "funk" or (style == "driving" and tempo < 125) or (tempo < 95 and rng.random() < 0.5):
        every = 1
    elif style == "sparse":
        every = int(rng.choice([2, 4]))
    else:
        every = 2
    hits: list[Hit] = []
    for s in range(0, per_bar, every):
        on_beat = s % steps == 0
        velocity = 92.0 if on_beat else (70.0 if s % 2 == 0 else 55.0)
        key = cymbal
        if style == "four" and steps == 4 and s % steps == 2 and cymbal == HAT_CLOSED:
            key, velocity = HAT_OPEN, 85.0
        hits.append((float(s), key, velocity))
    return hits


def _bar_hits(rng: np.random.Generator, plan: SongPlan, section: Section, groove: Groove,
              bar: int) -> list[Hit]:
    meter = plan.grid.meter
    hits = list(groove.hits)
    scale = 0.75 + 0.35 * section.energy
    hits = [(s, k, v * scale) for s, k, v in hits]
    if rng.random() < 0.08:  # a dropped or extra note now and then
        hits.pop(int(rng.integers(len(hits))))
    if bar == section.start_bar and section.energy > 0.45 and rng.random() < 0.75:
        hits = [h for h in hits if h[1] not in (HAT_CLOSED, RIDE) or h[0] > 0]
        hits.append((0.0, CRASH if rng.random() < 0.7 else CRASH_2, 115.0))
    if bar == section.end_bar - 1 and rng.random() < 0.65:
        hits = _with_fill(rng, meter.beats, meter.steps, hits)
    return hits


def _with_fill(rng: np.random.Generator, beats: int, steps: int, hits: list[Hit]) -> list[Hit]:
    """Replace the last one or two beats by a snare/tom run getting louder."""
    length_beats = 1 if beats < 3 or rng.random() < 0.55 else 2
    start = (beats - length_beats) * steps
    kept = [h for h in hits if h[0] < start or h[1] == KICK and h[0] == start]
    stride = 1 if rng.random() < 0.6 else 2
    run = list(range(start, beats * steps, stride))
    toms = list(TOMS[int(rng.integers(0, 2)):])
    for i, s in enumerate(run):
        progress = i / max(len(run) - 1, 1)
        key = SNARE if rng.random() < 0.35 else toms[min(int(progress * len(toms)), len(toms) - 1)]
        kept.append((float(s), key, 80.0 + 35.0 * progress))
    return kept


def _hits_to_notes(rng: np.random.Generator, plan: SongPlan, bar: int, hits: list[Hit],
                   spread: float) -> list[Note]:
    notes = []
    for step, key, velocity in hits:
        start = humanise_time(rng, plan.grid.time(bar, step), spread)
        notes.append(Note(start, 0.9, key, humanise_velocity(rng, velocity, 6.0)))
    return notes
