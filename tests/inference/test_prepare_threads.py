"""Preparing an input must not leave other threads busy when the first forward starts.

A numpy BLAS call (``np.dot``) in the input statistics woke OpenBLAS's worker thread, which then
spun for ~0.1 s on one of the two cores the first model forward needed.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile

from tests.conftest import make_music

SCRIPT = r"""
import os, sys, threading, time
from pathlib import Path
import numpy  # starts OpenBLAS's worker threads
from stemforge.inference.streaming import prepare_input

def other_threads_ticks():
    me = threading.get_native_id()
    total = 0
    for tid in os.listdir("/proc/self/task"):
        if int(tid) == me:
            continue
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime + stime, in clock ticks
    return total

before = other_threads_ticks()
prepare_input(Path(sys.argv[1]), 44100, 2).close()
time.sleep(0.3)
print(other_threads_ticks() - before)
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_preparing_an_input_leaves_no_thread_spinning(tmp_path):
    track = tmp_path / "track.wav"
    soundfile.write(str(track), make_music(30.0).T, 44100, subtype="PCM_16")
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(track)], check=True, capture_output=True,
                         text=True, env={**os.environ, "OPENBLAS_NUM_THREADS": "2"})
    ticks = int(out.stdout.strip())
    assert ticks <= 3, f"other threads used {ticks} clock ticks after the input was prepared"
