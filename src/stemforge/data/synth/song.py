"""One procedural song: plan, parts, rendering of the four stems, and the mix.

``render_song(seed, seconds, tools)`` is a pure function of its seed for a given set of installed
soundfonts and voice backend: every random choice comes from generators spawned from that seed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from . import dsp
from .arrangement import STEMS, Note, Part, SongPlan, plan_song
from .drums import drum_part
from .instruments import InstrumentRenderer, find_soundfonts
from .melody import Phrase, melody
from .mixing import mix_stems
from .parts import bass_part, other_parts
from .speech import SpokenWords, open_backend
from .vocals import Singer, random_style, vocal_range

logger = logging.getLogger(__name__)

SAMPLERATE = 44100
PREROLL = 1.0  # seconds rendered before the excerpt so notes and reverbs are already sounding
INSTRUMENTAL_SHARE = 0.05


class SynthTools:
    """The heavy, per-process resources: the soundfont synth and the singer (loaded on first use)."""

    def __init__(self, voice_backend: str = "auto", cache_dir: Path | None = None,
                 samplerate: int = SAMPLERATE) -> None:
        self.samplerate = samplerate
        self._voice_backend = voice_backend
        self._cache_dir = cache_dir
        self._instruments: InstrumentRenderer | None = None
        self._singer: Singer | None = None

    @property
    def instruments(self) -> InstrumentRenderer:
        if self._instruments is None:
            self._instruments = InstrumentRenderer(find_soundfonts(), self.samplerate)
        return self._instruments

    @property
    def singer(self) -> Singer:
        if self._singer is None:
            self._singer = Singer(SpokenWords(open_backend(self._voice_backend), self._cache_dir))
        return self._singer


@dataclass(frozen=True)
class _Streams:
    """Independent random streams, so that changing one part's draws leaves the others alone."""

    plan: np.random.Generator
    drums: np.random.Generator
    bass: np.random.Generator
    other: np.random.Generator
    vocals: np.random.Generator
    render: np.random.Generator
    mix: np.random.Generator

    @classmethod
    def from_seed(cls, seed: np.random.SeedSequence) -> "_Streams":
        return cls(*(np.random.default_rng(s) for s in seed.spawn(7)))


def render_song(seed: np.random.SeedSequence, seconds: float, tools: SynthTools) -> dict[str, np.ndarray]:
    """The four mixed stems of a new song: ``{stem: (2, frames)}`` float32 at ``tools.samplerate``."""
    streams = _Streams.from_seed(seed)
    plan = plan_song(streams.plan, seconds, instrumental=streams.plan.random() < INSTRUMENTAL_SHARE)
    rate = tools.samplerate
    frames = int(round(seconds * rate))
    start = plan.start - PREROLL
    total = frames + int(round(PREROLL * rate))
    drums, kicks = drum_part(plan, streams.drums)
    bass = bass_part(plan, streams.bass, kicks)
    stems = {
        "drums": _render_part(drums, streams.render, tools, start, total),
        "bass": _render_part(bass, streams.render, tools, start, total),
        "other": _render_other(plan, streams, tools, start, total),
        "vocals": _render_vocals(plan, streams.vocals, tools, start, total),
    }
    stems = mix_stems(stems, rate, streams.mix)
    return {name: np.ascontiguousarray(stems[name][:, total - frames:]) for name in STEMS}


def _render_part(part: Part, rng: np.random.Generator, tools: SynthTools, start: float, total: int) -> np.ndarray:
    patch = tools.instruments.choose_patch(part, rng)
    return tools.instruments.render(part, patch, start, total)


def _render_other(plan: SongPlan, streams: _Streams, tools: SynthTools, start: float, total: int) -> np.ndarray:
    out = np.zeros((2, total), dtype=np.float64)
    for part in other_parts(plan, streams.other):
        if not part.notes:
            continue
        patch = tools.instruments.choose_patch(part, streams.render)
        audio = tools.instruments.render(part, patch, start, total)
        level = dsp.rms(audio)
        if level < 1e-7:
            continue
        pan = float(streams.render.uniform(-0.6, 0.6))
        out += dsp.balance(audio / level, pan) * 10 ** (part.gain_db / 20) * 0.1
    return out.astype(np.float32)


def _render_vocals(plan: SongPlan, rng: np.random.Generator, tools: SynthTools, start: float,
                   total: int) -> np.ndarray:
    sections = [s for s in plan.sections if s.vocals]
    if not sections:
        return np.zeros((2, total), dtype=np.float32)
    singer = tools.singer
    voice = singer.voices[int(rng.integers(len(singer.voices)))]
    low, high = vocal_range(rng, voice)
    phrases = melody(plan, rng, sections, low, high)
    style = random_style(rng, voice)
    rate = tools.samplerate
    lead = singer.sing(phrases, style, plan, start, total, rate, rng)
    out = dsp.pan_mono(lead, float(rng.uniform(-0.1, 0.1)))
    if rng.random() < 0.25:  # double-tracked lead
        double = singer.sing(_nudged(phrases, rng), replace(style, formant_warp=style.formant_warp * 1.02),
                             plan, start, total, rate, rng)
        out += dsp.pan_mono(double, float(rng.choice([-0.5, 0.5]))) * 0.5
    if rng.random() < 0.35:  # a harmony a third above in the choruses
        chorus = [p for p in phrases if plan.section_at_bar(int(p.start // plan.grid.bar_seconds)).energy > 0.75]
        if chorus:
            harmony = singer.sing(_third_above(chorus, plan, rng), style, plan, start, total, rate, rng)
            out += dsp.pan_mono(harmony, float(rng.uniform(-0.5, 0.5))) * float(rng.uniform(0.3, 0.55))
    return out.astype(np.float32)


def _nudged(phrases: list[Phrase], rng: np.random.Generator) -> list[Phrase]:
    return [Phrase(tuple(Note(n.start + float(rng.normal(0, 0.012)), n.duration, n.pitch, n.velocity)
                         for n in p.notes), p.slurs) for p in phrases]


def _third_above(phrases: list[Phrase], plan: SongPlan, rng: np.random.Generator) -> list[Phrase]:
    scale = plan.key.scale_pitches(24, 100)
    out = []
    for phrase in phrases:
        notes = []
        for n in phrase.notes:
            above = [p for p in scale if p > n.pitch]
            notes.append(Note(n.start + float(rng.normal(0, 0.01)), n.duration, above[min(1, len(above) - 1)],
                              max(n.velocity - 10, 1)))
        out.append(Phrase(tuple(notes), phrase.slurs))
    return out
