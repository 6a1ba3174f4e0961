"""The training loop on tiny models and generated stem folders: runs, validates, resumes exactly,
fine-tunes from an official-format checkpoint, exports with a model card, works from the CLI."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
import yaml

from stemforge.pretrained.checkpoint import load_model_file
from stemforge.train.config import ConfigError, config_from_dict
from stemforge.train.export import export_run
from stemforge.train.solver import BEST, CHECKPOINT, read_checkpoint, train
from tests.train.helpers import SOURCES, make_dataset, tiny_config, tiny_htdemucs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("stems"), train=4, valid=1, seconds=1.5)


def run(root, out, resume=False, init=None, **train_options):
    return train(config_from_dict(tiny_config(root, **train_options)), out, resume=resume, init=init, quiet=True)


def test_train_validate_checkpoint_and_export(data, tmp_path):
    summary = run(data, tmp_path / "run", epochs=1)
    assert summary["step"] == 4 and summary["epoch"] == 1
    state = read_checkpoint(tmp_path / "run" / CHECKPOINT)
    (entry,) = state["history"]
    assert set(entry["valid"]) == {"ema", "raw"}
    assert set(entry["valid"]["raw"]["sdr"]) == set(SOURCES)
    assert state["best"]["epoch"] == 1 and (tmp_path / "run" / BEST).exists()
    assert not list((tmp_path / "run").glob(".*"))  # no temporary files left behind

    out = export_run(tmp_path / "run", tmp_path / "model.safetensors", licence="CC0-1.0")
    model = load_model_file(out)
    card = model.model_card
    assert card["licence"] == "CC0-1.0" and card["training"]["steps"] == 4
    assert card["metrics"]["valid"]["mean"] == pytest.approx(state["best"]["score"])
    assert card["data"]["train_songs"] == 4 and card["architecture"] == "HTDemucs"
    assert list(model.sources) == SOURCES
    with pytest.raises(ConfigError, match="--resume"):
        run(data, tmp_path / "run", epochs=1)


def test_resume_is_exact(data, tmp_path):
    """6 steps straight == 3 steps, stop, resume, 3 more (crossing an epoch end with validation)."""
    run(data, tmp_path / "straight", max_steps=6)
    run(data, tmp_path / "split", max_steps=3)
    assert read_checkpoint(tmp_path / "split" / CHECKPOINT)["progress"]["step"] == 3
    run(data, tmp_path / "split", resume=True, max_steps=6)
    a = read_checkpoint(tmp_path / "straight" / CHECKPOINT)
    b = read_checkpoint(tmp_path / "split" / CHECKPOINT)
    assert a["progress"] == b["progress"]
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], atol=0, rtol=0)
        torch.testing.assert_close(a["ema"]["shadow"][key], b["ema"]["shadow"][key], atol=0, rtol=0)
    for x, y in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(x["exp_avg_sq"], y["exp_avg_sq"], atol=0, rtol=0)
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]
    assert a["history"][0]["valid"] == b["history"][0]["valid"]


def test_finetune_from_official_checkpoint(data, tmp_path):
    from demucs.htdemucs import HTDemucs as ReferenceHTDemucs

    from tests.reference import official_package, save_official

    torch.manual_seed(1)
    reference = ReferenceHTDemucs(**tiny_htdemucs())
    path = save_official(official_package(reference), tmp_path, "tiny")
    values = tiny_config(data, max_steps=2)
    values["model"] = {"arch": "Demucs", "kwargs": {"channels": 3}}  # ignored: --init decides
    values["optim"]["lr"] = 0.0
    train(config_from_dict(values), tmp_path / "ft", init=str(path), quiet=True)
    state = read_checkpoint(tmp_path / "ft" / CHECKPOINT)
    assert state["init"] == str(path)
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(state["model"][key], value, atol=0, rtol=0)  # lr 0: unchanged


def test_finetune_rejects_mismatched_stems(data, tmp_path):
    from demucs.htdemucs import HTDemucs as ReferenceHTDemucs

    from tests.reference import official_package, save_official

    reference = ReferenceHTDemucs(**tiny_htdemucs(sources=["a", "b"]))
    path = save_official(official_package(reference), tmp_path, "ab")
    with pytest.raises(ConfigError, match="data.sources"):
        run(data, tmp_path / "bad", init=str(path), max_steps=1)


def test_cli_train_then_export(data, tmp_path):
    from stemforge.cli import train as cli

    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers(dest="command"))
    values = tiny_config(Path("/nonexistent"), max_steps=2)
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(values))
    args = parser.parse_args(["train", "--config", str(tmp_path / "recipe.yaml"), "--data", str(data),
                              "--out", str(tmp_path / "run"), "--set", "valid.every=0", "--set", "train.log_every=1"])
    assert args.handler(args) == 0
    args = parser.parse_args(["train", "--config", str(tmp_path / "recipe.yaml"), "--data", str(data),
                              "--out", str(tmp_path / "run"), "--resume", "--set", "train.max_steps=3", "-q"])
    assert args.handler(args) == 0
    assert read_checkpoint(tmp_path / "run" / CHECKPOINT)["progress"]["step"] == 3
    (tmp_path / "scores.json").write_text('{"sets": {"valid": {"model": {"drums": 3.5}}}}')
    args = parser.parse_args(["export", str(tmp_path / "run"), str(tmp_path / "m.safetensors"), "--weights", "ema",
                              "--evaluation", str(tmp_path / "scores.json")])
    assert args.handler(args) == 0
    card = load_model_file(tmp_path / "m.safetensors").model_card
    assert card["training"]["steps"] == 3
    assert card["metrics"]["evaluation"]["sets"]["valid"]["model"]["drums"] == 3.5
    (tmp_path / "bad.json").write_text("[1, 2]")
    args = parser.parse_args(["export", str(tmp_path / "run"), str(tmp_path / "m3.safetensors"), "--weights", "ema",
                              "--evaluation", str(tmp_path / "bad.json")])
    with pytest.raises(ConfigError, match="JSON object"):
        args.handler(args)
    assert not (tmp_path / "m3.safetensors").exists()
    args = parser.parse_args(["export", str(tmp_path / "run"), str(tmp_path / "m2.safetensors")])
    with pytest.raises(ConfigError, match="no validated best"):
        args.handler(args)


def test_holdout_when_there_is_no_valid_split(tmp_path):
    root = make_dataset(tmp_path / "d", train=3, valid=0, seconds=1.5)
    run(root, tmp_path / "run", epochs=1)
    state = read_checkpoint(tmp_path / "run" / CHECKPOINT)
    assert state["valid"] == {"names": ["song_000"], "split": "train", "holdout": ["song_000"]}
    assert state["history"][0]["songs"] == 2


def test_stop_request_checkpoints_then_resumes(data, tmp_path, monkeypatch):
    """SIGTERM/SIGINT set the stop request: the step finishes, a checkpoint is written, run returns."""
    from stemforge.train import solver

    step = solver.Solver.train_step

    def stopping_step(self, batch):
        loss = step(self, batch)
        if self.progress.step == 1:  # about to become step 2
            self.stopper._handle(15, None)
        return loss

    monkeypatch.setattr(solver.Solver, "train_step", stopping_step)
    summary = run(data, tmp_path / "run", epochs=1)
    assert summary["stopped"] and summary["step"] == 2
    assert read_checkpoint(tmp_path / "run" / CHECKPOINT)["progress"]["step"] == 2
    monkeypatch.setattr(solver.Solver, "train_step", step)
    assert run(data, tmp_path / "run", resume=True, epochs=1)["step"] == 4


def test_builtin_architecture_trains_and_exports(data, tmp_path):
    """The built-in model's architecture (TFMaskUNet, list-valued kwargs) goes through train/export."""
    values = tiny_config(data, max_steps=2)
    values["model"] = {"arch": "TFMaskUNet", "kwargs": {"nfft": 512, "channels": [4, 8], "strides": [4, 4],
                                                        "head_channels": 4, "bottleneck_hidden": 8,
                                                        "bottleneck_layers": 1}}
    summary = train(config_from_dict(values), tmp_path / "run", quiet=True)
    assert summary["step"] == 2
    model = load_model_file(export_run(tmp_path / "run", tmp_path / "m.safetensors", weights="ema"))
    assert type(model).__name__ == "TFMaskUNet" and model.config["channels"] == [4, 8]
    assert float(model.segment) == 1.0 and list(model.sources) == list(SOURCES)
