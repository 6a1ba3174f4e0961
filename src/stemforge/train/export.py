"""Turn a training run into a stemforge model file with a model card."""
from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any, Optional, Union

from torch import nn

from .config import ConfigError
from .solver import BEST, CHECKPOINT, model_from_header, read_checkpoint


def _weights(state: dict[str, Any], run_dir: Path, which: str) -> nn.Module:
    from ..pretrained.checkpoint import load_state, load_stemforge

    if which == "best":
        path = run_dir / BEST
        if not path.exists():
            raise ConfigError(f"{run_dir} has no validated best model yet ({BEST}); "
                              "use --weights ema or --weights raw for the last weights")
        return load_stemforge(path)
    model = model_from_header(state["model_header"])
    if which == "ema":
        if state.get("ema") is None:
            raise ConfigError("this run keeps no EMA weights (train.ema_decay is 0); use --weights raw")
        load_state(model, state["ema"]["shadow"], "EMA weights")
    else:
        load_state(model, state["model"], "model weights")
    return model.eval()


def model_card(state: dict[str, Any], model: nn.Module, which: str,
               licence: Optional[str] = None) -> dict[str, Any]:
    """The model card of a run: what it is, what it learnt from, how long, how well."""
    from .. import __version__

    config = state["config"]
    progress = state["progress"]
    history = state.get("history", [])
    best = state.get("best")
    params = sum(p.numel() for p in model.parameters())
    card = config.get("card", {})
    selected = best if which == "best" else None
    return {
        "name": card.get("name"),
        "description": card.get("description", ""),
        "licence": licence or card.get("licence"),
        "architecture": json.loads(state["model_header"])["arch"],
        "config": json.loads(state["model_header"])["config"],
        "parameters": params,
        "sources": list(model.sources),
        "samplerate": int(model.samplerate),
        "data": {
            "root": config["data"].get("root"),
            "description": card.get("data_description", ""),
            "train_songs": history[-1].get("songs") if history else len(progress.get("epoch_tracks", [])),
            "valid_songs": state["valid"]["names"],
            "valid_split": state["valid"]["split"],
        },
        "training": {
            "steps": progress["step"],
            "epochs": progress["epoch"],
            "batch_size": config["train"]["batch_size"],
            "world_size": state.get("world_size", 1),
            "segment": config["data"].get("segment"),
            "loss": config["optim"]["loss"],
            "lr": config["optim"]["lr"],
            "ema_decay": config["train"]["ema_decay"],
            "augment": config["augment"],
            "init": state.get("init"),
            "weights": which if selected is None else f"best ({selected['weights']}, epoch {selected['epoch']}, step {selected['step']})",
        },
        "metrics": {
            "metric": "SDX SDR (dB), mean over validation songs",
            "valid": {"sdr": selected["sdr"], "mean": selected["score"]} if selected else None,
            "extra": selected.get("extra") if selected else None,
            "last_epoch": history[-1] if history else None,
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "stemforge_version": __version__,
    }


def read_evaluation(path: Union[str, Path]) -> dict[str, Any]:
    """A JSON results file to attach to a model card (must hold a JSON object)."""
    path = Path(path)
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--evaluation {path}: not a readable JSON file ({exc})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--evaluation {path}: expected a JSON object")
    return value


def export_run(run_dir: Union[str, Path], output: Union[str, Path], weights: str = "best",
               licence: Optional[str] = None, evaluation: Union[str, Path, None] = None) -> Path:
    """Write the run's ``weights`` (``best``, ``ema`` or ``raw``) to ``output`` with a model card.

    ``evaluation``: a JSON file of further results, stored as the card's ``metrics.evaluation``.
    """
    from ..pretrained.checkpoint import save_stemforge

    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.exists():
        raise ConfigError(f"{run_dir} is not a training run (no {CHECKPOINT})")
    state = read_checkpoint(checkpoint)
    model = _weights(state, run_dir, weights)
    card = model_card(state, model, weights, licence)
    if evaluation is not None:
        card["metrics"]["evaluation"] = read_evaluation(evaluation)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    return save_stemforge(model, output, meta=card)
