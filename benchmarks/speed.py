"""Speed: ``stemforge separate`` vs ``python -m demucs.separate`` on the same checkpoint and file.

Both programs run as subprocesses in the same run on the same machine, on the same generated
stereo track, with ``--shifts 0 --float32`` and the same model folder (``--repo``): the official
htdemucs configuration with random weights (``htdemucs``) and optionally a bag of four such models
(``bag4``). The reference runs at its default ``-j`` and at each ``--jobs`` value (its best is
reported). Rounds alternate between the programs; medians are reported.

    python benchmarks/speed.py [--seconds 30] [--rounds 1] [--no-bag] [--jobs 1 2]
                               [--stemforge-args "--some-flag"] [--model official|small]
"""
from __future__ import annotations

import argparse
import logging
import shlex
from pathlib import Path

from common import (make_repo, markdown_table, max_stem_difference, median, publish, run_script,
                    stems_sdr_db, work_directory, write_music)
from runner import byte_compile, reference_argv, run_measured, stemforge_argv

logger = logging.getLogger("benchmarks.speed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="input duration (>= 30)")
    parser.add_argument("--model", choices=["official", "small"], default="official")
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds (median)")
    parser.add_argument("--no-bag", action="store_true", help="skip the 4-model bag")
    parser.add_argument("--jobs", type=int, nargs="*", default=[2],
                        help="reference -j values to try besides its default")
    parser.add_argument("--stemforge-args", default="", help="extra stemforge separate arguments")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=ARGS",
                        help="additional stemforge configurations, e.g. 'fast=--fast bf16'")
    parser.add_argument("--threads", type=int, default=0,
                        help="OMP_NUM_THREADS for both programs (default 0: unset, their defaults)")
    parser.add_argument("--layer-scale", type=float, default=None,
                        help="set every LayerScale of the random models (e.g. 0.5: trained-like "
                             "residual branches, so that fast modes' SDR is not flattered)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here")
    parser.add_argument("--name", default="speed", help="results file name")
    return parser.parse_args(argv)


def configurations(args: argparse.Namespace) -> list[tuple[str, str, object]]:
    """``(label, program, jobs-or-extra-args)`` in the order they run within a round."""
    configs: list[tuple[str, str, object]] = [("reference -j default", "reference", None)]
    configs += [(f"reference -j {j}", "reference", j) for j in args.jobs]
    configs.append(("stemforge", "stemforge", shlex.split(args.stemforge_args)))
    for variant in args.variant:
        label, _, extra = variant.partition("=")
        configs.append((f"stemforge {label}", "stemforge",
                        shlex.split(args.stemforge_args) + shlex.split(extra)))
    return configs


def measure_model(name: str, repo: Path, track: Path, work: Path, args: argparse.Namespace,
                  seconds: float) -> list[dict]:
    runs: dict[str, list] = {}
    for round_index in range(args.rounds):
        for label, program, option in configurations(args):
            out = work / f"out-{name}-{label.replace(' ', '_')}-{round_index}"
            if program == "reference":
                argv = reference_argv(repo, name, out, track, option)
            else:
                argv = stemforge_argv(repo, name, out, track, option)
            env = {"OMP_NUM_THREADS": str(args.threads)} if args.threads else None
            run = run_measured(label, argv, out_dir=out / name / track.stem, env=env,
                               log=out.with_suffix(".log"))
            logger.info("%s %s round %d: %.2f s wall, %.0f MB peak", name, label, round_index,
                        run.wall_s, run.peak_rss_mb)
            runs.setdefault(label, []).append(run)
    return summarise(name, runs, seconds)


def summarise(name: str, runs: dict[str, list], seconds: float) -> list[dict]:
    reference_default = runs["reference -j default"][0].out_dir
    ref_labels = [label for label in runs if label.startswith("reference")]
    best_ref = min(ref_labels, key=lambda label: median(r.wall_s for r in runs[label]))
    base_default = median(r.wall_s for r in runs["reference -j default"])
    base_best = median(r.wall_s for r in runs[best_ref])
    rows = []
    for label, measured in runs.items():
        wall = median(r.wall_s for r in measured)
        rows.append({
            "model": name, "program": label, "wall_s": wall, "rtf": wall / seconds,
            "cpu_s": median(r.cpu_s for r in measured),
            "peak_rss_mb": max(r.peak_rss_mb for r in measured),
            "speedup_vs_ref_default": base_default / wall,
            "speedup_vs_ref_best": base_best / wall,
            "max_abs_diff_vs_ref": max_stem_difference(reference_default, measured[0].out_dir),
            "sdr_vs_ref_db": stems_sdr_db(reference_default, measured[0].out_dir),
            "walls_s": [round(r.wall_s, 3) for r in measured],
            "argv": measured[0].argv,
        })
    for row in rows:
        row["reference_best"] = best_ref
    return rows


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    byte_compile("stemforge", "demucs")
    with work_directory(args.workdir, prefix="stemforge-speed-") as work:
        repo = work / "repo"
        models = make_repo(repo, args.model, bag=not args.no_bag, layer_scale=args.layer_scale)
        track = write_music(work / "track.wav", args.seconds, seed=5)
        rows: list[dict] = []
        for name in models:
            rows += measure_model(name, repo, track, work, args, args.seconds)
            report(args, models, rows)  # partial results survive an interrupted long run
    return report(args, models, rows, final=True)


def report(args: argparse.Namespace, models: dict, rows: list[dict], final: bool = False) -> dict:
    payload = {"benchmark": "speed", "seconds": args.seconds, "model_config": args.model,
               "models": models, "rounds": args.rounds, "layer_scale": args.layer_scale, "omp_num_threads": args.threads or None, "stemforge_args": args.stemforge_args,
               "variants": args.variant, "rows": rows}
    columns = ["model", "program", "wall_s", "rtf", "cpu_s", "peak_rss_mb", "speedup_vs_ref_default",
               "speedup_vs_ref_best", "max_abs_diff_vs_ref", "sdr_vs_ref_db"]
    markdown = (f"# Separation speed, {args.seconds:g} s stereo 44.1 kHz, {args.model} htdemucs config "
                f"(random weights{'' if args.layer_scale is None else f', LayerScales {args.layer_scale:g}'}), --shifts 0 --float32, CPU, median of {args.rounds} round(s)\n\n"
                f"Speed-ups are reference wall time / program wall time, measured in the same run. "
                f"max_abs_diff_vs_ref: largest sample difference of the stems vs the reference at "
                f"its default settings; sdr_vs_ref_db: SDR of the stems against the reference's (how "
                f"far a fast mode is from the exact output).\n\n{markdown_table(rows, columns)}\n")
    return publish(args.name, payload, markdown, show=final)


if __name__ == "__main__":
    run_script(main)
