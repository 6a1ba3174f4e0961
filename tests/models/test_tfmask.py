"""TFMaskUNet: stemforge's own mask-based model (the built-in default's architecture)."""
from __future__ import annotations

import pytest
import torch

from stemforge.inference.separator import Separator
from stemforge.models.registry import build_model
from stemforge.pretrained.checkpoint import load_stemforge, save_stemforge

SOURCES = ["drums", "bass", "other", "vocals"]
SMALL = {"sources": SOURCES, "nfft": 512, "channels": [4, 8], "strides": [4, 4], "head_channels": 4,
         "bottleneck_hidden": 16, "bottleneck_layers": 2, "segment": 1.0}


def small_model(**overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("TFMaskUNet", {**SMALL, **overrides}, strict=True).eval()


@pytest.mark.parametrize("length", [44100, 12345, 300])
def test_stems_have_the_input_length_and_add_up_to_the_mixture(length):
    model = small_model()
    mix = torch.randn(2, 2, length)
    with torch.no_grad():
        stems = model(mix)
    assert stems.shape == (2, 4, 2, length)
    torch.testing.assert_close(stems.sum(dim=1), mix, atol=1e-4, rtol=0)


def test_masks_are_a_partition_of_unity_and_depend_on_the_input():
    model = small_model()
    magnitude = torch.rand(1, 2, 256, 20)
    with torch.no_grad():
        masks = model.masks(magnitude)
        other = model.masks(torch.rand(1, 2, 256, 20))
    assert masks.shape == (1, 4, 2, 256, 20)
    assert masks.min() >= 0
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(1, 2, 256, 20))
    assert (masks - other).abs().max() > 1e-3


def test_output_is_invariant_to_the_input_scale():
    """Features are relative to the example's mean magnitude: a louder mix gives louder stems."""
    model = small_model()
    mix = torch.randn(1, 2, 8000)
    with torch.no_grad():
        torch.testing.assert_close(model(mix * 8), model(mix) * 8, atol=1e-4, rtol=1e-4)


def test_gradients_reach_every_parameter():
    model = small_model().train()
    model(torch.randn(2, 2, 4000)).pow(2).mean().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum()]
    assert not missing


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="divide"):
        build_model("TFMaskUNet", {**SMALL, "strides": [4, 3]}, strict=True)
    with pytest.raises(ValueError, match="same length"):
        build_model("TFMaskUNet", {**SMALL, "channels": [4]}, strict=True)


def test_saved_model_reloads_and_separates_identically(tmp_path):
    model = small_model()
    path = tmp_path / "tfmask.safetensors"
    save_stemforge(model, path, meta={"licence": "MIT"})
    loaded = load_stemforge(path)
    assert type(loaded).__name__ == "TFMaskUNet" and loaded.segment == 1.0
    mix = torch.randn(2, 3 * 44100)
    mix -= mix.mean()  # the engine adds the mix's mean back to every stem, as Demucs does
    ours = Separator(model, shifts=0).separate(mix, 44100)
    again = Separator(loaded, shifts=0).separate(mix, 44100)
    for name in SOURCES:
        assert ours[name].shape == (2, 3 * 44100)
        assert (ours[name] == again[name]).all()
    torch.testing.assert_close(torch.from_numpy(sum(ours.values())), mix, atol=1e-4, rtol=0)


def test_saved_model_file_has_normal_permissions(tmp_path):
    """safetensors recreates its file as 0600; the atomic writer restores the umask's mode."""
    from stemforge.atomic import new_file_mode

    path = save_stemforge(small_model(), tmp_path / "model.safetensors", meta={})
    assert path.stat().st_mode & 0o777 == new_file_mode()
