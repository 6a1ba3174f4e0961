"""``stemforge separate``: the Demucs command line, with Demucs' defaults and output layout."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..pretrained.builtin import DEFAULT_MODEL
from . import collector

logger = logging.getLogger("stemforge.separate")

DEFAULT_TEMPLATE = "{track}/{stem}.{ext}"


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("separate", help="separate tracks into stems",
                                 description="Separate audio files (or folders of them) into stems.")
    parser.add_argument("tracks", nargs="+", type=Path, metavar="PATH",
                        help="audio/video files, or folders searched recursively for audio files")
    model = parser.add_argument_group("model")
    model.add_argument("-n", "--name", default=DEFAULT_MODEL,
                       help=f"model name, or a .th/.safetensors/.yaml path (default: {DEFAULT_MODEL})")
    model.add_argument("--repo", type=Path, help="folder of model files to resolve -n in (offline)")
    model.add_argument("-d", "--device", default=None, help="cpu, cuda or mps (default: best available)")
    cut = parser.add_argument_group("separation")
    cut.add_argument("--shifts", type=int, default=1,
                     help="random shifts averaged for equivariance (0: deterministic; default 1)")
    cut.add_argument("--seed", type=int, default=None, help="seed for the random shifts (repeatable runs)")
    cut.add_argument("--overlap", type=float, default=0.25, help="overlap between segments (default 0.25)")
    split = cut.add_mutually_exclusive_group()
    split.add_argument("--no-split", action="store_false", dest="split", default=True,
                       help="run the model on the whole track at once (uses a lot of memory)")
    split.add_argument("--segment", type=float, default=None, help="segment length in seconds")
    cut.add_argument("-j", "--jobs", type=int, default=None,
                     help="segments computed in parallel, each on its share of the cores (default: on "
                          "CPU one per core (at most 4) for small models, else 0: one at a time on all cores)")
    cut.add_argument("--fast", choices=["exact", "bf16-transformer", "bf16", "int8"], default="exact",
                     help="approximate faster modes (default exact = Demucs' output); on htdemucs bf16 "
                          "is the fastest (measured 2.1-2.6x the reference at 41 dB SDR to exact), "
                          "bf16-transformer the closest (54 dB)")
    cut.add_argument("--batch-size", type=int, default=None,
                     help="segments per forward pass (default: 1 on CPU, 4 on CUDA; halved on out-of-memory)")
    out = parser.add_argument_group("output")
    out.add_argument("-o", "--out", type=Path, default=Path("separated"),
                     help="output folder; a subfolder named after the model is made (default: separated)")
    out.add_argument("--filename", default=DEFAULT_TEMPLATE,
                     help="output file name template with {track} {trackext} {stem} {ext} "
                          f"(default: {DEFAULT_TEMPLATE})")
    out.add_argument("--two-stems", dest="stem", metavar="STEM",
                     help="write only STEM and no_STEM")
    out.add_argument("--other-method", choices=["add", "minus", "none"], default="add",
                     help="how no_STEM is made: sum of the other stems (add, default), mix minus STEM "
                          "(minus), or not written (none)")
    kind = out.add_mutually_exclusive_group()
    kind.add_argument("--flac", action="store_true", help="write flac")
    kind.add_argument("--mp3", action="store_true", help="write mp3")
    depth = out.add_mutually_exclusive_group()
    depth.add_argument("--int24", action="store_true", help="24-bit wav/flac")
    depth.add_argument("--float32", action="store_true", help="32-bit float wav")
    out.add_argument("--mp3-bitrate", type=int, default=320, help="mp3 bitrate in kbps (default 320)")
    out.add_argument("--mp3-preset", type=int, default=2, choices=range(2, 8), metavar="2..7",
                     help="mp3 encoder preset: 2 best quality (default) ... 7 fastest")
    out.add_argument("--clip-mode", default="rescale", choices=["rescale", "clamp", "none"],
                     help="avoid clipping by rescaling a stem (default), hard clamping, or not at all")
    out.add_argument("--samplerate", type=int, default=None,
                     help="sample rate of the stems (default: the input file's)")
    out.add_argument("--skip-existing", action="store_true",
                     help="skip tracks whose stems are all already written")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logs and tracebacks")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ..pretrained.resolve import model_display_name
    from .inputs import collect_tracks
    from .output import StemWriter

    fmt = validate_options(args)
    tracks, input_failures = collect_tracks(args.tracks)
    writer = StemWriter(args.out / model_display_name(args.name), args.filename, fmt, args.clip_mode)
    from ..allocator import limit_malloc_arenas, reuse_freed_pages

    # One heap for every thread, set before any worker thread exists: intra-op threads and
    # parallel segments would otherwise each keep their own arena at its peak (measured with
    # htdemucs on 30 s, default -j: 1376 -> see benchmarks/results/memory_*).
    limit_malloc_arenas(1)
    # Freed activations stay in the heap for the next segment instead of being unmapped and
    # faulted in again (htdemucs forward -22% with 2 threads; see stemforge.allocator).
    reuse_freed_pages()
    start_reading_model(args)
    with collector.startup() as started:  # objects made until the model is loaded live until exit
        from ..inference.separator import Separator  # imports torch (1-1.5 s)
        from ..pretrained import readahead

        separator = Separator(model=args.name, repo=args.repo, device=args.device, shifts=args.shifts,
                              overlap=args.overlap, split=args.split, segment=args.segment, seed=args.seed,
                              download_progress=not args.quiet, jobs=args.jobs, batch_size=args.batch_size,
                              fast=args.fast)
        readahead.clear()  # files read ahead but not loaded (e.g. a diffq bag) need not stay in memory
        started()
        with thread_budget(separator.jobs, args.device):
            return separate_all(args, separator, tracks, input_failures, writer)


HEAP_PER_CHECKPOINT_BYTE = 4
"""Heap grown ahead of the first forward per byte of the largest checkpoint read ahead. An
official htdemucs forward (168 MB file) first touches ~600 MB of heap and importing torch takes
~100 MB of the prefault: at 4x its first forward has ~700 page faults instead of ~150k (3x:
25-40k), and peak RSS does not grow (measured 1102-1121 MB on 30 s against 1127-1150 MB at 3x).
"""


def start_reading_model(args: argparse.Namespace) -> None:
    """Use the core left idle while torch is imported: read the model's checkpoint files, and
    grow the heap its first forward will need (an optimisation only: whatever goes wrong here
    is left for the real load to report)."""
    import threading

    from ..allocator import prefault_heap
    from ..pretrained.resolve import read_ahead

    try:
        files = read_ahead(args.name, args.repo)
        largest = max((file.stat().st_size for file in files), default=0)
    except Exception:  # noqa: BLE001 - see docstring
        logger.debug("model read-ahead not started", exc_info=True)
        return
    logger.debug("reading ahead: %s", ", ".join(map(str, files)) or "nothing")
    if largest:
        threading.Thread(target=prefault_heap, args=(HEAP_PER_CHECKPOINT_BYTE * largest,),
                         name="stemforge-prefault", daemon=True).start()


def separate_all(args: argparse.Namespace, separator, tracks: list[Path], input_failures: int, writer) -> int:
    from .errors import UserError

    if args.stem is not None and args.stem not in separator.sources:
        raise UserError(f'--two-stems: stem "{args.stem}" is not in this model; '
                        f'choose one of {", ".join(separator.sources)}')
    stems = output_stems(separator.sources, args.stem, args.other_method)
    failures = input_failures
    if args.skip_existing:
        skipped = [track for track in tracks if writer.all_exist(track, stems)]
        for track in skipped:
            logger.info("%s: stems already there, skipped", track)
        tracks = [track for track in tracks if track not in skipped]
    for track, prepared in prefetched(tracks, separator, args.quiet):
        if not separate_track(separator, track, prepared, writer, args):
            failures += 1
    total = len(tracks) + input_failures
    if failures and total > 1:
        logger.error("%d of %d inputs failed", failures, total)
    return 2 if failures else 0


def validate_options(args: argparse.Namespace):
    """Check option values before any work; returns the output format."""
    from ..audio.encode import OutputFormat
    from .errors import UserError

    if args.shifts < 0:
        raise UserError("--shifts must be 0 or more")
    if not 0 <= args.overlap < 1:
        raise UserError("--overlap must be at least 0 and less than 1")
    if args.segment is not None and args.segment <= 0:
        raise UserError("--segment must be a positive number of seconds")
    if args.jobs is not None and args.jobs < 0:
        raise UserError("--jobs must be 0 or more")
    if args.batch_size is not None and args.batch_size < 1:
        raise UserError("--batch-size must be 1 or more")
    if args.samplerate is not None and not 1000 <= args.samplerate <= 384000:
        raise UserError("--samplerate must be between 1000 and 384000 Hz")
    kind = "flac" if args.flac else "mp3" if args.mp3 else "wav"
    if args.float32 and kind != "wav":
        raise UserError("--float32 is for wav output only")
    try:
        return OutputFormat(kind=kind, bits=24 if args.int24 else 16, float32=args.float32,
                            mp3_bitrate=args.mp3_bitrate, mp3_preset=args.mp3_preset)
    except ValueError as error:
        raise UserError(str(error)) from None


def output_stems(sources: list[str], stem, other_method: str) -> list[str]:
    """Names of the files written per track."""
    if stem is None:
        return list(sources)
    return [stem] if other_method == "none" else [stem, f"no_{stem}"]


@contextmanager
def thread_budget(jobs: int, device) -> Iterator[None]:
    """With ``-j N`` on CPU, give each parallel segment its share of the cores (restored after)."""
    if jobs <= 1 or device not in (None, "cpu"):
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // jobs))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def progress_over(tracks: list[Path], quiet: bool):
    """Tracks, with an overall bar when there are several."""
    if len(tracks) < 2 or quiet:
        return tracks
    from tqdm import tqdm

    return tqdm(tracks, desc="tracks", unit="track", position=1, leave=False)


def prefetched(tracks: list[Path], separator, quiet: bool) -> Iterator[tuple[Path, Future]]:
    """``(track, future of its prepared input)``: the next file is decoded while this one separates."""
    from ..inference.streaming import prepare_input

    def prepare(track: Path):
        return prepare_input(track, separator.samplerate, separator.audio_channels)

    with ThreadPoolExecutor(1, thread_name_prefix="stemforge-decode") as pool:
        upcoming = pool.submit(prepare, tracks[0]) if tracks else None
        for index, track in enumerate(progress_over(tracks, quiet)):
            current = upcoming
            upcoming = pool.submit(prepare, tracks[index + 1]) if index + 1 < len(tracks) else None
            yield track, current
        if upcoming is not None:  # only when the loop was left early
            upcoming.cancel()


def separate_track(separator, track: Path, prepared: Future, writer, args: argparse.Namespace) -> bool:
    """Separate one file and write its stems; report a failure as one line and return False."""
    from ..inference.streaming import all_stems, separate_file, two_stems
    from .errors import describe
    from .progress import progress_bar

    mixer = all_stems(separator.sources) if args.stem is None else \
        two_stems(separator.sources, args.stem, args.other_method)
    try:
        prepared_input = prepared.result()
        seconds = prepared_input.input_frames / prepared_input.input_samplerate
        with progress_bar(seconds, desc=track.name, disable=args.quiet) as progress:
            separator.progress = progress
            paths = separate_file(separator, prepared_input, lambda stem: writer.stem_path(track, stem),
                                  writer.fmt, writer.clip_mode, mixer, args.samplerate)
    except Exception as error:  # noqa: BLE001 - one bad file must not stop the others
        logger.debug("failure on %s", track, exc_info=True)
        print(f"stemforge: error: {describe(error)}", file=sys.stderr)
        return False
    finally:
        separator.progress = None
    logger.info("%s -> %s", track, paths[0].parent if paths else "(nothing)")
    return True
