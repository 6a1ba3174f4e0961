"""The model table agrees with Demucs' own list of files and bags; ``stemforge models`` lists it."""
from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import pytest
import yaml

from stemforge.cli import models as models_cli
from stemforge.models.demucs_v2 import V2_OFFICIAL
from stemforge.pretrained import hub
from stemforge.pretrained.cards import (
    CARDS,
    FOUR_STEMS,
    OFFICIAL_ROOT_URL,
    UnknownModelError,
    card_names,
    get_card,
)

ISSUE_NAMES = ["htdemucs", "htdemucs_ft", "htdemucs_6s", "hdemucs_mmi", "mdx", "mdx_extra", "mdx_q",
               "mdx_extra_q", "demucs", "demucs48_hq", "demucs_extra"]


def demucs_remote_dir() -> Path:
    import demucs.pretrained

    return Path(demucs.pretrained.REMOTE_ROOT)


def demucs_remote_urls() -> dict[str, str]:
    """signature -> URL, read from demucs' ``remote/files.txt`` (root lines prefix the files)."""
    import demucs.pretrained

    urls, root = {}, ""
    for line in (demucs_remote_dir() / "files.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("root:"):
            root = line.split(":", 1)[1].strip()
        else:
            urls[line.split("-", 1)[0]] = demucs.pretrained.ROOT_URL + root + line
    return urls


def test_every_model_of_the_issue_has_a_card():
    assert sorted(card_names()) == sorted(ISSUE_NAMES)
    assert all(CARDS[name].name == name for name in CARDS)


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_file_names_carry_their_checksum(name):
    for file in get_card(name).files:
        assert re.fullmatch(r"[0-9a-f]{8}", file.sha256_prefix)
        assert file.filename == f"{file.signature}-{file.sha256_prefix}.th"


@pytest.mark.parametrize("name", [n for n in ISSUE_NAMES if CARDS[n].is_bag])
def test_bags_match_demucs_remote_files(name, monkeypatch):
    monkeypatch.delenv(hub.ENV_MODEL_URL, raising=False)
    card = get_card(name)
    official = yaml.safe_load((demucs_remote_dir() / f"{name}.yaml").read_text())
    assert hub.bag_description(card) == official
    urls = demucs_remote_urls()
    assert [hub.file_url(file) for file in card.files] == [urls[sig] for sig in official["models"]]


@pytest.mark.parametrize("name", ["demucs", "demucs_extra", "demucs48_hq"])
def test_v2_models_are_single_files_under_v3_0(name, monkeypatch):
    monkeypatch.delenv(hub.ENV_MODEL_URL, raising=False)
    card = get_card(name)
    assert not card.is_bag and card.architecture == "DemucsV2" and len(card.files) == 1
    assert card.files[0].signature == name  # found by name in the cache folder (--repo layout)
    assert hub.file_url(card.files[0]) == f"{OFFICIAL_ROOT_URL}v3.0/{V2_OFFICIAL[name][0]}"


@pytest.mark.parametrize("name", ISSUE_NAMES)
def test_card_data_is_consistent(name):
    card = get_card(name)
    assert card.sources[:4] == FOUR_STEMS
    assert card.default_segment and card.default_segment > 0
    if card.bag_weights is not None:
        assert len(card.bag_weights) == len(card.files)
        assert all(len(row) == len(card.sources) for row in card.bag_weights)
    assert "MIT" in card.licence and "see upstream" in card.licence
    assert "MUSDB18" in card.licence or "see upstream (" in card.licence
    assert card.size_mb is None or card.size_mb > 10


def test_six_stem_model_and_quantized_flags():
    six = ("drums", "bass", "other", "vocals", "guitar", "piano")
    assert get_card("htdemucs_6s").sources == six
    assert {n for n in CARDS if CARDS[n].quantized} == {"mdx_q", "mdx_extra_q"}
    assert get_card("htdemucs_ft").size_mb == pytest.approx(4 * 84.1)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(UnknownModelError, match="unknown model 'nope'; known models: htdemucs"):
        get_card("nope")


def test_injected_table():
    table = {"only": CARDS["htdemucs"]}
    assert card_names(table) == ["only"]
    with pytest.raises(UnknownModelError, match="known models: only"):
        get_card("htdemucs", table)


# ---------------------------------------------------------------------------------------------
# stemforge models


def run_models(*argv: str) -> str:
    parser = argparse.ArgumentParser()
    models_cli.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", *argv])
    assert args.handler is models_cli.run
    out = io.StringIO()
    assert args.handler(args, out=out) == 0
    return out.getvalue()


def test_models_lists_every_card_and_what_is_cached(tmp_path, monkeypatch):
    monkeypatch.setenv(hub.ENV_CACHE, str(tmp_path))
    folder = hub.models_dir()
    folder.mkdir(parents=True)
    (folder / get_card("htdemucs").files[0].filename).write_bytes(b"x")

    text = run_models()

    rows = {line.split()[0]: line.split() for line in text.splitlines() if line.strip()}
    assert set(ISSUE_NAMES) <= set(rows)
    assert rows["htdemucs"][1:4] == ["drums,bass,other,vocals", "84", "MB"]
    assert rows["htdemucs"][4] == "yes" and rows["htdemucs_ft"][4] == "no"
    assert "drums,bass,other,vocals,guitar,piano" in rows["htdemucs_6s"]
    assert " ".join(rows["demucs"]).endswith("code MIT; weights: see upstream")
    assert str(folder) in text


def test_models_long_shows_urls_and_licence(tmp_path, monkeypatch):
    monkeypatch.setenv(hub.ENV_CACHE, str(tmp_path))
    monkeypatch.delenv(hub.ENV_MODEL_URL, raising=False)
    text = run_models("--long")
    assert f"{OFFICIAL_ROOT_URL}hybrid_transformer/955717e8-8726e21a.th" in text
    assert "bag of 4 models" in text and "see upstream" in text


def test_models_repo_lists_a_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(hub.ENV_CACHE, str(tmp_path / "cache"))
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "abcd0001-12345678.th").write_bytes(b"\0" * 2_000_000)
    (repo / "mybag.yaml").write_text("models: [abcd0001]\n")

    text = run_models("--repo", str(repo))

    listed = text.split(f"models in {repo}:")[1]
    assert re.search(r"abcd0001\s+model\s+2 MB\s+abcd0001-12345678.th", listed)
    assert re.search(r"mybag\s+bag", listed)
