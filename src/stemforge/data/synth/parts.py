"""Bass and "other" parts (pads, comping, arpeggios, lead lines) over a song plan."""
from __future__ import annotations

import numpy as np

from .arrangement import Note, Part, Section, SongPlan, humanise_time, humanise_velocity
from .melody import melody
from .theory import nearest_voicing

# General MIDI programs per role; voice-like programs (choir, voice oohs, solo vox) are left out of
# "other" so that no sung-sounding timbre is labelled as an instrument.
BASS_PROGRAMS = (32, 33, 33, 34, 34, 35, 36, 37, 38, 39, 43)
PAD_PROGRAMS = (48, 49, 50, 51, 16, 17, 19, 61, 62, 88, 89, 90, 92, 94, 95)
COMP_PROGRAMS = (0, 0, 1, 2, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29, 30, 16, 17, 18, 11, 21)
ARP_PROGRAMS = (0, 4, 5, 8, 9, 10, 11, 12, 13, 46, 24, 25, 80, 81, 84, 98, 105, 108, 6)
LEAD_PROGRAMS = (56, 57, 64, 65, 66, 68, 71, 73, 40, 41, 42, 27, 29, 30, 80, 81, 22, 11, 26)

BASS_STYLES = ("whole", "beats", "eighths", "octaves", "kick", "walking", "syncopated")


def bass_part(plan: SongPlan, rng: np.random.Generator, kicks: dict[str, tuple[float, ...]]) -> Part:
    program = int(rng.choice(BASS_PROGRAMS))
    octave_up = rng.random() < 0.2
    styles: dict[str, str] = {}
    notes: list[Note] = []
    window = plan.bars_in_window()
    spread = float(rng.uniform(0.004, 0.014))
    legato = float(rng.uniform(0.55, 0.97))
    for section in plan.sections:
        if section.name not in styles:
            styles[section.name] = _bass_style(rng, section, bool(kicks.get(section.name)))
        if section.energy < 0.35 and rng.random() < 0.3:
            continue
        for bar in range(section.start_bar, section.end_bar):
            if bar in window:
                steps = _bass_steps(styles[section.name], plan, kicks.get(section.name, ()))
                notes += _bass_bar(rng, plan, bar, steps, styles[section.name], octave_up, spread, legato)
    return Part("bass", "bass", notes, program=program)


def _bass_style(rng: np.random.Generator, section: Section, has_kick: bool) -> str:
    style = str(rng.choice(BASS_STYLES))
    if style == "kick" and not has_kick:
        style = "beats"
    if section.energy < 0.4 and rng.random() < 0.6:
        style = "whole"
    return style


def _bass_steps(style: str, plan: SongPlan, kick: tuple[float, ...]) -> list[float]:
    meter = plan.grid.meter
    per_bar = meter.steps_per_bar
    if style == "whole":
        return [0.0]
    if style in ("beats", "walking"):
        return [float(b * meter.steps) for b in range(meter.beats)]
    if style in ("eighths", "octaves"):
        stride = 2 if meter.steps == 4 else 1
        return [float(s) for s in range(0, per_bar, stride)]
    if style == "kick":
        return sorted(set(kick) | {0.0})
    return [0.0, 3.0, 6.0, 10.0, 12.0][: max(2, per_bar // 3)] if meter.steps == 4 else [0.0, 2.0, 3.0, 5.0]


def _bass_bar(rng: np.random.Generator, plan: SongPlan, bar: int, steps: list[float], style: str,
              octave_up: bool, spread: float, legato: float) -> list[Note]:
    chord = plan.chord_at_bar(bar)
    next_chord = plan.chord_at_bar(bar + 1)
    root = 28 + (chord.root - 28) % 12 + (12 if octave_up else 0)
    fifth = root + 7
    per_bar = plan.grid.meter.steps_per_bar
    notes = []
    for i, step in enumerate(steps):
        pitch = root
        if style == "octaves" and i % 2 == 1:
            pitch = root + 12
        elif style == "walking" and i > 0:
            pitch = _walking_pitch(rng, plan, root, next_chord.root, i, len(steps))
        elif style != "whole" and i > 0 and rng.random() < 0.15:
            pitch = fifth if rng.random() < 0.7 else root + 12
        end = steps[i + 1] if i + 1 < len(steps) else per_bar
        start = humanise_time(rng, plan.grid.time(bar, step), spread)
        length = (plan.grid.time(bar, end) - plan.grid.time(bar, step)) * legato
        velocity = humanise_velocity(rng, (100 if step == 0 else 88) * (0.8 + 0.25 * plan.section_at_bar(bar).energy))
        notes.append(Note(start, max(length, 0.06), int(pitch), velocity))
    return notes


def _walking_pitch(rng: np.random.Generator, plan: SongPlan, root: int, next_root_class: int, index: int,
                   count: int) -> int:
    if index == count - 1:  # approach the next chord's root by a step
        target = root + (next_root_class - root) % 12
        if target - root > 6:
            target -= 12
        return target + int(rng.choice([-1, 1, -2]))
    scale = plan.key.scale_pitches(root - 2, root + 9)
    return int(rng.choice(scale))


def other_parts(plan: SongPlan, rng: np.random.Generator) -> list[Part]:
    """One to three instrument parts: always a harmonic bed, plus arpeggios and/or a lead line."""
    parts = [_chord_part(plan, rng, "pad" if rng.random() < 0.4 else "comp")]
    if rng.random() < 0.5:
        parts.append(_arp_part(plan, rng))
    if rng.random() < 0.55:
        parts.append(_lead_part(plan, rng))
    if rng.random() < 0.2:
        parts.append(_chord_part(plan, rng, "pad"))
    return parts


def _chord_part(plan: SongPlan, rng: np.random.Generator, role: str) -> Part:
    programs = PAD_PROGRAMS if role == "pad" else COMP_PROGRAMS
    part = Part("other", role, program=int(rng.choice(programs)), gain_db=float(rng.uniform(-4, 0)))
    low = int(rng.integers(48, 58))
    rhythms: dict[str, list[float]] = {}
    voicing: list[int] | None = None
    spread = float(rng.uniform(0.003, 0.015))
    window = plan.bars_in_window()
    for section in plan.sections:
        if section.name not in rhythms:
            rhythms[section.name] = _comp_rhythm(rng, plan, role)
        for bar in range(section.start_bar, section.end_bar):
            if bar not in window:
                continue
            voicing = nearest_voicing(plan.chord_at_bar(bar).pitch_classes, voicing, low, low + 22, rng)
            part.notes += _chord_hits(rng, plan, bar, voicing, rhythms[section.name], spread, section.energy)
    return part


def _comp_rhythm(rng: np.random.Generator, plan: SongPlan, role: str) -> list[float]:
    meter = plan.grid.meter
    per_bar = meter.steps_per_bar
    if role == "pad":
        return [0.0] if rng.random() < 0.7 else [0.0, float(per_bar // 2)]
    choice = int(rng.integers(4))
    if choice == 0:
        return [float(b * meter.steps) for b in range(meter.beats)]
    if choice == 1 and meter.steps == 4:
        return [float(b * 4 + 2) for b in range(meter.beats)]  # off-beat skank
    if choice == 2:
        stride = 2 if meter.steps == 4 else 1
        return [float(s) for s in range(0, per_bar, stride)]
    onsets = sorted(set([0.0] + [float(s) for s in rng.choice(per_bar, size=3, replace=False)]))
    return onsets


def _chord_hits(rng: np.random.Generator, plan: SongPlan, bar: int, voicing: list[int], onsets: list[float],
                spread: float, energy: float) -> list[Note]:
    per_bar = plan.grid.meter.steps_per_bar
    notes = []
    for i, onset in enumerate(onsets):
        end = onsets[i + 1] if i + 1 < len(onsets) else per_bar
        length = plan.grid.time(bar, end) - plan.grid.time(bar, onset)
        base = humanise_time(rng, plan.grid.time(bar, onset), spread)
        strum = float(rng.uniform(0.0, 0.012))
        for j, pitch in enumerate(voicing):
            velocity = humanise_velocity(rng, 70 + 30 * energy - 4 * j)
            notes.append(Note(base + j * strum, length * 0.92, pitch, velocity))
    return notes


def _arp_part(plan: SongPlan, rng: np.random.Generator) -> Part:
    part = Part("other", "arp", program=int(rng.choice(ARP_PROGRAMS)), gain_db=float(rng.uniform(-8, -2)))
    meter = plan.grid.meter
    stride = int(rng.choice([1, 2])) if meter.steps == 4 else 1
    if plan.grid.tempo > 130:
        stride = 2 if meter.steps == 4 else 1
    order = str(rng.choice(["up", "down", "updown", "random"]))
    low = int(rng.integers(55, 67))
    spread = float(rng.uniform(0.002, 0.01))
    for bar in plan.bars_in_window():
        section = plan.section_at_bar(bar)
        if section.energy < 0.4 and rng.random() < 0.5:
            continue
        tones = nearest_voicing(plan.chord_at_bar(bar).pitch_classes, None, low, low + 16, rng)
        tones = tones + [tones[0] + 12]
        sequence = _arp_order(rng, tones, order)
        for i, step in enumerate(range(0, meter.steps_per_bar, stride)):
            start = humanise_time(rng, plan.grid.time(bar, step), spread)
            length = plan.grid.step_seconds * stride * float(rng.uniform(0.5, 1.1))
            part.notes.append(Note(start, length, sequence[i % len(sequence)],
                                   humanise_velocity(rng, 72 + (10 if step % meter.steps == 0 else 0))))
    return part


def _arp_order(rng: np.random.Generator, tones: list[int], order: str) -> list[int]:
    if order == "down":
        return tones[::-1]
    if order == "updown":
        return tones + tones[-2:0:-1]
    if order == "random":
        return [int(x) for x in rng.permutation(tones)]
    return tones


def _lead_part(plan: SongPlan, rng: np.random.Generator) -> Part:
    """A melodic instrument: mostly where nobody sings, sometimes quietly under the voice."""
    part = Part("other", "lead", program=int(rng.choice(LEAD_PROGRAMS)), gain_db=float(rng.uniform(-7, -1)))
    under_voice = rng.random() < 0.35
    sections = [s for s in plan.sections if not s.vocals or under_voice]
    low = int(rng.integers(55, 70))
    for phrase in melody(plan, rng, sections, low, low + 17, timing_spread=0.008):
        part.notes += list(phrase.notes)
    return part
