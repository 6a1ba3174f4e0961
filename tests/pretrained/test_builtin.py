"""Models shipped inside the package resolve by name, offline, before the download table."""
from __future__ import annotations

import pytest

from stemforge.pretrained import builtin, resolve
from stemforge.pretrained.checkpoint import load_official, save_stemforge


def test_unknown_or_absent_builtin_is_none():
    assert builtin.builtin_path("no-such-model") is None


def test_builtin_name_loads_the_packaged_file(tmp_path, tiny_repo, monkeypatch):
    packaged = tmp_path / "stemforge-small.safetensors"
    save_stemforge(load_official(next(tiny_repo.glob("tiny-*.th"))), packaged, meta={"licence": "MIT"})
    monkeypatch.setattr(builtin, "builtin_path", lambda name: packaged if name == "stemforge-small" else None)
    model = resolve.load_model("stemforge-small")
    assert list(model.sources) == ["drums", "bass", "other", "vocals"]


def test_missing_builtin_file_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(builtin, "builtin_path", lambda name: None)
    with pytest.raises(resolve.ModelResolutionError, match="unknown model"):
        resolve.load_model("stemforge-small")
