"""Musical content of the synthesiser: plans, drum grooves, and a singer that follows the notes."""
from __future__ import annotations

import numpy as np
import pytest

from .synth_helpers import require_synth


def test_plans_vary_and_stay_in_range():
    from stemforge.data.synth.arrangement import plan_song

    rng = np.random.default_rng(0)
    plans = [plan_song(rng, 10.0) for _ in range(40)]
    tempos = [p.grid.tempo for p in plans]
    assert 60 <= min(tempos) and max(tempos) <= 180
    assert len({p.key.mode for p in plans}) >= 4
    assert len({p.grid.meter for p in plans}) >= 2
    for plan in plans:
        assert plan.start >= 0
        assert plan.bars * plan.grid.bar_seconds >= plan.start + plan.seconds


def test_swing_delays_offbeats():
    from stemforge.data.synth.arrangement import Grid
    from stemforge.data.synth.theory import Meter

    straight, swung = Grid(Meter(4, 4), 120.0, 0.5), Grid(Meter(4, 4), 120.0, 2 / 3)
    assert straight.time(0, 2) == pytest.approx(0.25)
    assert swung.time(0, 2) == pytest.approx(1 / 3)
    assert swung.time(1, 0) == pytest.approx(2.0)


def test_singer_follows_the_notes():
    """Sung notes come out at the written pitch (median F0 within 40 cents)."""
    from stemforge.data.synth.arrangement import Note, plan_song
    from stemforge.data.synth.melody import Phrase
    from stemforge.data.synth.speech import SpokenWords, open_backend
    from stemforge.data.synth.theory import midi_to_hz
    from stemforge.data.synth.vocals import Singer, import_pyworld, random_style

    voice = "kokoro"
    try:
        require_synth(voice)
    except pytest.skip.Exception:
        voice = "espeak"
        require_synth(voice)
    rng = np.random.default_rng(1)
    backend = open_backend(voice)
    singer = Singer(SpokenWords(backend))
    plan = plan_song(rng, 4.0)
    pitches = [60, 64, 67]
    notes = tuple(Note(0.5 + 0.8 * i, 0.7, p, 100) for i, p in enumerate(pitches))
    style = random_style(rng, backend.voices[0])
    audio = singer.sing([Phrase(notes, (False,) * 3)], style, plan, 0.0, 44100 * 3, 44100, rng)
    assert np.sqrt(np.mean(audio ** 2)) > 1e-3
    world = import_pyworld()
    f0, times = world.harvest(audio.astype(np.float64), 44100, frame_period=5.0)
    for note in notes:
        inside = (times > note.start + 0.25) & (times < note.start + note.duration - 0.1) & (f0 > 0)
        assert inside.sum() > 10
        cents = 1200 * np.log2(np.median(f0[inside]) / midi_to_hz(note.pitch))
        assert abs(cents) < 40, (note.pitch, cents)
