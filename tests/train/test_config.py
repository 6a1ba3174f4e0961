"""Config loading, losses and the weight EMA."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from stemforge.train.config import Config, ConfigError, load_config, save_config
from stemforge.train.ema import EMA
from stemforge.train.losses import build_loss, per_source

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_yaml_roundtrip_and_overrides(tmp_path):
    config = load_config(None, ["train.batch_size=8", "data.sources=[a, b]", "model.kwargs.channels=16"])
    assert config.train.batch_size == 8 and config.data.sources == ["a", "b"]
    assert config.model.kwargs == {"channels": 16}
    save_config(config, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == config


def test_unknown_keys_are_errors(tmp_path):
    (tmp_path / "bad.yaml").write_text("train:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match="train.batchsize"):
        load_config(tmp_path / "bad.yaml")
    with pytest.raises(ConfigError):
        load_config(None, ["no_equals_sign"])


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_recipes_load(name):
    assert isinstance(load_config(CONFIGS / name), Config)


def test_builtin_recipe_is_small():
    from stemforge.train.solver import build_from_config

    model = build_from_config(load_config(CONFIGS / "builtin_small.yaml"))
    size = sum(p.numel() for p in model.parameters()) * 4
    assert size <= 25e6
    assert list(model.sources) == ["drums", "bass", "other", "vocals"] and model.samplerate == 44100


def test_losses():
    est, ref = torch.zeros(2, 3, 2, 10), torch.ones(2, 3, 2, 10)
    ref[:, 1] = 2
    torch.testing.assert_close(per_source(est, ref, "l1"), torch.tensor([1.0, 2.0, 1.0]))
    torch.testing.assert_close(build_loss("mse")(est, ref), torch.tensor(2.0))
    torch.testing.assert_close(build_loss("l1", weights=[0, 1, 0])(est, ref), torch.tensor(2.0))
    with pytest.raises(ValueError):
        build_loss("nope")


def test_ema_tracks_the_weights():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)  # first update: decay min(0.5, 1/10) = 0.1
    torch.testing.assert_close(ema.shadow["weight"], 0.1 * start["weight"] + 0.9 * model.weight)
    other = nn.Linear(2, 2)
    ema.copy_to(other)
    torch.testing.assert_close(other.weight, ema.shadow["weight"])
    copy = EMA(nn.Linear(2, 2), decay=0.9)
    copy.load_state_dict(ema.state_dict())
    assert copy.updates == 1 and copy.decay == 0.5
    torch.testing.assert_close(copy.shadow["bias"], ema.shadow["bias"])


def test_values_are_checked_and_numbers_in_strings_accepted():
    config = load_config(None, ["optim.lr=3e-4", "train.batch_size=8", "data.segment=null"])
    assert config.optim.lr == 3e-4 and isinstance(config.optim.lr, float)
    assert config.train.batch_size == 8 and config.data.segment is None
    with pytest.raises(ConfigError, match="optim.lr must be a number"):
        load_config(None, ["optim.lr=fast"])
    with pytest.raises(ConfigError, match="train.batch_size must be a whole number"):
        load_config(None, ["train.batch_size=2.5"])
