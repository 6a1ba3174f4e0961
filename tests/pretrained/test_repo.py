"""Local model folders (``--repo``), bag files and :class:`ModelBag`."""
from __future__ import annotations

import copy
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from stemforge.models.bag import BagError, ModelBag
from stemforge.models.registry import build_model
from stemforge.pretrained.checkpoint import save_stemforge
from stemforge.pretrained.repo import (
    BagFormatError,
    ChecksumError,
    DuplicateModelError,
    ModelNotFoundError,
    RepoError,
    list_repo,
    load_from_repo,
    load_model_path,
    split_checksum,
)
from tests.reference import official_package, save_official
from tests.pretrained.readahead_modes import byte_source  # noqa: F401 (fixture)

SOURCES = ["drums", "bass", "other", "vocals"]

pytestmark = pytest.mark.usefixtures("byte_source")


def ref_hdemucs():
    from demucs.hdemucs import HDemucs
    return HDemucs(SOURCES, channels=4, depth=3, nfft=256)


def ref_htdemucs(segment=Fraction(1, 4)):
    from demucs.htdemucs import HTDemucs
    return HTDemucs(SOURCES, channels=8, depth=2, nfft=512, t_layers=1, segment=segment)


def assert_same_state(ours: torch.nn.Module, ref: torch.nn.Module) -> None:
    state = ours.state_dict()
    expected = ref.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert torch.equal(state[key], value), key


@pytest.fixture
def repo(tmp_path: Path) -> tuple[Path, dict[str, torch.nn.Module]]:
    """A folder with a sha-suffixed HTDemucs, a plain-named HDemucs and two bags."""
    refs = {"aaaa1111": ref_htdemucs(), "hybrid": ref_hdemucs()}
    save_official(official_package(refs["aaaa1111"]), tmp_path, "aaaa1111")
    plain = save_official(official_package(refs["hybrid"]), tmp_path, "hybrid")
    plain.rename(tmp_path / "hybrid.th")
    (tmp_path / "short.yaml").write_text(
        "models: ['aaaa1111', 'hybrid']\n"
        "weights: [\n  [1., 0., 0.5, 1.],\n  [0., 1., 0.5, 0.],\n]\n"
        "segment: 0.2\n")
    (tmp_path / "long.yaml").write_text("models: ['aaaa1111', 'hybrid', 'hybrid']\nsegment: 44\n")
    return tmp_path, refs


def test_split_checksum():
    assert split_checksum("955717e8-8726e21a") == ("955717e8", "8726e21a")
    assert split_checksum("htdemucs") == ("htdemucs", None)
    assert split_checksum("my-model") == ("my-model", None)


def test_sha_suffixed_file_is_found_by_name(repo):
    folder, refs = repo
    model = load_from_repo("aaaa1111", folder)
    assert type(model).__name__ == "HTDemucs"
    assert_same_state(model, refs["aaaa1111"])


def test_plain_name_without_checksum(repo):
    folder, refs = repo
    model = load_from_repo("hybrid", folder)
    assert type(model).__name__ == "HDemucs"
    assert_same_state(model, refs["hybrid"])


def test_wrong_checksum(repo):
    folder, _ = repo
    good = next(folder.glob("aaaa1111-*.th"))
    good.rename(folder / "aaaa1111-deadbeef.th")
    with pytest.raises(ChecksumError, match="deadbeef"):
        load_from_repo("aaaa1111", folder)
    with pytest.raises(ChecksumError):
        load_model_path(folder / "aaaa1111-deadbeef.th")


def test_corrupt_file_reports_the_checksum_not_the_parse_error(repo):
    folder, _ = repo
    good = next(folder.glob("aaaa1111-*.th"))
    good.write_bytes(good.read_bytes()[:100])  # unparseable and no longer matching its name
    with pytest.raises(ChecksumError, match="corrupt or incomplete"):
        load_from_repo("aaaa1111", folder)


def test_list_repo(repo):
    folder, _ = repo
    listing = list_repo(folder)
    assert list(listing) == ["aaaa1111", "hybrid", "long", "short"]
    assert listing["hybrid"] == folder / "hybrid.th"
    assert listing["short"] == folder / "short.yaml"


def test_unknown_name_lists_available(repo):
    folder, _ = repo
    with pytest.raises(ModelNotFoundError) as info:
        load_from_repo("nope", folder)
    for name in ("aaaa1111", "hybrid", "long", "short"):
        assert name in str(info.value)


def test_missing_repo_dir(tmp_path: Path):
    with pytest.raises(RepoError, match="not a directory"):
        load_from_repo("x", tmp_path / "missing")


def test_duplicate_signature(repo):
    folder, _ = repo
    (folder / "hybrid-0123abcd.th").write_bytes((folder / "hybrid.th").read_bytes())
    with pytest.raises(DuplicateModelError, match="hybrid"):
        load_from_repo("aaaa1111", folder)


def test_bag_with_weights_and_short_segment(repo):
    """Segment 0.2 s is below the HTDemucs training length: both members take it."""
    folder, refs = repo
    bag = load_from_repo("short", folder)
    assert isinstance(bag, ModelBag)
    assert bag.weights == [[1.0, 0.0, 0.5, 1.0], [0.0, 1.0, 0.5, 0.0]]
    assert [m.segment for m in bag.models] == [0.2, 0.2]
    assert bag.max_segment == pytest.approx(0.2)
    assert bag.sources == SOURCES and bag.samplerate == 44100 and bag.audio_channels == 2
    assert_same_state(bag.models[0], refs["aaaa1111"])
    assert_same_state(bag.models[1], refs["hybrid"])
    assert not bag.training
    with pytest.raises(NotImplementedError):
        bag(torch.zeros(1, 2, 100))


def test_bag_segment_above_htdemucs_limit(repo):
    """Segment 44 s: HTDemucs keeps its own (it cannot run longer), others take 44."""
    folder, _ = repo
    bag = load_from_repo("long", folder)
    assert len(bag.models) == 3 and bag.models[1] is not bag.models[2]
    assert [m.segment for m in bag.models] == [Fraction(1, 4), 44, 44]
    assert bag.max_segment == 0.25
    assert bag.weights == [[1.0] * 4] * 3


@pytest.mark.parametrize("segment", [0.2, Fraction(1, 4), 3, None])
def test_segment_override_matches_reference(segment):
    from demucs.apply import BagOfModels

    refs = [ref_htdemucs(), ref_hdemucs()]
    ours = [build_model("HTDemucs", dict(sources=SOURCES, channels=8, depth=2, nfft=512,
                                         t_layers=1, segment=Fraction(1, 4))),
            build_model("HDemucs", dict(sources=SOURCES, channels=4, depth=3, nfft=256))]
    ref_bag = BagOfModels(refs, segment=segment)
    bag = ModelBag(ours, segment=segment)
    assert [m.segment for m in bag.models] == [m.segment for m in ref_bag.models]
    assert bag.max_segment == ref_bag.max_allowed_segment


def test_bag_member_missing(repo):
    folder, _ = repo
    (folder / "broken.yaml").write_text("models: ['aaaa1111', 'ghost']\n")
    with pytest.raises(ModelNotFoundError, match="ghost"):
        load_from_repo("broken", folder)


def test_malformed_bag_files(repo):
    folder, _ = repo
    for text in ("models: 3\n", "- a\n- b\n", "models: ['hybrid']\nweights: [[1, 1]]\n",
                 "models: ['hybrid']\nsegment: -1\n", "models: [\n"):
        (folder / "bad.yaml").write_text(text)
        with pytest.raises(BagFormatError, match="bad.yaml"):
            load_from_repo("bad", folder)


def test_bag_members_must_agree():
    a = build_model("Demucs", dict(sources=SOURCES, channels=4, depth=2))
    b = build_model("Demucs", dict(sources=SOURCES[:2], channels=4, depth=2))
    with pytest.raises(BagError, match="sources"):
        ModelBag([a, b])
    c = build_model("Demucs", dict(sources=SOURCES, channels=4, depth=2, samplerate=22050))
    with pytest.raises(BagError, match="samplerate"):
        ModelBag([a, c])
    with pytest.raises(BagError, match="weight"):
        ModelBag([a, copy.deepcopy(a)], weights=[[1.0] * 4])
    assert ModelBag([a]).max_segment is None


def test_load_model_path_direct_files(repo):
    folder, refs = repo
    model = load_model_path(next(folder.glob("aaaa1111-*.th")))
    assert_same_state(model, refs["aaaa1111"])
    bag = load_model_path(folder / "short.yaml")
    assert isinstance(bag, ModelBag) and len(bag.models) == 2
    (folder / "other.yml").write_text((folder / "long.yaml").read_text())
    assert len(load_model_path(folder / "other.yml").models) == 3
    ours = load_model_path(folder / "hybrid.th")
    save_stemforge(ours, folder / "mine.safetensors", meta={"name": "mine"})
    assert_same_state(load_model_path(folder / "mine.safetensors"), refs["hybrid"])
    assert_same_state(load_from_repo("mine", folder), refs["hybrid"])
    with pytest.raises(ModelNotFoundError):
        load_model_path(folder / "absent.th")
    (folder / "notes.txt").write_text("hello")
    with pytest.raises(RepoError, match="unknown model file type"):
        load_model_path(folder / "notes.txt")
