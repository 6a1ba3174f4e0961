"""How fast an exact (fp32) htdemucs can be on this machine: the compute floor, next to the
measured forwards of the reference and of stemforge, and the speed-up it allows.

1. Counts the floating-point operations of one forward of the official htdemucs configuration
   (one 7.8 s segment) with torch's ``FlopCounterMode``, plus the CPU flash-attention calls it
   does not count, split into the cross transformer and the rest (the two U-Nets, STFT, ...).
2. Measures the best fp32 matrix-multiply rate torch reaches here, at the same thread count, on
   the transformer's own GEMM shapes and on large square ones (best of several runs).
3. Times one forward of both models (same weights, same input, alternating ``--reps`` times) and
   the cross transformer inside each (forward hooks), with the heap settings ``stemforge separate``
   uses (one malloc arena, freed pages kept for reuse); they apply to the whole process, so to
   the reference too.
4. The floor of a forward is its FLOPs at that rate: no fp32 implementation does better, since
   every part would have to run at the machine's best GEMM rate with no memory-bound passes at
   all. Divided into the reference's measured forward, it bounds the forward speed-up.
5. With ``--cli-seconds`` (default 30) the reference CLI separates a generated track of that
   length, as in ``speed.py``; the bound for stemforge's CLI is ``import torch`` (measured in a
   subprocess) + the reference's number of segments x the forward floor (model loading, audio
   I/O and overlap-add are counted as free).

    python benchmarks/floor.py [--threads 2] [--reps 3] [--cli-seconds 30] [--layer-scale 0.5]
"""
from __future__ import annotations

import argparse
import logging
import math
import subprocess
import sys
import time

import torch

from stemforge.allocator import limit_malloc_arenas, reuse_freed_pages

from common import markdown_table, median, publish, run_script, work_directory
from forward import build_pair

logger = logging.getLogger("benchmarks.floor")

GEMM_SHAPES = [(2688, 512, 2048), (2688, 2048, 512), (2688, 512, 1536), (2048, 2048, 2048),
               (4096, 4096, 1024)]


def count_flops(model: torch.nn.Module, mix: torch.Tensor) -> dict[str, float]:
    """FLOPs of one forward: ``{"transformer": ..., "rest": ..., "total": ...}``."""
    from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

    def flash_for_cpu(query, key, value, *args, out_shape=None, **kwargs) -> int:
        return sdpa_flop_count(query, key, value)

    attention = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu
    counter = FlopCounterMode(display=False, depth=2, custom_mapping={attention: flash_for_cpu})
    with torch.inference_mode(), counter:
        model(mix)
    counts = counter.get_flop_counts()
    top = type(model).__name__
    total = sum(counts[top].values())
    transformer = sum(counts[f"{top}.crosstransformer"].values())
    return {"transformer": transformer, "rest": total - transformer, "total": total}


def gemm_peak(threads: int, reps: int = 5) -> tuple[float, list[dict]]:
    """The best fp32 ``torch.mm`` rate (FLOP/s) over :data:`GEMM_SHAPES`, best of ``reps``."""
    torch.set_num_threads(threads)
    rates = []
    generator = torch.Generator().manual_seed(0)
    for m, k, n in GEMM_SHAPES:
        a = torch.randn(m, k, generator=generator)
        b = torch.randn(k, n, generator=generator)
        torch.mm(a, b)
        best = math.inf
        for _ in range(reps):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
        rates.append({"shape": f"{m}x{k}x{n}", "gflop_s": 2 * m * k * n / best / 1e9})
    return max(r["gflop_s"] for r in rates) * 1e9, rates


class PartTimer:
    """Wall time of a submodule's forwards (pre/post hooks), accumulated until :meth:`take`."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.elapsed = 0.0
        self._start = 0.0
        module.register_forward_pre_hook(self._begin)
        module.register_forward_hook(self._end)

    def _begin(self, *_) -> None:
        self._start = time.perf_counter()

    def _end(self, *_) -> None:
        self.elapsed += time.perf_counter() - self._start

    def take(self) -> float:
        elapsed, self.elapsed = self.elapsed, 0.0
        return elapsed


def time_forwards(models: dict[str, torch.nn.Module], mix: torch.Tensor, reps: int
                  ) -> dict[str, dict[str, float]]:
    """Median forward and cross-transformer wall times per model, alternating the models."""
    timers = {name: PartTimer(model.crosstransformer) for name, model in models.items()}
    totals: dict[str, list[float]] = {name: [] for name in models}
    parts: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for name, model in models.items():  # warm-up
            model(mix)
            timers[name].take()
        for rep in range(reps):
            for name, model in models.items():
                start = time.perf_counter()
                model(mix)
                totals[name].append(time.perf_counter() - start)
                parts[name].append(timers[name].take())
            logger.info("rep %d: %s", rep, {n: round(t[-1], 3) for n, t in totals.items()})
    return {name: {"total": median(totals[name]), "transformer": median(parts[name]),
                   "rest": median(totals[name]) - median(parts[name])} for name in models}


def import_torch_seconds(reps: int = 3) -> float:
    """Median wall time of ``python -c 'import torch'`` (a floor every torch program pays)."""
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True)
        times.append(time.perf_counter() - start)
    return median(times)


def reference_cli_seconds(seconds: float, threads: int, layer_scale: float | None) -> float:
    """Wall time of the reference CLI (its default ``-j``) on a generated track, as speed.py."""
    from common import make_repo, write_music
    from runner import reference_argv, run_measured

    with work_directory(None, prefix="stemforge-floor-") as work:
        make_repo(work / "repo", "official", bag=False, layer_scale=layer_scale)
        track = write_music(work / "track.wav", seconds, seed=5)
        env = {"OMP_NUM_THREADS": str(threads)}
        run = run_measured("reference", reference_argv(work / "repo", "htdemucs", work / "out",
                                                       track, None), env=env)
    return run.wall_s


def reference_segments(seconds: float, segment: float, overlap: float = 0.25) -> int:
    """How many forwards the reference (and stemforge's engine) runs on ``seconds`` of audio."""
    from stemforge.inference.chunking import SegmentPlan

    plan = SegmentPlan.split(round(seconds * 44100), round(segment * 44100), overlap)
    return len(plan.offsets())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--cli-seconds", type=float, default=30.0,
                        help="also time the reference CLI on this long a track (0: skip)")
    parser.add_argument("--layer-scale", type=float, default=0.5)
    parser.add_argument("--name", default="floor")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    limit_malloc_arenas(1)
    reuse_freed_pages()

    ref, ours, kwargs = build_pair("official", layer_scale=args.layer_scale)
    segment = float(kwargs["segment"])
    mix = torch.randn(1, 2, int(segment * 44100), generator=torch.Generator().manual_seed(3))
    flops = count_flops(ours, mix)
    peak, gemm_rates = gemm_peak(args.threads)
    times = time_forwards({"reference": ref, "stemforge": ours}, mix, args.reps)
    rows = []
    for part in ("transformer", "rest", "total"):
        floor_s = flops[part] / peak
        rows.append({
            "part": {"transformer": "cross transformer", "rest": "U-Nets, STFT, rest",
                     "total": "whole forward"}[part],
            "gflop": flops[part] / 1e9, "floor_s": floor_s,
            "reference_s": times["reference"][part], "stemforge_s": times["stemforge"][part],
            "stemforge_gflop_s": flops[part] / times["stemforge"][part] / 1e9,
            "stemforge_vs_floor": times["stemforge"][part] / floor_s,
            "max_speedup_vs_reference": times["reference"][part] / floor_s,
            "stemforge_speedup_vs_reference": times["reference"][part] / times["stemforge"][part],
        })
    payload = {"benchmark": "floor", "threads": args.threads, "reps": args.reps,
               "layer_scale": args.layer_scale, "flops": flops, "gemm_peak_gflop_s": peak / 1e9,
               "gemm_rates": gemm_rates, "forward_times": times, "rows": rows}
    cli = ""
    if args.cli_seconds:
        segments = reference_segments(args.cli_seconds, segment)
        torch_import = import_torch_seconds()
        ref_cli = reference_cli_seconds(args.cli_seconds, args.threads, args.layer_scale)
        cli_floor = torch_import + segments * flops["total"] / peak
        payload["cli"] = {"seconds": args.cli_seconds, "segments": segments,
                          "import_torch_s": torch_import, "reference_cli_s": ref_cli,
                          "stemforge_cli_floor_s": cli_floor,
                          "max_cli_speedup": ref_cli / cli_floor}
        cli = (f"\n\nCLI on {args.cli_seconds:g} s: the reference takes {ref_cli:.2f} s at its "
               f"default -j ({segments} forwards); an fp32 stemforge cannot take less than "
               f"import torch {torch_import:.2f} s + {segments} x {flops['total'] / peak:.3f} s "
               f"= {cli_floor:.2f} s (loading, audio I/O and overlap-add counted as free), so at "
               f"most **{ref_cli / cli_floor:.2f}x** the reference.")
    columns = ["part", "gflop", "floor_s", "reference_s", "stemforge_s", "stemforge_gflop_s",
               "stemforge_vs_floor", "max_speedup_vs_reference", "stemforge_speedup_vs_reference"]
    rates = ", ".join(f"{r['shape']} {r['gflop_s']:.0f}" for r in gemm_rates)
    markdown = (f"# fp32 compute floor of one official-htdemucs forward ({mix.shape[-1] / 44100:.2f} s "
                f"segment), {args.threads} thread(s), median of {args.reps}\n\n"
                f"floor_s: the part's FLOPs at this machine's best fp32 GEMM rate, "
                f"{peak / 1e9:.0f} GFLOP/s (torch.mm, best of 5; {rates} GFLOP/s). "
                f"max_speedup_vs_reference: the reference's measured time over that floor, the most "
                f"any exact fp32 implementation can gain on it.\n\n"
                f"{markdown_table(rows, columns)}{cli}\n")
    return publish(args.name, payload, markdown)


if __name__ == "__main__":
    run_script(main)
