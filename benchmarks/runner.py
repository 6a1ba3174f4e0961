"""Run the two command lines as subprocesses and measure them (wall time, peak RSS)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence


@dataclass
class Run:
    """One timed subprocess: wall seconds, CPU seconds (user + sys) and peak RSS in MB."""

    label: str
    argv: list[str]
    wall_s: float
    cpu_s: float
    peak_rss_mb: float
    returncode: int
    out_dir: Path | None = None
    extra: dict = field(default_factory=dict)


def run_measured(label: str, argv: Sequence[str], out_dir: Path | None = None,
                 env: dict[str, str] | None = None, log: Path | None = None) -> Run:
    """Run ``argv``; peak RSS of exactly this child comes from ``os.wait4`` (``ru_maxrss``)."""
    stdout = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(list(argv), stdout=stdout, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    finally:
        if log:
            stdout.close()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        tail = log.read_text()[-2000:] if log and log.exists() else ""
        raise RuntimeError(f"{label} failed with exit code {code}: {' '.join(argv)}\n{tail}")
    return Run(label=label, argv=list(argv), wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime,
               peak_rss_mb=usage.ru_maxrss / 1024, returncode=code, out_dir=out_dir)


def byte_compile(*packages: str) -> None:
    """Write the ``.pyc`` files a regular ``pip install`` writes, for both programs' packages.

    An editable install leaves them to the first import, and where ``PYTHONDONTWRITEBYTECODE`` is
    set (as on the development machine) every run compiles the sources again: ~0.05-0.1 s of
    stemforge's start-up there, while the reference, installed from a wheel, has its ``.pyc``.
    """
    import compileall
    import importlib.util

    for package in packages:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=1)


def reference_argv(repo: Path, name: str, out: Path, track: Path, jobs: int | None,
                   extra: Sequence[str] = ()) -> list[str]:
    argv = [sys.executable, "-m", "demucs.separate", "--repo", str(repo), "-n", name, "-d", "cpu",
            "--shifts", "0", "--float32", "-o", str(out)]
    if jobs is not None:
        argv += ["-j", str(jobs)]
    return argv + list(extra) + [str(track)]


def stemforge_argv(repo: Path, name: str, out: Path, track: Path, extra: Sequence[str] = ()) -> list[str]:
    exe = shutil.which("stemforge")
    head = [exe] if exe else [sys.executable, "-m", "stemforge.cli.main"]
    return head + ["separate", "-q", "--repo", str(repo), "-n", name, "-d", "cpu", "--shifts", "0",
                   "--float32", "-o", str(out), *extra, str(track)]
