"""The README's Python API example runs as written: built-in model, offline."""
from __future__ import annotations

import re
from pathlib import Path

import soundfile

from tests.conftest import make_music

README = Path(__file__).parents[1] / "README.md"


def python_example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_python_api_example_runs(tmp_path, monkeypatch):
    code = python_example()
    assert "Separator(" in code and '"song.mp3"' in code
    monkeypatch.setenv("STEMFORGE_OFFLINE", "1")
    monkeypatch.setenv("STEMFORGE_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.chdir(tmp_path)
    from stemforge.audio.encode import OutputFormat
    from stemforge.audio.io import write_audio

    write_audio(tmp_path / "song.mp3", make_music(3.0), 44100, OutputFormat("mp3"))
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert sorted(namespace["stems"]) == ["bass", "drums", "other", "vocals"]
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["bass.flac", "drums.flac", "other.flac", "vocals.flac"]
    assert soundfile.info(str(tmp_path / "out" / "vocals.flac")).samplerate == 44100
