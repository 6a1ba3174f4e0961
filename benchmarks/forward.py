"""Per-forward CPU time of our HTDemucs vs the reference, same process, same weights, same input.

One training segment (7.8 s stereo for the official configuration) per forward, alternating
reference / ours / (fast modes) for ``--reps`` rounds so that load changes on a shared machine hit
all of them alike; reports medians and ratios, and the max abs difference of the outputs.

    python benchmarks/forward.py [--threads 1] [--reps 5] [--model official|small] [--fast bf16 ...]
"""
from __future__ import annotations

import argparse
import logging
import time
from typing import Callable

import torch

from common import machine_info, markdown_table, median, publish, run_script, small_htdemucs_kwargs

logger = logging.getLogger("benchmarks.forward")


def build_pair(model: str, seed: int = 0, layer_scale: float | None = None):
    from demucs.htdemucs import HTDemucs as RefHTDemucs

    from stemforge.models.htdemucs import HTDemucs
    from tests.models.configs import official_htdemucs_kwargs, with_layer_scales

    kwargs = official_htdemucs_kwargs() if model == "official" else small_htdemucs_kwargs()
    torch.manual_seed(seed)
    ref = with_layer_scales(RefHTDemucs(**kwargs), layer_scale).eval()
    ours = HTDemucs(**kwargs).eval()
    ours.load_state_dict(ref.state_dict(), strict=True)
    return ref, ours, kwargs


def timed(fn: Callable[[torch.Tensor], torch.Tensor], mix: torch.Tensor
          ) -> tuple[float, float, torch.Tensor]:
    """Wall time, process CPU time (all threads; robust to other processes on a shared machine)
    and output of ``fn(mix)``."""
    cpu, wall = time.process_time(), time.perf_counter()
    out = fn(mix)
    return time.perf_counter() - wall, time.process_time() - cpu, out


def sdr(reference: torch.Tensor, estimate: torch.Tensor) -> float:
    """SDX-style SDR (dB) of ``estimate`` against ``reference`` over the whole tensor."""
    num = reference.double().pow(2).sum() + 1e-7
    den = (reference.double() - estimate.double()).pow(2).sum() + 1e-7
    return float(10 * torch.log10(num / den))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["official", "small"], default="official")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--fast", nargs="*", default=[], help="fast modes to time too (bf16, int8, ...)")
    parser.add_argument("--layer-scale", type=float, default=None,
                        help="set every LayerScale to this value (random init has 1e-4 / 1e-3, "
                             "which hides most of the transformer and DConv branches)")
    parser.add_argument("--name", default="forward", help="results file name (without extension)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    ref, ours, kwargs = build_pair(args.model, layer_scale=args.layer_scale)
    mix = torch.randn(1, 2, int(kwargs["segment"] * 44100), generator=torch.Generator().manual_seed(3))
    runners: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"reference": ref, "stemforge": ours}
    if args.fast:
        from stemforge.models.fast import make_fast

        for mode in args.fast:
            runners[f"stemforge-{mode}"] = make_fast(ours, mode)

    times: dict[str, list[float]] = {name: [] for name in runners}
    cpu_times: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, torch.Tensor] = {}
    with torch.inference_mode():
        for fn in runners.values():  # warm-up (allocator, caches, lazy inits)
            fn(mix)
        for rep in range(args.reps):
            for name, fn in runners.items():
                elapsed, cpu, out = timed(fn, mix)
                times[name].append(elapsed)
                cpu_times[name].append(cpu)
                outputs.setdefault(name, out)
            logger.info("rep %d: wall %s cpu %s", rep, {k: round(v[-1], 3) for k, v in times.items()},
                        {k: round(v[-1], 3) for k, v in cpu_times.items()})

    base = median(times["reference"])
    base_cpu = median(cpu_times["reference"])
    exact = outputs["stemforge"]
    rows = []
    for name in runners:
        t = median(times[name])
        cpu = median(cpu_times[name])
        rows.append({
            "model": name, "median_s": t, "min_s": min(times[name]),
            "speedup_vs_reference": base / t,
            "median_cpu_s": cpu, "cpu_speedup_vs_reference": base_cpu / cpu,
            "max_abs_diff_vs_reference": float((outputs[name] - outputs["reference"]).abs().max()),
            "sdr_vs_exact_db": None if name == "stemforge" or name == "reference" else sdr(exact, outputs[name]),
            "times_s": [round(v, 4) for v in times[name]],
            "cpu_times_s": [round(v, 4) for v in cpu_times[name]],
        })
    payload = {"benchmark": "forward", "model": args.model, "layer_scale": args.layer_scale, "config": {k: str(v) for k, v in kwargs.items()},
               "segment_samples": mix.shape[-1], "threads": args.threads, "reps": args.reps,
               "rows": rows, "machine": machine_info()}
    columns = ["model", "median_s", "min_s", "speedup_vs_reference", "median_cpu_s",
               "cpu_speedup_vs_reference", "max_abs_diff_vs_reference", "sdr_vs_exact_db"]
    table = markdown_table(rows, columns)
    scales = "" if args.layer_scale is None else f", all LayerScales set to {args.layer_scale:g}"
    markdown = (f"# Per-forward time, {args.model} HTDemucs config{scales}, one {mix.shape[-1] / 44100:.2f} s "
                f"segment, {args.threads} thread(s), median of {args.reps} alternating runs "
                f"(wall and process CPU time)\n\n{table}\n")
    return publish(args.name, payload, markdown)


if __name__ == "__main__":
    run_script(main)
