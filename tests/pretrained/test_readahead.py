"""Model files read ahead in the background: same result as reading them, never stale."""
from __future__ import annotations

import hashlib
import io
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from stemforge.pretrained import readahead
from stemforge.pretrained.checkpoint import load_official
from stemforge.pretrained.readahead import MemoryFile, ReadAhead
from stemforge.pretrained.repo import load_from_repo
from stemforge.pretrained.resolve import read_ahead
from tests.reference import official_package, save_official

SOURCES = ["drums", "bass", "other", "vocals"]


def _reference_model(seed: int):
    from demucs.hdemucs import HDemucs

    torch.manual_seed(seed)
    return HDemucs(SOURCES, channels=4, depth=3, nfft=256).eval()


@pytest.fixture
def checkpoint(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    ref = _reference_model(0)
    return save_official(official_package(ref), tmp_path, "model"), ref


@pytest.fixture(autouse=True)
def _forget_reads():
    yield
    readahead.clear()


def _assert_same_weights(model: torch.nn.Module, ref: torch.nn.Module) -> None:
    state = model.state_dict()
    for key, value in ref.state_dict().items():
        assert torch.equal(state[key], value), key


def test_loaded_weights_are_views_of_the_bytes_read_ahead(checkpoint, monkeypatch):
    path, ref = checkpoint
    content = readahead.read_file(path)
    assert content.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert any("/data/" in name for name in content.crc_checked)
    monkeypatch.setattr(readahead, "claim", lambda _path: content)
    model = load_official(path)
    _assert_same_weights(model, ref)
    start = torch.frombuffer(content.data, dtype=torch.uint8).data_ptr()
    inside = [start <= p.data_ptr() < start + len(content.data) for p in model.parameters()]
    assert all(inside)  # no second copy of the weights


def test_claim_and_sha256_through_the_background_thread(checkpoint):
    path, ref = checkpoint
    reader = ReadAhead()
    reader.start([path, path.parent / "missing.th"])
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert reader.sha256(path) == digest
    content = reader.claim(path)
    assert content is not None and bytes(content.data) == path.read_bytes()
    assert reader.claim(path) is None  # the caller owns the bytes now
    assert reader.sha256(path) == digest  # the digest stays known
    assert reader.claim(path.parent / "missing.th") is None


def test_a_file_changed_after_the_read_ahead_is_read_again(checkpoint):
    path, _ = checkpoint
    readahead.start([path])
    assert readahead.sha256(path) is not None
    newer = _reference_model(1)
    torch.save(official_package(newer), path)  # same name and size, new content
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
    assert readahead.sha256(path) is None
    _assert_same_weights(load_official(path), newer)


def test_clear_drops_unclaimed_files(checkpoint):
    path, _ = checkpoint
    readahead.start([path])
    readahead.clear()
    assert readahead.claim(path) is None


def test_read_ahead_finds_repo_files_and_bag_members_without_torch(tmp_path: Path):
    folder = tmp_path / "repo"
    folder.mkdir()
    first = save_official(official_package(_reference_model(0)), folder, "aaaa")
    second = save_official(official_package(_reference_model(1)), folder, "bbbb")
    (folder / "duo.yaml").write_text("models: ['aaaa', 'bbbb', 'aaaa']\n")
    script = textwrap.dedent(f"""
        import sys
        from stemforge.pretrained.resolve import read_ahead
        print(read_ahead("duo", {str(folder)!r}))
        print(read_ahead("aaaa", {str(folder)!r}))
        print(read_ahead("nothing-here", {str(folder)!r}))
        print(read_ahead({str(first)!r}))
        print("torch" in sys.modules)
    """)
    lines = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                           text=True).stdout.splitlines()
    assert lines[0] == repr([first, second])
    assert lines[1] == repr([first])
    assert lines[2] == "[]"
    assert lines[3] == repr([first])
    assert lines[4] == "False"


def test_checksum_from_the_read_ahead_still_catches_a_wrong_name(checkpoint):
    from stemforge.pretrained.repo import ChecksumError

    path, _ = checkpoint
    wrong = path.with_name("model-00000000.th")
    path.rename(wrong)
    assert read_ahead("model", wrong.parent) == [wrong]
    with pytest.raises(ChecksumError):
        load_from_repo("model", wrong.parent)


def test_memory_file_behaves_like_a_file():
    data = bytearray(b"first line\nsecond\n\nlast without newline")
    ours, theirs = MemoryFile(data), io.BytesIO(bytes(data))
    rng = random.Random(0)
    for _ in range(300):
        op = rng.choice(["read", "readline", "seek", "readinto", "tell"])
        size = rng.choice([-1, 0, 1, 3, 7, 50])
        if op == "read":
            assert ours.read(size) == theirs.read(size)
        elif op == "readline":
            assert ours.readline(size) == theirs.readline(size)
        elif op == "seek":
            offset, whence = rng.randrange(0, len(data) + 5), rng.choice([0, 1, 2])
            if whence:
                offset -= len(data) // 2
            if (whence == 0 and offset < 0) or (whence == 1 and theirs.tell() + offset < 0):
                continue
            assert ours.seek(offset, whence) == theirs.seek(offset, whence)
        elif op == "readinto":
            a, b = bytearray(max(size, 0)), bytearray(max(size, 0))
            assert ours.readinto(a) == theirs.readinto(b) and a == b
        assert ours.tell() == theirs.tell()
