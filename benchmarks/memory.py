"""Memory: peak RSS of ``stemforge separate`` and ``python -m demucs.separate`` vs input length.

Both programs separate generated stereo tracks of each ``--durations`` (minutes) with the same
checkpoint (``--model small``: a small htdemucs-structured model so that hour-long runs finish;
``official``: the official configuration), ``--shifts 0 --float32``; peak RSS of each subprocess
comes from ``wait4``. Reports peak RSS per duration, its growth from the shortest to the longest
input, and the wall times.

    python benchmarks/memory.py [--durations 1 10 60] [--model small|official]
                                [--programs stemforge reference] [--stemforge-args "..."]
"""
from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path
from typing import Callable

from common import make_repo, markdown_table, publish, run_script, work_directory, write_music
from runner import reference_argv, run_measured, stemforge_argv

logger = logging.getLogger("benchmarks.memory")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--durations", type=float, nargs="+", default=[1, 10, 60],
                        help="input durations in minutes (issue 7 asks 5 30 60)")
    parser.add_argument("--model", choices=["small", "official"], default="small")
    parser.add_argument("--programs", nargs="+", choices=["stemforge", "reference"],
                        default=["stemforge", "reference"])
    parser.add_argument("--stemforge-args", default="", help="extra stemforge separate arguments")
    parser.add_argument("--reference-jobs", type=int, default=None, help="reference -j (default: its own)")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for both programs (0: leave unset, the programs' "
                             "defaults). Peak RSS does depend on it: stemforge on a 30 s track "
                             "peaked at 1214 MB with 1 thread and 1376 MB with the default 2")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    parser.add_argument("--name", default="memory", help="results file name")
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, work: Path,
            on_row: Callable[[list[dict]], object] = lambda rows: None) -> list[dict]:
    repo = work / "repo"
    make_repo(repo, args.model, bag=False)
    rows = []
    for minutes in sorted(args.durations):
        track = write_music(work / f"track_{minutes:g}min.wav", minutes * 60, seed=11)
        for program in args.programs:
            out = work / f"out-{program}-{minutes:g}"
            if program == "reference":
                argv = reference_argv(repo, "htdemucs", out, track, args.reference_jobs)
            else:
                argv = stemforge_argv(repo, "htdemucs", out, track, shlex.split(args.stemforge_args))
            env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else None
            run = run_measured(program, argv, env=env, log=out.with_suffix(".log"))
            logger.info("%s %g min: %.0f MB peak, %.1f s", program, minutes, run.peak_rss_mb, run.wall_s)
            rows.append({"program": program, "minutes": minutes, "peak_rss_mb": run.peak_rss_mb,
                         "wall_s": run.wall_s, "rtf": run.wall_s / (minutes * 60), "argv": run.argv})
            on_row(rows)
        track.unlink()  # hour-long wavs are large: keep only one on disk at a time
    return rows


def growth(rows: list[dict]) -> list[dict]:
    """Per program: peak RSS growth from the shortest to the longest duration."""
    summary = []
    for program in dict.fromkeys(r["program"] for r in rows):
        mine = sorted((r for r in rows if r["program"] == program), key=lambda r: r["minutes"])
        first, last = mine[0], mine[-1]
        span = last["minutes"] - first["minutes"]
        summary.append({
            "program": program, "from_min": first["minutes"], "to_min": last["minutes"],
            "growth_mb": last["peak_rss_mb"] - first["peak_rss_mb"],
            "mb_per_audio_minute": (last["peak_rss_mb"] - first["peak_rss_mb"]) / span if span else None,
        })
    return summary


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    with work_directory(args.workdir, prefix="stemforge-memory-") as work:
        rows = measure(args, work, on_row=lambda rows: report(args, rows))
    return report(args, rows, final=True)


def report(args: argparse.Namespace, rows: list[dict], final: bool = False) -> dict:
    summary = growth(rows)
    payload = {"benchmark": "memory", "model_config": args.model, "durations_min": args.durations,
               "omp_num_threads": args.threads or None,
               "stemforge_args": args.stemforge_args, "rows": rows, "growth": summary}
    markdown = (f"# Peak RSS vs input length, {args.model} htdemucs config (random weights), "
                f"--shifts 0 --float32, CPU, OMP_NUM_THREADS={args.threads or 'unset'}\n\n"
                f"{markdown_table(rows, ['program', 'minutes', 'peak_rss_mb', 'wall_s', 'rtf'])}\n\n"
                f"## Growth\n\n"
                f"{markdown_table(summary, ['program', 'from_min', 'to_min', 'growth_mb', 'mb_per_audio_minute'])}\n")
    return publish(args.name, payload, markdown, show=final)


if __name__ == "__main__":
    run_script(main)
