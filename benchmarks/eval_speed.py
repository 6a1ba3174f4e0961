"""Eval speed: stemforge's BSSEval v4 vs museval 0.4.1 on the same generated pairs.

Times ``stemforge.eval.metrics.bss_eval_v4`` and ``museval.metrics.bss_eval`` (museval's v4 settings:
1 s windows and hops, 512 taps, time-invariant filters) on S stems x N seconds of stereo audio,
prints both times, the ratio and the largest per-frame difference, and writes JSON + markdown under
``benchmarks/results/``.

    python benchmarks/eval_speed.py [--seconds 60] [--stems 4] [--repeat 1]

Needs museval 0.4.1 (``pip install museval==0.4.1``; its metrics module is loaded from its file, so
no ffmpeg is needed).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path
from types import ModuleType

import numpy as np

RATE = 44100
RESULTS = Path(__file__).resolve().parent / "results"


def load_museval_metrics() -> ModuleType:
    spec = importlib.util.find_spec("museval")
    if spec is None:
        sys.exit("museval is not installed: pip install museval==0.4.1")
    path = Path(list(spec.submodule_search_locations)[0]) / "metrics.py"
    module_spec = importlib.util.spec_from_file_location("_museval_metrics", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def make_pairs(stems: int, seconds: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """References ``(S, 2, T)``: tones over noise with a silent second; estimates: leakage from the
    next stem, a short filter, noise."""
    rng = np.random.default_rng(seed)
    n = int(seconds * RATE)
    t = np.arange(n) / RATE
    ref = 0.02 * rng.standard_normal((stems, 2, n))
    for s in range(stems):
        for _ in range(20):
            start = rng.uniform(0, seconds)
            env = np.exp(-np.clip(t - start, 0, None) * rng.uniform(0.5, 4)) * (t >= start)
            tone = 0.2 * np.sin(2 * np.pi * rng.uniform(40, 5000) * t) * env
            pan = rng.uniform(0.1, 0.9)
            ref[s, 0] += pan * tone
            ref[s, 1] += (1 - pan) * tone
    ref[0, :, 5 * RATE:6 * RATE] = 0          # a silent reference frame: NaN in both
    taps = np.array([0.8, 0.15, 0.05])
    est = 0.3 * np.roll(ref, 1, axis=0) + 0.05 * rng.standard_normal(ref.shape)
    for s in range(stems):
        for c in range(2):
            est[s, c] += np.convolve(ref[s, c], taps)[:n]
    return ref, est


def time_call(function, repeat: int):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, times


def compare(ours: dict, theirs: dict) -> tuple[float, bool]:
    worst, same_nan = 0.0, True
    for metric, want in theirs.items():
        got = ours[metric]
        same_nan &= bool(np.array_equal(np.isnan(got), np.isnan(want)))
        finite = np.isfinite(want) & np.isfinite(got)
        if finite.any():
            worst = max(worst, float(np.max(np.abs(got[finite] - want[finite]))))
    return worst, same_nan


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("stemforge", "numpy", "scipy", "torch", "museval"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "versions": versions,
            "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def markdown(report: dict) -> str:
    m, r = report["machine"], report["results"]
    rows = [
        "# Eval speed: stemforge vs museval 0.4.1",
        "",
        f"{report['setup']['stems']} stems x {report['setup']['seconds']} s stereo at {RATE} Hz, "
        "BSSEval v4 (1 s windows/hops, 512 taps), same pairs, same process.",
        "",
        "| | time (s) | ratio | max abs diff (dB) | same NaN frames |",
        "|---|---|---|---|---|",
        f"| museval 0.4.1 `metrics.bss_eval` | {r['museval_seconds']:.2f} | 1x | | |",
        f"| stemforge `bss_eval_v4` (+ SDX SDR) | {r['stemforge_seconds']:.2f} | "
        f"{r['speedup']:.1f}x faster | {r['max_abs_diff_db']:.2e} | {r['same_nan_frames']} |",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, Python {m['python']}; load average "
        f"at start {m['load_average_at_start']}.",
        f"Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}. Date: {m['date']}.",
        f"stemforge torch threads: {report['setup']['threads']}. Times are the best of "
        f"{report['setup']['repeat']} run(s) each.",
        "",
    ]
    return "\n".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--stems", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for stemforge (default 1)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from stemforge.eval.metrics import bss_eval_v4, sdx_sdr

    museval_metrics = load_museval_metrics()
    info = machine()
    ref, est = make_pairs(args.stems, args.seconds)

    def ours():
        scores = bss_eval_v4(ref, est, window=RATE, hop=RATE, threads=args.threads)
        sdx_sdr(ref, est)
        return scores.as_dict()

    def theirs():
        sdr, isr, sir, sar, _ = museval_metrics.bss_eval(
            ref.transpose(0, 2, 1), est.transpose(0, 2, 1), window=RATE, hop=RATE,
            compute_permutation=False, filters_len=512, framewise_filters=False,
            bsseval_sources_version=False)
        return {"SDR": sdr, "SIR": sir, "ISR": isr, "SAR": sar}

    print(f"{args.stems} stems x {args.seconds:g} s stereo; timing stemforge...", flush=True)
    our_scores, our_times = time_call(ours, args.repeat)
    print(f"stemforge: {min(our_times):.2f} s; timing museval...", flush=True)
    their_scores, their_times = time_call(theirs, args.repeat)
    worst, same_nan = compare(our_scores, their_scores)
    speedup = min(their_times) / min(our_times)
    print(f"museval:   {min(their_times):.2f} s")
    print(f"ratio:     {speedup:.1f}x faster")
    print(f"max abs difference: {worst:.3g} dB; same NaN frames: {same_nan}")

    report = {
        "setup": {"stems": args.stems, "seconds": args.seconds, "channels": 2, "samplerate": RATE,
                  "window": RATE, "hop": RATE, "filter_length": 512, "repeat": args.repeat,
                  "threads": args.threads},
        "machine": info,
        "results": {"stemforge_seconds": min(our_times), "museval_seconds": min(their_times),
                    "stemforge_all_seconds": our_times, "museval_all_seconds": their_times,
                    "speedup": speedup, "max_abs_diff_db": worst, "same_nan_frames": same_nan,
                    "frames": int(our_scores["SDR"].shape[1])},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval_speed.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "eval_speed.md").write_text(markdown(report))
    print(f"written: {args.out / 'eval_speed.json'}, {args.out / 'eval_speed.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
