"""Two CPU processes under torchrun (gloo): training runs, only rank 0 writes checkpoints."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from stemforge.train.distributed import DistInfo, detect
from stemforge.train.solver import CHECKPOINT, read_checkpoint
from tests.train.helpers import make_dataset, tiny_config

ROOT = Path(__file__).resolve().parents[2]


def test_detect_reads_the_torchrun_environment(monkeypatch):
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    assert detect() == DistInfo(0, 1, 0) and not detect().enabled
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    info = detect()
    assert info.enabled and not info.is_main and info.local_rank == 1


def test_torchrun_two_cpu_processes(tmp_path):
    data = make_dataset(tmp_path / "data", train=4, valid=1, seconds=1.5)
    values = tiny_config(data, max_steps=3)  # 8 examples / 2 ranks / batch 2 = 2 steps per epoch
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(values))
    out = tmp_path / "run"
    paths = [str(ROOT), str(ROOT / "src")] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(ROOT / "tests" / "train" / "ddp_entry.py"), "train", "--config", str(tmp_path / "recipe.yaml"),
               "--out", str(out), "-q"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "saved_by_rank0").exists() and not (out / "saved_by_rank1").exists()
    state = read_checkpoint(out / CHECKPOINT)
    assert state["progress"]["step"] == 3 and state["world_size"] == 2
    assert len(state["rng"]) == 2  # each rank's RNG state, for an exact resume
    assert not torch_equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    assert "valid" in state["history"][0]  # rank 0 validated at the end of epoch 1


def torch_equal(a, b) -> bool:
    import torch

    return torch.equal(a, b)
