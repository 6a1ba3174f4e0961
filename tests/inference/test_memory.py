"""Streaming keeps memory flat: peak RSS barely grows from a short to a long file (tiny model)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

MEASURE = """
import resource, sys
from stemforge.cli.main import main
code = main(sys.argv[1:])
print("PEAK_KB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
sys.exit(code)
"""


def write_long_file(path: Path, minutes: float, rate: int = 44100) -> Path:
    """A long stereo file written block by block (never whole in memory)."""
    rng = np.random.default_rng(0)
    block = rate * 10
    with soundfile.SoundFile(str(path), "w", samplerate=rate, channels=2, subtype="PCM_16") as handle:
        for _ in range(int(minutes * 6)):
            t = np.arange(block) / rate
            tone = 0.2 * np.sin(2 * np.pi * rng.uniform(80, 800) * t)
            handle.write((np.stack([tone, tone[::-1]]) + rng.normal(0, 0.02, (2, block))).T.astype(np.float32))
    return path


def peak_rss_mb(track: Path, repo: Path, out: Path) -> float:
    result = subprocess.run([sys.executable, "-c", MEASURE, "separate", "-q", "--repo", str(repo), "-n", "tiny",
                             "--shifts", "0", "-o", str(out), str(track)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr
    line = [line for line in result.stdout.splitlines() if line.startswith("PEAK_KB")][0]
    return int(line.split()[1]) / 1024


@pytest.mark.slow
def test_peak_memory_does_not_grow_with_track_length(tmp_path, tiny_repo):
    short = write_long_file(tmp_path / "short.wav", 1)
    long = write_long_file(tmp_path / "long.wav", 20)
    short_peak = peak_rss_mb(short, tiny_repo, tmp_path / "out")
    long_peak = peak_rss_mb(long, tiny_repo, tmp_path / "out")
    print(f"peak RSS: 1 min {short_peak:.0f} MB, 20 min {long_peak:.0f} MB")
    # 19 more minutes of stereo float32 would be ~400 MB per copy if anything held the track.
    assert long_peak - short_peak < 60, (short_peak, long_peak)
    info = soundfile.info(str(tmp_path / "out" / "tiny" / "long" / "vocals.wav"))
    assert info.frames == 20 * 60 * 44100
