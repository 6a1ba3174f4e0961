"""Every input format, output format and output option of ``stemforge separate`` (tiny model)."""
from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile

from stemforge.audio.decode import open_decoder
from stemforge.audio.io import read_audio
from stemforge.cli.main import main as stemforge_main
from stemforge.inference.separator import Separator
from tests.conftest import make_music

STEMS = ["bass", "drums", "other", "vocals"]


def encode_with_pyav(path: Path, wav: np.ndarray, rate: int, container: str, codec: str) -> Path:
    """Encode ``wav: (C, T)`` with ffmpeg (PyAV) into ``container``/``codec``."""
    layout = "mono" if wav.shape[0] == 1 else "stereo"
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=rate, layout=layout)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wav, dtype=np.float32), format="fltp", layout=layout)
        frame.sample_rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            output.mux(packet)
        for packet in stream.encode(None):
            output.mux(packet)
    return path


def make_input(folder: Path, name: str, rate: int = 44100, channels: int = 2, seconds: float = 2.0) -> Path:
    """Generated music encoded as ``name`` (the extension picks the format; opus is always 48 kHz)."""
    if Path(name).suffix in (".opus", ".mkv", ".webm"):
        rate = 48000
    wav = make_music(seconds, samplerate=rate, channels=max(channels, 1))
    if channels > 2:
        wav = np.concatenate([wav] * (channels // 2 + 1))[:channels]
    path = folder / name
    suffix = path.suffix
    pyav = {".m4a": ("ipod", "aac"), ".opus": ("ogg", "libopus"), ".mkv": ("matroska", "libopus"),
            ".webm": ("webm", "libopus"), ".mp4": ("mp4", "aac"), ".mp3": ("mp3", "libmp3lame")}
    if name.endswith(".alac.m4a"):
        return encode_with_pyav(path, wav, rate, "ipod", "alac")
    if suffix in pyav:
        return encode_with_pyav(path, wav, rate, *pyav[suffix])
    subtype = {".ogg": "VORBIS", ".aiff": "PCM_16", ".flac": "PCM_16", ".wav": "PCM_16"}[suffix]
    soundfile.write(str(path), wav.T, rate, subtype=subtype)
    return path


def separate(tmp_path: Path, repo: Path, *args: str) -> int:
    return stemforge_main(["separate", "-q", "--repo", str(repo), "-n", "tiny", "--shifts", "0",
                           "-o", str(tmp_path / "out"), *args])


def stem_files(tmp_path: Path, track: str) -> dict[str, Path]:
    folder = tmp_path / "out" / "tiny" / track
    return {p.stem: p for p in sorted(folder.iterdir())} if folder.exists() else {}


@pytest.mark.parametrize("name", ["song.wav", "song.flac", "song.ogg", "song.opus", "song.mp3", "song.m4a",
                                  "song.alac.m4a", "song.aiff", "song.mp4", "song.mkv", "song.webm"])
def test_every_input_format_is_separated(tmp_path, tiny_repo, name):
    track = make_input(tmp_path, name)
    frames = sum(block.shape[1] for block in open_decoder(track).blocks())
    assert separate(tmp_path, tiny_repo, str(track)) == 0
    files = stem_files(tmp_path, track.name.rsplit(".", 1)[0])
    assert sorted(files) == STEMS
    info = soundfile.info(str(files["vocals"]))
    assert (info.samplerate, info.channels, info.frames) == (open_decoder(track).info.samplerate, 2, frames)


def test_stems_keep_the_input_rate_unless_asked(tmp_path, tiny_repo):
    track = make_input(tmp_path, "low.wav", rate=22050)
    assert separate(tmp_path, tiny_repo, str(track)) == 0
    info = soundfile.info(str(stem_files(tmp_path, "low")["bass"]))
    assert (info.samplerate, info.frames) == (22050, 44100)
    assert separate(tmp_path, tiny_repo, "--samplerate", "44100", str(track)) == 0
    info = soundfile.info(str(stem_files(tmp_path, "low")["bass"]))
    assert (info.samplerate, info.frames) == (44100, 88200)


def test_mono_and_multichannel_inputs(tmp_path, tiny_repo, caplog):
    mono = make_input(tmp_path, "mono.wav", channels=1)
    surround = make_input(tmp_path, "surround.wav", channels=6)
    assert separate(tmp_path, tiny_repo, str(mono), str(surround)) == 0
    assert soundfile.info(str(stem_files(tmp_path, "mono")["drums"])).channels == 2
    assert soundfile.info(str(stem_files(tmp_path, "surround")["drums"])).channels == 2


def test_streaming_output_equals_in_memory_api(tmp_path, tiny_repo):
    """The CLI's block-streaming path gives the same stems as the in-memory Python API."""
    track = make_input(tmp_path, "song.wav", seconds=5.0)
    assert separate(tmp_path, tiny_repo, "--float32", "--clip-mode", "none", str(track)) == 0
    api = Separator("tiny", repo=tiny_repo, device="cpu", shifts=0).separate_file(track)
    for stem, path in stem_files(tmp_path, "song").items():
        streamed, _ = read_audio(path)
        assert np.abs(streamed - api[stem]).max() <= 1e-5


def test_resampled_streaming_equals_in_memory_api(tmp_path, tiny_repo):
    track = make_input(tmp_path, "song48.flac", rate=48000, seconds=3.0)
    assert separate(tmp_path, tiny_repo, "--float32", "--clip-mode", "none", str(track)) == 0
    api = Separator("tiny", repo=tiny_repo, device="cpu", shifts=0).separate_file(track)
    for stem, path in stem_files(tmp_path, "song48").items():
        streamed, rate = read_audio(path)
        assert rate == 48000 and streamed.shape == api[stem].shape
        assert np.abs(streamed - api[stem]).max() <= 1e-5


@pytest.mark.parametrize("options,subtype,extension", [([], "PCM_16", "wav"), (["--int24"], "PCM_24", "wav"),
                                                       (["--float32"], "FLOAT", "wav"),
                                                       (["--flac"], "PCM_16", "flac"),
                                                       (["--flac", "--int24"], "PCM_24", "flac")])
def test_output_formats(tmp_path, tiny_repo, options, subtype, extension):
    track = make_input(tmp_path, "song.wav")
    assert separate(tmp_path, tiny_repo, *options, str(track)) == 0
    files = stem_files(tmp_path, "song")
    assert all(path.suffix == f".{extension}" for path in files.values())
    assert soundfile.info(str(files["other"])).subtype == subtype


def test_mp3_output_bitrate_and_preset(tmp_path, tiny_repo):
    track = make_input(tmp_path, "song.wav", seconds=3.0)
    assert separate(tmp_path, tiny_repo, "--mp3", "--mp3-bitrate", "128", "--mp3-preset", "7", str(track)) == 0
    path = stem_files(tmp_path, "song")["drums"]
    assert path.suffix == ".mp3"
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        assert stream.codec_context.name.startswith("mp3") and stream.bit_rate == 128_000
    decoded, rate = read_audio(path)
    assert rate == 44100 and abs(decoded.shape[1] - 3 * 44100) < 3000


def test_two_stems_other_methods(tmp_path, tiny_repo):
    track = make_input(tmp_path, "song.wav")
    mix, _ = read_audio(track)
    for method, expected in [("add", ["no_vocals", "vocals"]), ("minus", ["no_vocals", "vocals"]),
                             ("none", ["vocals"])]:
        out = tmp_path / method
        assert stemforge_main(["separate", "-q", "--repo", str(tiny_repo), "-n", "tiny", "--shifts", "0",
                               "--float32", "--clip-mode", "none", "--two-stems", "vocals",
                               "--other-method", method, "-o", str(out), str(track)]) == 0
        files = sorted(p.stem for p in (out / "tiny" / "song").iterdir())
        assert files == expected
        if method == "minus":
            vocals, _ = read_audio(out / "tiny" / "song" / "vocals.wav")
            rest, _ = read_audio(out / "tiny" / "song" / "no_vocals.wav")
            assert np.abs(vocals + rest - mix).max() < 1e-4


def test_filename_template_and_refusal(tmp_path, tiny_repo):
    track = make_input(tmp_path, "song.wav")
    assert separate(tmp_path, tiny_repo, "--filename", "{stem}/{track}.{trackext}.{ext}", str(track)) == 0
    assert (tmp_path / "out" / "tiny" / "vocals" / "song.wav.wav").is_file()
    assert separate(tmp_path, tiny_repo, "--filename", "/etc/{stem}.{ext}", str(track)) == 2
    assert separate(tmp_path, tiny_repo, "--filename", "{nope}.{ext}", str(track)) == 2


def test_folder_recursive_with_a_bad_file_and_skip_existing(tmp_path, tiny_repo):
    folder = tmp_path / "music"
    (folder / "album").mkdir(parents=True)
    make_input(folder, "a.wav")
    make_input(folder / "album", "b.flac")
    (folder / "album" / "broken.mp3").write_bytes(b"\xff\xfb" + b"garbage" * 50)
    (folder / "cover.jpg").write_bytes(b"not audio, not an audio extension")
    assert separate(tmp_path, tiny_repo, str(folder)) == 2  # broken.mp3 failed
    assert sorted(stem_files(tmp_path, "a")) == STEMS and sorted(stem_files(tmp_path, "b")) == STEMS
    assert not stem_files(tmp_path, "broken")
    first = stem_files(tmp_path, "a")["bass"].stat().st_mtime_ns
    os.utime(stem_files(tmp_path, "a")["bass"], ns=(first - 10**9, first - 10**9))
    (folder / "album" / "broken.mp3").unlink()
    assert separate(tmp_path, tiny_repo, "--skip-existing", str(folder)) == 0
    assert stem_files(tmp_path, "a")["bass"].stat().st_mtime_ns == first - 10**9


def test_parallel_jobs_give_the_same_stems(tmp_path, tiny_repo):
    track = make_input(tmp_path, "song.wav", seconds=6.0)
    assert separate(tmp_path, tiny_repo, "--float32", "-j", "0", str(track)) == 0
    single = {k: read_audio(p)[0] for k, p in stem_files(tmp_path, "song").items()}
    for jobs in (["-j", "3"], []):  # explicit, and the default (one per core on CPU)
        assert separate(tmp_path, tiny_repo, "--float32", *jobs, str(track)) == 0
        for stem, path in stem_files(tmp_path, "song").items():
            # Same segments and weights; only the torch thread count (float summation order) differs.
            assert np.abs(read_audio(path)[0] - single[stem]).max() <= 1e-6


@pytest.mark.parametrize("cores, device, big, expected", [(2, "cpu", False, 2), (1, "cpu", False, 0),
                                                          (16, "cpu", False, 4), (8, "cuda", False, 0),
                                                          (8, "mps", False, 0), (2, "cpu", True, 0)])
def test_default_jobs_use_the_cpu_cores_for_small_models(monkeypatch, cores, device, big, expected):
    import os

    import torch

    from stemforge.inference import separator

    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    monkeypatch.setattr(separator, "AUTO_JOBS_MAX_PARAMETERS", 50 if big else 10_000_000)
    model = torch.nn.Linear(10, 10)  # 110 parameters
    assert separator.auto_jobs(model, device) == expected


def test_fast_mode_stays_close_to_exact(tmp_path, tiny_repo):
    track = make_input(tmp_path, "song.wav", seconds=3.0)
    assert separate(tmp_path, tiny_repo, "--float32", "--clip-mode", "none", str(track)) == 0
    exact = {k: read_audio(p)[0] for k, p in stem_files(tmp_path, "song").items()}
    assert separate(tmp_path, tiny_repo, "--float32", "--clip-mode", "none", "--fast", "bf16-transformer",
                    str(track)) == 0
    for stem, path in stem_files(tmp_path, "song").items():
        fast = read_audio(path)[0]
        sdr = 10 * np.log10((exact[stem] ** 2).sum() / max(((exact[stem] - fast) ** 2).sum(), 1e-20))
        assert sdr >= 30, (stem, sdr)
