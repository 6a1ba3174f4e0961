"""Fixtures for command-line tests: a local repo with a tiny official-format model."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.reference import official_package, save_official


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory) -> Path:
    """A folder holding ``tiny-<sha8>.th``: a small random v3 Demucs in the official format."""
    from demucs.demucs import Demucs

    folder = tmp_path_factory.mktemp("tiny_repo")
    torch.manual_seed(0)
    model = Demucs(sources=["drums", "bass", "other", "vocals"], channels=4, depth=2, segment=2)
    save_official(official_package(model), folder, "tiny")
    return folder
