"""The singer: spoken words re-sung on melody notes with the WORLD vocoder (``pyworld``).

Each word is analysed once into F0, spectral envelope and aperiodicity. For a note, the consonant
onset is kept at natural speed and placed just before the beat, the vowel nucleus is time-stretched
over the note (read slowly, so its colour still moves), and the coda follows. The pitch is the note's,
smoothed into portamento, with a scoop at phrase starts, delayed vibrato and slow drift. A random
formant warp and breathiness make new timbres from the few voices; breaths come before phrases.
WORLD stops at half the speech rate (12 kHz), so an exciter and a little air noise extend the band.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import dsp
from .arrangement import Note, SongPlan
from .melody import Phrase
from .speech import WORDS, SpokenWords, Voice
from .theory import midi_to_hz

FRAME_MS = 5.0
F0_FLOOR = 71.0


def import_pyworld():
    with warnings.catch_warnings():  # pyworld 0.3.5 imports the deprecated pkg_resources
        warnings.simplefilter("ignore")
        import pyworld
    return pyworld


@dataclass(frozen=True)
class Syllable:
    """WORLD features of a spoken word and its regions: onset [0, a), nucleus [a, b), coda [b, end)."""

    f0: np.ndarray  # (frames,)
    sp: np.ndarray  # (frames, bins) power spectral envelope
    ap: np.ndarray  # (frames, bins) aperiodicity in [0, 1]
    nucleus: tuple[int, int]

    @property
    def frames(self) -> int:
        return self.f0.shape[0]


@dataclass(frozen=True)
class SingerStyle:
    """Per-song performance parameters."""

    voice: Voice
    formant_warp: float
    breathiness: float
    vibrato_rate: float
    vibrato_depth: float  # semitones
    vibrato_delay: float  # seconds
    glide: float  # portamento time constant, seconds
    anticipation: float  # share of the consonant sung before the beat


def random_style(rng: np.random.Generator, voice: Voice) -> SingerStyle:
    return SingerStyle(
        voice=voice,
        formant_warp=float(rng.uniform(0.9, 1.1)),
        breathiness=float(rng.uniform(0.55, 1.0)),
        vibrato_rate=float(rng.uniform(4.8, 6.6)),
        vibrato_depth=float(rng.uniform(0.12, 0.55)),
        vibrato_delay=float(rng.uniform(0.12, 0.4)),
        glide=float(rng.uniform(0.02, 0.06)),
        anticipation=float(rng.uniform(0.5, 1.0)),
    )


def vocal_range(rng: np.random.Generator, voice: Voice) -> tuple[int, int]:
    low = int(rng.integers(45, 51)) if voice.male else int(rng.integers(55, 61))
    return low, low + int(rng.integers(11, 16))


class Singer:
    """Sings phrases for one speech backend; keeps WORLD analyses of the words it has used."""

    def __init__(self, words: SpokenWords) -> None:
        self.words = words
        self.samplerate = words.backend.samplerate
        self._analysed: dict[tuple[str, int], Syllable | None] = {}
        self._world = import_pyworld()

    @property
    def voices(self) -> tuple[Voice, ...]:
        return self.words.backend.voices

    def syllable(self, word_index: int, voice: Voice) -> Syllable | None:
        key = (voice.name, word_index)
        if key not in self._analysed:
            self._analysed[key] = self._analyse(self.words.get(word_index, voice))
        return self._analysed[key]

    def _analyse(self, audio: np.ndarray) -> Syllable | None:
        world = self._world
        x = audio.astype(np.float64)
        f0, times = world.dio(x, self.samplerate, frame_period=FRAME_MS, f0_floor=F0_FLOOR, f0_ceil=700.0)
        f0 = world.stonemask(x, f0, times, self.samplerate)
        sp = world.cheaptrick(x, f0, times, self.samplerate, f0_floor=F0_FLOOR)
        ap = world.d4c(x, f0, times, self.samplerate)
        voiced = np.flatnonzero(f0 > 0)
        if voiced.size < 6:
            return None
        first, last = int(voiced[0]), int(voiced[-1]) + 1
        span = last - first
        nucleus = (first + int(0.3 * span), first + max(int(0.75 * span), int(0.3 * span) + 2))
        return Syllable(f0, sp, ap, nucleus)

    def sing(self, phrases: list[Phrase], style: SingerStyle, plan: SongPlan, start: float, frames: int,
             out_rate: int, rng: np.random.Generator) -> np.ndarray:
        """The vocal line ``(frames,)`` at ``out_rate``, from song time ``start`` (seconds)."""
        out = np.zeros(frames, dtype=np.float64)
        for phrase in phrases:
            if phrase.end < start - 0.5 or phrase.start > start + frames / out_rate:
                continue
            words = [int(rng.integers(len(WORDS))) for _ in phrase.notes]
            audio, onset = self._sing_phrase(phrase, words, style, rng)
            audio = _to_rate(audio, self.samplerate, out_rate)
            audio = _add_air(audio, out_rate, rng)
            if rng.random() < 0.55:
                audio, onset = _with_breath(audio, onset, out_rate, rng)
            _place(out, audio, int(round((onset - start) * out_rate)))
        return out.astype(np.float32)

    def _sing_phrase(self, phrase: Phrase, words: list[int], style: SingerStyle,
                     rng: np.random.Generator) -> tuple[np.ndarray, float]:
        lead = 0.4  # seconds of room before the first beat for consonants
        origin = phrase.start - lead
        count = int((phrase.end - origin + 0.4) * 1000 / FRAME_MS) + 1
        track = _FrameTrack(count, self._bins())
        previous: Syllable | None = None
        for note, word, slur in zip(phrase.notes, words, phrase.slurs):
            syllable = previous if slur and previous is not None else self.syllable(word, style.voice)
            if syllable is None:
                continue
            track.place(syllable, note, origin, style.anticipation, skip_onset=slur and previous is not None)
            previous = syllable
        f0 = _pitch_curve(track, style, rng)
        sp = _warp_formants(track.sp, style.formant_warp)
        ap = np.clip(track.ap, 0.0, 1.0) ** style.breathiness
        audio = self._world.synthesize(f0, sp, ap, self.samplerate, FRAME_MS)
        gain = np.interp(np.arange(audio.shape[0]) / self.samplerate * 1000.0 / FRAME_MS,
                         np.arange(count), _smooth(track.gain, 3))
        return audio * gain, origin

    def _bins(self) -> int:
        return self._world.get_cheaptrick_fft_size(self.samplerate, F0_FLOOR) // 2 + 1


class _FrameTrack:
    """WORLD parameters of a phrase on a 5 ms grid, filled note by note."""

    def __init__(self, count: int, bins: int) -> None:
        self.sp = np.full((count, bins), 1e-12)
        self.ap = np.ones((count, bins))
        self.voiced = np.zeros(count, dtype=bool)
        self.pitch = np.zeros(count)  # MIDI, 0 where unset
        self.gain = np.zeros(count)
        self.note_starts: list[int] = []

    def place(self, syl: Syllable, note: Note, origin: float, anticipation: float, skip_onset: bool) -> None:
        a, b = syl.nucleus
        begin = self._frame(note.start - origin)
        end = self._frame(note.start + note.duration - origin)
        onset = np.arange(0, a) if not skip_onset else np.arange(0)
        coda = np.arange(b, syl.frames)
        hold = max(end - begin - len(coda) // 2, 2)
        nucleus = a + (b - a - 1) * np.linspace(0.0, 1.0, hold) ** 0.8
        sources = np.concatenate([onset, nucleus, coda]).astype(float)
        first = begin - int(round(len(onset) * anticipation))
        self._write(syl, sources, first, note)
        self.note_starts.append(begin)

    def _write(self, syl: Syllable, sources: np.ndarray, first: int, note: Note) -> None:
        frames = np.arange(first, first + len(sources))
        keep = (frames >= 0) & (frames < self.sp.shape[0])
        frames, sources = frames[keep], sources[keep]
        lower = np.floor(sources).astype(int)
        upper = np.minimum(lower + 1, syl.frames - 1)
        w = (sources - lower)[:, None]
        self.sp[frames] = np.exp(np.log(syl.sp[lower] + 1e-16) * (1 - w) + np.log(syl.sp[upper] + 1e-16) * w)
        self.ap[frames] = syl.ap[lower] * (1 - w) + syl.ap[upper] * w
        self.voiced[frames] = syl.f0[np.rint(sources).astype(int)] > 0
        self.pitch[frames] = note.pitch
        self.gain[frames] = (note.velocity / 100.0) ** 1.5

    @staticmethod
    def _frame(seconds: float) -> int:
        return int(round(seconds * 1000.0 / FRAME_MS))


def _pitch_curve(track: _FrameTrack, style: SingerStyle, rng: np.random.Generator) -> np.ndarray:
    """F0 in Hz per frame (0 where unvoiced): glides, scoops, vibrato and drift around the notes."""
    pitch = track.pitch.copy()
    set_frames = np.flatnonzero(pitch > 0)
    if set_frames.size == 0:
        return np.zeros_like(pitch)
    pitch[: set_frames[0]] = pitch[set_frames[0]] - 1.0  # scoop up into the phrase
    pitch = np.interp(np.arange(pitch.size), set_frames, pitch[set_frames])
    pitch = _one_pole(pitch, style.glide * 1000.0 / FRAME_MS)
    t = np.arange(pitch.size) * FRAME_MS / 1000.0
    vibrato_gain = np.zeros_like(pitch)
    boundaries = track.note_starts + [pitch.size]
    for start, stop in zip(boundaries[:-1], boundaries[1:]):
        local = (np.arange(start, max(stop, start)) - start) * FRAME_MS / 1000.0
        ramp = np.clip((local - style.vibrato_delay) / 0.25, 0.0, 1.0)
        vibrato_gain[start:stop] = ramp
    rate = style.vibrato_rate * (1 + 0.05 * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6.3)))
    phase = 2 * np.pi * np.cumsum(rate) * FRAME_MS / 1000.0
    drift = _smooth(rng.standard_normal(pitch.size), 60) * 0.8
    pitch = pitch + style.vibrato_depth * vibrato_gain * np.sin(phase) + drift * 0.1
    return np.where(track.voiced, midi_to_hz(pitch), 0.0)


def _one_pole(x: np.ndarray, frames: float) -> np.ndarray:
    if frames <= 1:
        return x
    coef = np.exp(-1.0 / frames)
    out = np.empty_like(x)
    state = x[0]
    for i, value in enumerate(x):
        state = coef * state + (1 - coef) * value
        out[i] = state
    return out


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.hanning(2 * width + 1)
    return np.convolve(x, kernel / kernel.sum(), mode="same")


def _warp_formants(sp: np.ndarray, factor: float) -> np.ndarray:
    """Move the spectral envelope's formants up (``factor`` > 1) or down along frequency."""
    bins = sp.shape[1]
    source = np.clip(np.arange(bins) / factor, 0, bins - 1)
    lower = np.floor(source).astype(int)
    upper = np.minimum(lower + 1, bins - 1)
    w = source - lower
    return np.ascontiguousarray(sp[:, lower] * (1 - w) + sp[:, upper] * w)


def _to_rate(audio: np.ndarray, rate: int, out_rate: int) -> np.ndarray:
    if rate == out_rate:
        return audio
    import soxr

    return soxr.resample(audio.astype(np.float64), rate, out_rate)


def _add_air(audio: np.ndarray, rate: int, rng: np.random.Generator) -> np.ndarray:
    """Extend the band above the speech Nyquist: saturated harmonics plus envelope-shaped noise."""
    upper = dsp.apply_gain_curve(audio, rate, dsp.highpass_curve(4000.0, 2.0))
    peak = float(np.abs(upper).max()) + 1e-9
    harmonics = dsp.apply_gain_curve(np.tanh(3.0 * upper / peak) * peak, rate, dsp.highpass_curve(9000.0, 4.0))
    level = dsp.envelope(audio, rate, 0.01)
    noise = dsp.apply_gain_curve(rng.standard_normal(audio.shape[0]), rate, dsp.highpass_curve(8000.0, 2.0))
    return audio + harmonics * float(rng.uniform(0.2, 0.6)) + noise * level * float(rng.uniform(0.02, 0.08))


def _with_breath(audio: np.ndarray, onset: float, rate: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """Prepend an inhalation: band-passed noise with a soft envelope, well below the voice."""
    length = int(rate * rng.uniform(0.2, 0.45))
    noise = rng.standard_normal(length)
    centre = rng.uniform(1200.0, 3000.0)
    noise = dsp.apply_gain_curve(noise, rate, lambda f: np.exp(-0.5 * (np.log2(np.maximum(f, 1) / centre) / 1.2) ** 2))
    noise *= np.sin(np.linspace(0, np.pi, length)) ** 2
    noise *= dsp.rms(audio) * 10 ** (rng.uniform(-26, -16) / 20) / (dsp.rms(noise) + 1e-12)
    gap = int(rate * rng.uniform(0.02, 0.1))
    return np.concatenate([noise, np.zeros(gap), audio]), onset - (length + gap) / rate


def _place(out: np.ndarray, audio: np.ndarray, offset: int) -> None:
    begin, end = max(offset, 0), min(offset + audio.shape[0], out.shape[0])
    if end > begin:
        out[begin:end] += audio[begin - offset: end - offset]
