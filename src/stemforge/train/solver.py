"""The training loop, top to bottom: data, model, step, validation, checkpoints.

``train(config, out_dir)`` runs (or resumes) a training run in ``out_dir``:

- ``checkpoint.th``: everything needed to continue exactly (model, optimiser, EMA, RNG states of
  python/numpy/torch for every rank, step, epoch, position in the epoch, the epoch's song list,
  history). Written atomically (temporary file + rename) by rank 0 every
  ``train.checkpoint_minutes``, every ``train.checkpoint_every_steps``, at the end of each epoch,
  when ``max_steps`` is reached and on SIGTERM/SIGINT (single process).
- ``best.safetensors``: the best validated weights (raw or EMA) in the stemforge format.
- ``history.json``, ``config.yaml``: for people.

An epoch is ``data.examples_per_epoch`` random segments; training songs are rescanned at the start
of every epoch (a dataset still being rendered grows between epochs). Each example is a pure
function of (seed, epoch, index), and the augmentations draw from the saved torch RNG, so a
resumed run continues exactly as if it had never stopped.

Validation runs the real inference engine (:class:`stemforge.inference.separator.Separator`) on
full songs and scores them with the SDX challenge SDR; the mean over sources selects the best model.
"""
from __future__ import annotations

import copy
import json
import logging
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..atomic import atomic_path
from ..data.augment import Repitch, build_augment
from ..data.datasets import (DatasetError, StemSegments, Track, find_tracks, load_mixture,
                             load_stems, read_track)
from . import distributed as D
from .config import Config, ConfigError, save_config
from .ema import EMA
from .losses import build_loss

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.th"
BEST = "best.safetensors"
HISTORY = "history.json"
CHECKPOINT_FORMAT = "stemforge-train/1"


# ---------------------------------------------------------------------------------------------
# Model construction


def model_header(model: nn.Module) -> str:
    """JSON description (arch + constructor config) to rebuild ``model`` from."""
    from ..pretrained.checkpoint import stemforge_header

    return json.dumps(stemforge_header(model))


def model_from_header(header: str) -> nn.Module:
    from ..models.registry import build_model
    from ..pretrained.checkpoint import decode_config

    values = decode_config(json.loads(header))
    return build_model(values["arch"], values["config"])


def build_from_config(config: Config) -> nn.Module:
    """A fresh model from ``config.model``, filling ``sources``, ``samplerate``, ``audio_channels``
    and ``segment`` from ``config.data`` when the architecture takes them."""
    import inspect

    from ..models.registry import build_model, model_class

    accepted = inspect.signature(model_class(config.model.arch).__init__).parameters
    kwargs = dict(config.model.kwargs)
    defaults = {"sources": list(config.data.sources), "samplerate": config.data.samplerate,
                "audio_channels": config.data.channels}
    if config.data.segment is not None:
        defaults["segment"] = config.data.segment
    for key, value in defaults.items():
        if key in accepted:
            kwargs.setdefault(key, value)
    return build_model(config.model.arch, kwargs, strict=True)


def model_for_finetuning(name_or_path: str, config: Config) -> nn.Module:
    """The single model behind ``name_or_path`` (any loadable model), checked against the data."""
    from ..models.bag import ModelBag
    from ..pretrained.resolve import load_model

    model = load_model(name_or_path)
    if isinstance(model, ModelBag):
        if len(model.models) != 1:
            raise ConfigError(f"--init {name_or_path}: a bag of {len(model.models)} models; "
                              "fine-tuning needs a single model (pass one of its files)")
        model = model.models[0]
    if list(model.sources) != list(config.data.sources):
        raise ConfigError(f"--init model has stems {list(model.sources)} but data.sources is "
                          f"{list(config.data.sources)}; set data.sources to match")
    if int(model.samplerate) != config.data.samplerate:
        raise ConfigError(f"--init model works at {model.samplerate} Hz but data.samplerate is "
                          f"{config.data.samplerate}")
    return model


def training_length(model: nn.Module, config: Config) -> int:
    """Frames per training example: ``data.segment`` or the model's own segment (seconds)."""
    seconds = config.data.segment if config.data.segment is not None else getattr(model, "segment", None)
    if seconds is None:
        raise ConfigError("data.segment is not set and the model has no segment")
    return int(seconds * config.data.samplerate)


# ---------------------------------------------------------------------------------------------
# RNG states


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch (CPU and CUDA) generator states, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(),
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# Checkpoint files


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename over ``path``."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """A training checkpoint written by :class:`Solver` (plain data and tensors only)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ConfigError(f"{path} is not a stemforge training checkpoint")
    return state


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


# ---------------------------------------------------------------------------------------------
# Validation


@dataclass
class ValidSong:
    name: str
    mix: torch.Tensor  # (C, T)
    stems: torch.Tensor  # (S, C, T)


def load_valid_songs(tracks: list[Track], sources: list[str], channels: int) -> list[ValidSong]:
    return [ValidSong(t.name, load_mixture(t, sources, channels), load_stems(t, sources, channels))
            for t in tracks]


def score_songs(model: nn.Module, songs: list[ValidSong], device: torch.device, overlap: float,
                shifts: int) -> dict[str, Any]:
    """Mean SDX SDR per source over ``songs`` separated by the real engine, and their mean."""
    from ..eval.metrics import sdx_sdr
    from ..inference.separator import Separator

    separator = Separator(model, device=str(device), shifts=shifts, overlap=overlap, seed=0)
    per_song = []
    with torch.no_grad():
        for song in songs:
            estimate = separator.separate_tensor(song.mix)
            per_song.append(sdx_sdr(song.stems, estimate))
    means = np.mean(np.stack(per_song), axis=0)
    sdr = {name: float(v) for name, v in zip(model.sources, means)}
    return {"sdr": sdr, "score": float(np.mean(means)), "songs": len(songs)}


# ---------------------------------------------------------------------------------------------
# Progress state


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    epoch_tracks: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Stopper:
    """Turns SIGTERM/SIGINT into a request to checkpoint and stop between steps."""

    requested: bool = False
    _previous: dict[int, Any] = field(default_factory=dict)

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread
                pass

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second signal: stop now
            raise KeyboardInterrupt
        logger.warning("signal %d: saving a checkpoint and stopping after this step", signum)
        self.requested = True

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# ---------------------------------------------------------------------------------------------
# The solver


class Solver:
    """One training run in ``out_dir`` (see the module docstring)."""

    def __init__(self, config: Config, out_dir: Path, model: nn.Module, info: D.DistInfo,
                 device: torch.device, quiet: bool = False, init_source: Optional[str] = None):
        self.config = config
        self.out_dir = out_dir
        self.info = info
        self.device = device
        self.quiet = quiet
        self.init_source = init_source
        self.model = model.to(device)
        self.header = model_header(model)
        self.length = training_length(model, config)
        self.augment = self._build_augment().to(device)
        self.load_length = self._load_length()
        self.dmodel = D.wrap(self.model, info, device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr,
                                          betas=(config.optim.beta1, config.optim.beta2),
                                          weight_decay=config.optim.weight_decay)
        self.loss_fn = build_loss(config.optim.loss)
        self.ema = EMA(self.model, config.train.ema_decay) if config.train.ema_decay > 0 else None
        self.progress = Progress()
        self.history: list[dict[str, Any]] = []
        self.best: Optional[dict[str, Any]] = None
        self.holdout: list[str] = []
        self.valid_names: list[str] = []
        self.valid_from = config.data.valid_split
        self._valid_cache: Optional[list[ValidSong]] = None
        self._extra_cache: Optional[list[ValidSong]] = None
        self._last_save = time.monotonic()
        self._recent_losses: list[float] = []  # for logs only (not saved)
        self.stopper = Stopper()

    # -- setup --------------------------------------------------------------------------------

    @property
    def root(self) -> Path:
        if self.config.data.root is None:
            raise ConfigError("no dataset: set data.root in the config or pass --data DIR")
        return Path(self.config.data.root)

    def _build_augment(self) -> nn.Module:
        a = self.config.augment
        return build_augment(shift=int(a.shift * self.config.data.samplerate),
                             flip_channels=a.flip_channels, flip_sign=a.flip_sign,
                             scale_prob=a.scale_prob, scale_low=a.scale_low, scale_high=a.scale_high,
                             remix_prob=a.remix_prob, remix_group=a.remix_group,
                             repitch_prob=a.repitch_prob, repitch_semitones=a.repitch_semitones)

    def _load_length(self) -> int:
        """Frames to read per example so that the augmentations leave ``self.length``."""
        a = self.config.augment
        frames = self.length + int(a.shift * self.config.data.samplerate)
        if a.repitch_prob > 0:
            frames = Repitch.input_length(frames, a.repitch_semitones)
        return frames

    def choose_valid_songs(self) -> None:
        """Validation songs: the first ``valid.songs`` of the valid split, or held-out train songs."""
        sources = self.config.data.sources
        count = self.config.valid.songs
        if count <= 0 or self.config.valid.every <= 0:
            return
        tracks = find_tracks(self.root, self.config.data.valid_split, sources)[:count]
        if tracks:
            self.valid_names = [t.name for t in tracks]
            self.valid_from = self.config.data.valid_split
            return
        if not self.config.valid.holdout:
            logger.warning("no songs in %s/%s: training without validation", self.root,
                           self.config.data.valid_split)
            return
        train = find_tracks(self.root, self.config.data.train_split, sources)
        if len(train) <= count:
            raise DatasetError(f"{self.root}: no valid split and too few train songs to hold "
                               f"out {count} for validation")
        self.holdout = [t.name for t in train[:count]]
        self.valid_names = list(self.holdout)
        self.valid_from = self.config.data.train_split
        logger.info("no valid split yet: holding out %d train songs for validation (%s…)",
                    count, self.holdout[0])

    # -- state --------------------------------------------------------------------------------

    def state_dict(self, rng: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": self.config.to_dict(),
            "model_header": self.header,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": rng,
            "progress": self.progress.as_dict(),
            "history": self.history,
            "best": self.best,
            "valid": {"names": self.valid_names, "split": self.valid_from, "holdout": self.holdout},
            "init": self.init_source,
            "world_size": self.info.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.progress = Progress(**state["progress"])
        self.history = list(state["history"])
        self.best = state["best"]
        valid = state["valid"]
        self.valid_names, self.valid_from, self.holdout = valid["names"], valid["split"], valid["holdout"]
        self.init_source = state.get("init")
        rngs = state["rng"]
        if len(rngs) == self.info.world_size:
            set_rng_state(rngs[self.info.rank])
        else:
            logger.warning("checkpoint was written by %d processes, now %d: RNG streams reseeded",
                           len(rngs), self.info.world_size)
            set_rng_state(rngs[0])
            seed_all(self.config.train.seed + 1000 * self.progress.step + self.info.rank)

    def save_checkpoint(self) -> None:
        """Every rank contributes its RNG state; rank 0 writes the file atomically."""
        rngs = D.gather_objects(rng_state(), self.info)
        if self.info.is_main:
            atomic_torch_save(self.state_dict(rngs), self.out_dir / CHECKPOINT)
            logger.debug("checkpoint at step %d", self.progress.step)
        self._last_save = time.monotonic()

    def _checkpoint_due(self) -> bool:
        t = self.config.train
        due = (t.checkpoint_every_steps > 0 and self.progress.step % t.checkpoint_every_steps == 0)
        due = due or (time.monotonic() - self._last_save >= t.checkpoint_minutes * 60)
        return D.broadcast_flag(due or self.stopper.requested, self.info)

    # -- data ---------------------------------------------------------------------------------

    def epoch_tracks(self) -> list[Track]:
        """Songs for the current epoch: rescanned at its start, the recorded list when resuming."""
        data = self.config.data
        folder = self.root / data.train_split
        if self.progress.batch_in_epoch > 0 and self.progress.epoch_tracks:
            tracks = [read_track(folder / name, data.sources) for name in self.progress.epoch_tracks]
            missing = [n for n, t in zip(self.progress.epoch_tracks, tracks) if t is None]
            if missing:
                raise DatasetError(f"songs of the interrupted epoch are gone: {', '.join(missing[:5])}")
            return [t for t in tracks if t is not None]
        tracks = find_tracks(self.root, data.train_split, data.sources, exclude=self.holdout)
        if not tracks:
            raise DatasetError(f"no complete songs in {folder} (one folder per song with "
                               f"{', '.join(data.sources)} audio files)")
        self.progress.epoch_tracks = [t.name for t in tracks]
        return tracks

    def epoch_batches(self, dataset: StemSegments) -> list[list[int]]:
        sampler = D.sampler(dataset, self.info, self.config.train.seed)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(self.progress.epoch)
        indices = list(sampler)
        size = self.config.train.batch_size
        return [indices[i:i + size] for i in range(0, len(indices) - size + 1, size)]

    # -- training -----------------------------------------------------------------------------

    def _lr(self) -> float:
        warmup = self.config.optim.warmup_steps
        scale = min(1.0, (self.progress.step + 1) / warmup) if warmup > 0 else 1.0
        return self.config.optim.lr * scale

    def train_step(self, batch: torch.Tensor) -> float:
        """One optimiser step on ``batch: (B, S, C, T_load)`` stems; returns the loss."""
        stems = self.augment(batch.to(self.device))[..., :self.length]
        mix = stems.sum(dim=1)
        estimate = self.dmodel(mix)
        loss = self.loss_fn(estimate, stems)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.optim.clip_grad > 0:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.clip_grad)
        for group in self.optimizer.param_groups:
            group["lr"] = self._lr()
        self.optimizer.step()
        if self.ema is not None:
            self.ema.update(self.model)
        return float(loss.detach())

    def _finished(self) -> bool:
        t = self.config.train
        return self.progress.epoch >= t.epochs or (t.max_steps is not None and self.progress.step >= t.max_steps)

    def run(self) -> dict[str, Any]:
        """Train until ``epochs`` or ``max_steps``; returns a summary."""
        if self.info.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_config(self.config, self.out_dir / "config.yaml")
        if not self.info.enabled:
            self.stopper.install()
        try:
            self.augment.train()
            while not self._finished() and not self.stopper.requested:
                self.run_epoch()
        finally:
            self.stopper.restore()
        return {"step": self.progress.step, "epoch": self.progress.epoch, "best": self.best,
                "stopped": self.stopper.requested}

    def run_epoch(self) -> None:
        p = self.progress
        data = self.config.data
        dataset = StemSegments(self.epoch_tracks(), data.sources, self.load_length, data.channels,
                               examples=data.examples_per_epoch, seed=self.config.train.seed,
                               normalize=data.normalize, remix_prob=data.remix_prob)
        if dataset.samplerate != data.samplerate:
            raise DatasetError(f"the songs are at {dataset.samplerate} Hz but data.samplerate is "
                               f"{data.samplerate}; resample them or change the config")
        dataset.set_epoch(p.epoch)
        batches = self.epoch_batches(dataset)
        if p.batch_in_epoch == 0:
            logger.info("epoch %d: %d songs, %d steps of %d examples", p.epoch + 1, len(dataset.tracks),
                        len(batches), self.config.train.batch_size)
        self.model.train()
        for batch in self._progress_bar(dataset, batches):
            loss = self.train_step(batch)
            p.step += 1
            p.batch_in_epoch += 1
            p.loss_sum += loss
            p.loss_count += 1
            self._recent_losses = (self._recent_losses + [loss])[-1000:]
            if self._finished() or self._checkpoint_due():
                self.save_checkpoint()
            if self._finished() or self.stopper.requested:
                return
        self.end_epoch()

    def _progress_bar(self, dataset: StemSegments, batches: list[list[int]]) -> Iterator[torch.Tensor]:
        from tqdm import tqdm

        p = self.progress
        # its own generator: creating a loader must not draw from the global RNG (exact resume)
        generator = torch.Generator().manual_seed(self.config.train.seed * 100003 + p.epoch)
        loader = DataLoader(dataset, batch_sampler=batches[p.batch_in_epoch:],
                            num_workers=self.config.data.num_workers, generator=generator)
        interactive = sys.stderr.isatty()
        bar = tqdm(loader, total=len(batches), initial=p.batch_in_epoch, unit="step", leave=False,
                   desc=f"epoch {p.epoch + 1}", disable=self.quiet or not self.info.is_main,
                   dynamic_ncols=True, mininterval=0.1 if interactive else 60.0)
        for batch in bar:
            yield batch
            if p.loss_count:
                bar.set_postfix(loss=f"{p.loss_sum / p.loss_count:.4f}", step=p.step, refresh=interactive)
            every = self.config.train.log_every
            if every and p.step % every == 0:
                recent = self._recent_losses[-every:]
                logger.info("epoch %d step %d: loss %.4f (last %d steps %.4f)", p.epoch + 1, p.step,
                            p.loss_sum / max(1, p.loss_count), len(recent), sum(recent) / max(1, len(recent)))

    def end_epoch(self) -> None:
        p = self.progress
        loss = D.mean_across(p.loss_sum / max(1, p.loss_count), self.info)
        entry: dict[str, Any] = {"epoch": p.epoch + 1, "step": p.step, "train_loss": loss,
                                 "songs": len(p.epoch_tracks)}
        every = self.config.valid.every
        if every > 0 and (p.epoch + 1) % every == 0 and self.valid_names:
            if self.info.is_main:
                entry.update(self.validate())
            D.barrier(self.info)
        self.history.append(entry)
        p.epoch += 1
        p.batch_in_epoch = 0
        p.loss_sum, p.loss_count = 0.0, 0
        p.epoch_tracks = []
        self.save_checkpoint()
        if self.info.is_main:
            atomic_write_text(self.out_dir / HISTORY, json.dumps(self.history, indent=1))
        logger.info("epoch %d done: %s", entry["epoch"], _summary(entry))

    # -- validation ---------------------------------------------------------------------------

    def _valid_songs(self) -> list[ValidSong]:
        if self._valid_cache is None:
            data = self.config.data
            folder = self.root / self.valid_from
            tracks = [read_track(folder / name, data.sources) for name in self.valid_names]
            self._valid_cache = load_valid_songs([t for t in tracks if t is not None], data.sources,
                                                 data.channels)
        return self._valid_cache

    def _extra_songs(self) -> list[ValidSong]:
        if self._extra_cache is None:
            tracks = [read_track(Path(folder), self.config.data.sources) for folder in self.config.valid.extra]
            missing = [f for f, t in zip(self.config.valid.extra, tracks) if t is None]
            if missing:
                logger.warning("valid.extra: no complete song in %s; skipped", ", ".join(missing))
            usable = [t for t in tracks if t is not None and t.samplerate == self.config.data.samplerate]
            self._extra_cache = load_valid_songs(usable, self.config.data.sources, self.config.data.channels)
        return self._extra_cache

    def candidates(self) -> Iterator[tuple[str, nn.Module]]:
        """The weights to validate: ``("raw", model)`` and ``("ema", copy with EMA weights)``."""
        for kind in self.config.valid.models:
            if kind == "raw":
                yield kind, self.model
            elif kind == "ema" and self.ema is not None:
                averaged = copy.deepcopy(self.model)
                self.ema.copy_to(averaged)
                yield kind, averaged

    def validate(self) -> dict[str, Any]:
        """Score every candidate on the validation songs; keep the best as ``best.safetensors``."""
        songs = self._valid_songs()
        v = self.config.valid
        results: dict[str, Any] = {}
        started = time.monotonic()
        for kind, model in self.candidates():
            result = score_songs(model, songs, self.device, v.overlap, v.shifts)
            extra = self._extra_songs()
            if extra:
                result["extra"] = score_songs(model, extra, self.device, v.overlap, v.shifts)
            results[kind] = result
            if self.best is None or result["score"] > self.best["score"]:
                self.best = {"score": result["score"], "sdr": result["sdr"], "weights": kind,
                             "epoch": self.progress.epoch + 1, "step": self.progress.step,
                             "extra": result.get("extra")}
                self._save_best(model)
        self.model.train()
        return {"valid": results, "valid_seconds": time.monotonic() - started}

    def _save_best(self, model: nn.Module) -> None:
        from ..pretrained.checkpoint import save_stemforge

        save_stemforge(model, self.out_dir / BEST, meta={"run": str(self.out_dir), "best": self.best})
        logger.info("new best (%s weights): SDX SDR %.3f dB", self.best["weights"], self.best["score"])


def _summary(entry: dict[str, Any]) -> str:
    text = f"train loss {entry['train_loss']:.4f}"
    for kind, result in entry.get("valid", {}).items():
        per = " ".join(f"{k} {v:.2f}" for k, v in result["sdr"].items())
        text += f" | {kind}: SDR {result['score']:.3f} ({per})"
        if "extra" in result:
            text += f" real {result['extra']['score']:.2f}"
    return text


# ---------------------------------------------------------------------------------------------
# Entry point


def train(config: Config, out_dir: Union[str, Path], resume: bool = False, init: Optional[str] = None,
          quiet: bool = False) -> dict[str, Any]:
    """Run (``resume``: continue) the training run in ``out_dir``; returns a summary."""
    out_dir = Path(out_dir)
    info = D.detect()
    device = D.choose_device(info, config.train.device)
    D.init(info, device)
    try:
        if config.train.threads > 0:
            torch.set_num_threads(config.train.threads)
        checkpoint = out_dir / CHECKPOINT
        state = None
        if resume and checkpoint.exists():
            state = read_checkpoint(checkpoint)
            logger.info("resuming %s at step %d", out_dir, state["progress"]["step"])
        elif resume:
            logger.info("no checkpoint in %s: starting a new run", out_dir)
        elif checkpoint.exists():
            raise ConfigError(f"{out_dir} already holds a run; pass --resume to continue it "
                              "or choose another --out")
        seed_all(config.train.seed)
        if state is not None:
            model = model_from_header(state["model_header"])
        elif init is not None:
            model = model_for_finetuning(init, config)
        else:
            model = build_from_config(config)
        seed_all(config.train.seed + info.rank)
        solver = Solver(config, out_dir, model, info, device, quiet=quiet, init_source=init)
        if state is not None:
            solver.load_state_dict(state)
        else:
            solver.choose_valid_songs()
        return solver.run()
    finally:
        D.cleanup()
