"""Scoring folders of stems, the JSON and table output, and the ``eval`` subcommand."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from stemforge.cli import evaluate as eval_cli
from stemforge.cli.main import run_guarded
from stemforge.eval.evaluate import (EvaluationError, aggregate, evaluate_folders, evaluate_model,
                                     evaluation_groups, format_table, results_json, score_track)
from stemforge.eval.metrics import bss_eval_v4, sdx_sdr
from tests.conftest import make_music

RATE = 44100
STEMS = ("drums", "bass", "vocals")


def write_track(folder: Path, stems: dict[str, np.ndarray]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, audio in stems.items():
        soundfile.write(folder / f"{name}.wav", audio.T, RATE, subtype="FLOAT")


def make_track(seed: int, seconds: float = 2.2) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    refs = {name: make_music(seconds, RATE, seed=seed * 10 + i) for i, name in enumerate(STEMS)}
    ests = {name: (audio + 0.02 * rng.standard_normal(audio.shape)).astype(np.float32)
            for name, audio in refs.items()}
    return refs, ests


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("eval")
    tracks = {}
    for index, name in enumerate(["Track A", "Track B"]):
        refs, ests = make_track(index + 1)
        write_track(root / "musdb" / "test" / name, {**refs, "mixture": sum(refs.values())})
        write_track(root / "separated" / name, ests)
        tracks[name] = (refs, ests)
    return {"root": root, "tracks": tracks}


def expected_scores(refs: dict, ests: dict, stems) -> dict:
    ref = np.stack([refs[s] for s in stems]).astype(np.float64)
    est = np.stack([ests[s] for s in stems]).astype(np.float64)
    medians = bss_eval_v4(ref, est).medians()
    nsdr = sdx_sdr(ref, est)
    return {stem: {**{m: medians[m][i] for m in medians}, "nSDR": nsdr[i]} for i, stem in enumerate(stems)}


def test_folders_are_scored_like_direct_calls(dataset):
    results = evaluate_folders(dataset["root"] / "musdb", dataset["root"] / "separated", subset="test")
    assert [r.name for r in results] == ["Track A", "Track B"]
    for result in results:
        refs, ests = dataset["tracks"][result.name]
        expected = expected_scores(refs, ests, STEMS)
        assert list(result.scores) == list(STEMS)
        for stem in STEMS:
            for name, value in expected[stem].items():
                assert result.scores[stem][name] == pytest.approx(value, abs=1e-9), (stem, name)
        assert len(result.frames["drums"]["SDR"]) == 2


def test_aggregate_json_and_table(dataset):
    results = evaluate_folders(dataset["root"] / "musdb", dataset["root"] / "separated", subset="test")
    summary = aggregate(results)
    for stem in STEMS:
        sdrs = [r.scores[stem]["SDR"] for r in results]
        assert summary[stem]["SDR"] == pytest.approx(np.median(sdrs))
        assert summary[stem]["nSDR"] == pytest.approx(np.mean([r.scores[stem]["nSDR"] for r in results]))
    payload = json.loads(json.dumps(results_json(results), allow_nan=False))
    assert set(payload["tracks"]) == {"Track A", "Track B"}
    assert set(payload["tracks"]["Track A"]["vocals"]) == {"SDR", "SIR", "ISR", "SAR", "nSDR"}
    assert set(payload["aggregate"]) == set(STEMS)
    table = format_table(summary).splitlines()
    assert table[0].split() == ["stem", "SDR", "SIR", "ISR", "SAR", "nSDR"]
    assert [line.split()[0] for line in table[2:]] == list(STEMS) + ["average"]
    average_sdr = float(table[-1].split()[1])
    assert average_sdr == pytest.approx(np.mean([summary[s]["SDR"] for s in STEMS]), abs=1e-3)


def test_accompaniment_is_scored_as_a_pair_like_museval():
    refs, ests = make_track(3)
    accompaniment = refs["drums"] + refs["bass"]
    estimates = {"vocals": ests["vocals"], "accompaniment": accompaniment + 0.05}
    result = score_track("t", refs, estimates, RATE)
    expected = expected_scores({"vocals": refs["vocals"], "accompaniment": accompaniment}, estimates,
                               ["vocals", "accompaniment"])
    for stem in ("vocals", "accompaniment"):
        assert result.scores[stem]["SDR"] == pytest.approx(expected[stem]["SDR"], abs=1e-9)


def test_evaluation_groups():
    assert evaluation_groups(["drums", "bass", "vocals"]) == [(["drums", "bass", "vocals"],) * 2]
    assert evaluation_groups(["drums", "vocals", "accompaniment"]) == [
        (["drums", "vocals"], ["drums"]), (["vocals", "accompaniment"], ["vocals", "accompaniment"])]
    assert evaluation_groups(["vocals", "no_vocals"]) == [(["vocals", "no_vocals"], ["vocals", "no_vocals"])]


def test_estimates_are_padded_or_truncated_to_the_reference_length():
    refs, ests = make_track(4)
    short = {name: audio[:, :-1000] for name, audio in ests.items()}
    result = score_track("t", refs, short, RATE)
    padded = {name: np.pad(audio, [(0, 0), (0, 1000)]) for name, audio in short.items()}
    assert result.scores["bass"]["SDR"] == pytest.approx(expected_scores(refs, padded, STEMS)["bass"]["SDR"])


def test_no_matching_stems_is_an_error():
    refs, ests = make_track(5)
    with pytest.raises(EvaluationError, match="no estimated stem has a reference"):
        score_track("t", refs, {"piano": ests["bass"]}, RATE)


class NoisySeparator:
    """Stands in for :class:`Separator`: returns the track's stems plus a little noise."""

    sources = list(STEMS)

    def __init__(self, tracks: dict):
        self.by_length = {refs["drums"].shape[-1] + i: refs for i, (refs, _) in enumerate(tracks.values())}
        self.calls = []

    def separate_file(self, path):
        self.calls.append(Path(path).parent.name)
        mixture, _ = soundfile.read(path, always_2d=True)
        rng = np.random.default_rng(len(self.calls))
        mix = mixture.T
        return {name: mix / 3 + 0.01 * rng.standard_normal(mix.shape) for name in STEMS}


def test_model_mode_separates_each_mixture(dataset):
    separator = NoisySeparator(dataset["tracks"])
    results = evaluate_model(separator, dataset["root"] / "musdb", subset="test")
    assert separator.calls == ["Track A", "Track B"]
    assert [r.name for r in results] == ["Track A", "Track B"]
    assert set(results[0].scores) == set(STEMS)


def run_eval(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="stemforge")
    commands = parser.add_subparsers(dest="command")
    eval_cli.add_parser(commands)
    args = parser.parse_args(["eval", *argv])
    return run_guarded(args.handler, args)


def test_cli_folders_mode_writes_json(dataset, tmp_path, capsys):
    out = tmp_path / "scores.json"
    code = run_eval(["--references", str(dataset["root"] / "musdb"),
                     "--estimates", str(dataset["root"] / "separated"), "--json", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "average" in printed and "nSDR" in printed
    payload = json.loads(out.read_text())
    assert set(payload) >= {"tracks", "aggregate"}
    track_sdrs = [expected_scores(refs, ests, STEMS)["vocals"]["SDR"] for refs, ests in dataset["tracks"].values()]
    assert payload["aggregate"]["vocals"]["SDR"] == pytest.approx(np.median(track_sdrs), abs=1e-9)


def test_cli_wrong_options_fail_with_one_line(tmp_path, capsys):
    assert run_eval(["--references", str(tmp_path)]) == 2
    assert "go together" in capsys.readouterr().err
    assert run_eval([]) == 2
    assert "nothing to score" in capsys.readouterr().err


def test_cli_model_mode_with_a_tiny_checkpoint(dataset, tmp_path, capsys):
    from demucs.demucs import Demucs

    from tests.reference import official_package, save_official

    torch.manual_seed(0)
    save_official(official_package(Demucs(sources=["drums", "bass", "other", "vocals"], channels=4, depth=2)),
                  tmp_path, "tiny")
    out = tmp_path / "model.json"
    code = run_eval(["-n", "tiny", "--repo", str(tmp_path), "--tracks", str(dataset["root"] / "musdb"),
                     "--shifts", "0", "-d", "cpu", "--json", str(out), "-q"])
    assert code == 0, capsys.readouterr().err
    payload = json.loads(out.read_text())
    assert set(payload["tracks"]["Track A"]) == {"drums", "bass", "vocals"}   # the stems with references
