"""Training configuration: nested dataclasses, loaded from yaml, overridable from the command line.

A recipe is one yaml file under ``configs/`` with the sections below (every key optional; unknown
keys are an error, so typos do not pass silently)::

    model: {arch: HTDemucs, kwargs: {...}}
    data: {root: ..., sources: [...], segment: 6.0, ...}
    augment: {...}
    optim: {lr: 3e-4, loss: l1, ...}
    train: {batch_size: 4, epochs: ..., ...}
    valid: {songs: 6, ...}
    card: {licence: ..., description: ...}
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import yaml


class ConfigError(ValueError):
    """The configuration file or an override is invalid; the message names the key."""


@dataclass
class ModelConfig:
    arch: str = "HTDemucs"
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Constructor keyword arguments (``sources`` and ``samplerate`` come from ``data``)."""


@dataclass
class DataConfig:
    root: Optional[str] = None
    sources: list[str] = field(default_factory=lambda: ["drums", "bass", "other", "vocals"])
    samplerate: int = 44100
    channels: int = 2
    segment: Optional[float] = None
    """Seconds per training example (default: the model's ``segment``)."""
    examples_per_epoch: int = 2000
    normalize: bool = True
    remix_prob: float = 0.0
    """Probability that a training example takes each stem from a different song."""
    train_split: str = "train"
    valid_split: str = "valid"
    num_workers: int = 0


@dataclass
class AugmentConfig:
    shift: float = 0.5
    """Seconds of random time shift (extra audio is read and randomly cropped)."""
    flip_channels: bool = True
    flip_sign: bool = True
    scale_prob: float = 1.0
    scale_low: float = 0.25
    scale_high: float = 1.25
    remix_prob: float = 1.0
    remix_group: int = 4
    repitch_prob: float = 0.0
    repitch_semitones: float = 2.0


@dataclass
class OptimConfig:
    lr: float = 3e-4
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    clip_grad: float = 0.0
    loss: str = "l1"
    warmup_steps: int = 0


@dataclass
class TrainConfig:
    batch_size: int = 4
    epochs: int = 360
    max_steps: Optional[int] = None
    """Stop after this many optimiser steps in total (None: after ``epochs``)."""
    seed: int = 42
    ema_decay: float = 0.999
    """EMA of the weights per step (0 disables it)."""
    checkpoint_minutes: float = 10.0
    checkpoint_every_steps: int = 0
    """Also checkpoint every N steps (0: only by time and at the end of each epoch)."""
    threads: int = 0
    """torch intra-op threads (0: leave torch's default)."""
    device: Optional[str] = None
    log_every: int = 50


@dataclass
class ValidConfig:
    songs: int = 6
    """Validation songs (the first N of the valid split)."""
    holdout: bool = True
    """If the dataset has no valid split yet, hold out the first ``songs`` train songs instead."""
    every: int = 1
    """Validate every N epochs (0: never)."""
    overlap: float = 0.25
    shifts: int = 0
    extra: list[str] = field(default_factory=list)
    """Song folders (e.g. real music) also scored each epoch and logged, never used for selection."""
    models: list[str] = field(default_factory=lambda: ["ema", "raw"])
    """Which weights to validate: ``raw`` (the trained model) and/or ``ema``."""


@dataclass
class CardConfig:
    name: str = "stemforge-model"
    licence: str = "MIT"
    description: str = ""
    data_description: str = ""


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    valid: ValidConfig = field(default_factory=ValidConfig)
    card: CardConfig = field(default_factory=CardConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _from_dict(cls: type, values: Any, where: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(values).__name__}")
    known = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in values.items():
        if key not in known:
            raise ConfigError(f"unknown config key {where + '.' if where else ''}{key} "
                              f"(known: {', '.join(known)})")
        sub = _SECTIONS.get(known[key].type) if not where else None
        name = f"{where + '.' if where else ''}{key}"
        kwargs[key] = (_from_dict(sub, value or {}, key) if sub is not None
                       else _coerce(value, str(known[key].type), name))
    return cls(**kwargs)


def _coerce(value: Any, annotation: str, name: str) -> Any:
    """Check a leaf value against its field's type; numbers written as strings (YAML 1.1 reads
    ``3e-4`` as a string) become numbers. Other types are left as they are."""
    optional = annotation.startswith("Optional[")
    kind = annotation[len("Optional["):-1] if optional else annotation
    if kind not in ("float", "int", "bool") or (value is None and optional):
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be true or false, got {value!r}")
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if isinstance(number, bool) or not isinstance(number, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if kind == "int":
        if float(number) != int(number):
            raise ConfigError(f"{name} must be a whole number, got {value!r}")
        return int(number)
    return float(number)


_SECTIONS: dict[Any, type] = {
    "ModelConfig": ModelConfig, "DataConfig": DataConfig, "AugmentConfig": AugmentConfig,
    "OptimConfig": OptimConfig, "TrainConfig": TrainConfig, "ValidConfig": ValidConfig,
    "CardConfig": CardConfig,
}


def config_from_dict(values: dict[str, Any]) -> Config:
    """A :class:`Config` from nested plain dicts (as read from yaml)."""
    return _from_dict(Config, values or {}, "")


def load_config(path: Union[str, Path, None], overrides: Optional[list[str]] = None) -> Config:
    """Read a yaml recipe (``None``: defaults) and apply ``section.key=value`` overrides
    (values parsed as yaml: ``train.batch_size=8``, ``data.sources=[a,b]``)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config {path}: {exc}") from None
    for override in overrides or []:
        apply_override(values, override)
    return config_from_dict(values)


def apply_override(values: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in nested ``values`` (in place)."""
    key, sep, raw = override.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {override!r} is not of the form section.key=value")
    *parents, leaf = key.strip().split(".")
    node = values
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {override!r}: {part} is not a section")
    node[leaf] = yaml.safe_load(raw)


def save_config(config: Config, path: Union[str, Path]) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
