"""Stem folders: discovery, random segments (deterministic per epoch/index), remix, normalisation."""
from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from stemforge.data.datasets import (DatasetError, StemSegments, find_tracks, load_mixture, load_segment,
                                     load_stems, read_track)
from tests.train.helpers import RATE, SOURCES, write_song


@pytest.fixture
def root(tmp_path):
    for i in range(3):
        write_song(tmp_path / "train" / f"song_{i}", 1.5, seed=i)
    write_song(tmp_path / "train" / ".song_partial", 1.5, seed=9)  # still being written
    incomplete = tmp_path / "train" / "song_incomplete"
    write_song(incomplete, 1.5, seed=8)
    (incomplete / "vocals.flac").unlink()
    return tmp_path


def test_find_tracks_skips_hidden_and_incomplete(root):
    tracks = find_tracks(root, "train", SOURCES)
    assert [t.name for t in tracks] == ["song_0", "song_1", "song_2"]
    assert tracks[0].length == int(1.5 * RATE) and tracks[0].samplerate == RATE and tracks[0].channels == 2
    assert find_tracks(root, "valid", SOURCES) == []
    assert [t.name for t in find_tracks(root, "train", SOURCES, exclude=["song_1"])] == ["song_0", "song_2"]


def test_any_number_of_stems_and_no_mixture_file(tmp_path):
    write_song(tmp_path / "train" / "a", 1.0, seed=0, sources=["left", "right"], mixture=False)
    (track,) = find_tracks(tmp_path, "train", ["left", "right"])
    stems = load_stems(track, ["left", "right"], 2)
    assert stems.shape == (2, 2, RATE)
    torch.testing.assert_close(load_mixture(track, ["left", "right"], 2), stems.sum(0))


def test_mixture_file_is_the_stem_sum(root):
    track = read_track(root / "train" / "song_0", SOURCES)
    torch.testing.assert_close(load_mixture(track, SOURCES, 2), load_stems(track, SOURCES, 2).sum(0),
                               atol=1e-5, rtol=0)


def test_load_segment_pads_and_converts_channels(tmp_path):
    path = tmp_path / "mono.wav"
    sf.write(str(path), np.linspace(-0.5, 0.5, 100, dtype=np.float32), RATE, subtype="FLOAT")
    seg = load_segment(path, 90, 20, 2)
    assert seg.shape == (2, 20)
    np.testing.assert_array_equal(seg[0], seg[1])
    assert np.all(seg[:, 10:] == 0) and np.all(seg[:, :10] != 0)


def test_segments_are_a_function_of_epoch_and_index(root):
    tracks = find_tracks(root, "train", SOURCES)
    data = StemSegments(tracks, SOURCES, length=4000, examples=6, seed=3)
    first = data[2]
    assert first.shape == (4, 2, 4000) and first.dtype == torch.float32
    assert len(data) == 6
    torch.testing.assert_close(data[2], first, atol=0, rtol=0)
    assert not torch.equal(data[3], first)
    data.set_epoch(1)
    assert not torch.equal(data[2], first)
    data.set_epoch(0)
    torch.testing.assert_close(data[2], first, atol=0, rtol=0)


def test_segments_are_normalised_by_the_track_mixture(root):
    tracks = find_tracks(root, "train", SOURCES)[:1]
    raw = StemSegments(tracks, SOURCES, length=RATE, examples=1, normalize=False)[0]
    scaled = StemSegments(tracks, SOURCES, length=RATE, examples=1, normalize=True)[0]
    std = float(load_mixture(tracks[0], SOURCES, 2).mean(0).std())
    torch.testing.assert_close(scaled, raw / std, atol=1e-5, rtol=1e-4)


def test_remix_takes_stems_from_several_songs(root):
    tracks = find_tracks(root, "train", SOURCES)
    whole = {t.name: load_stems(t, SOURCES, 2) for t in tracks}
    data = StemSegments(tracks, SOURCES, length=int(1.5 * RATE), examples=40, normalize=False, remix_prob=1.0)

    def origin(example, s):  # which song a full-length stem comes from
        return next(name for name, stems in whole.items() if torch.allclose(stems[s], example[s], atol=1e-6))

    mixed = [len({origin(data[i], s) for s in range(len(SOURCES))}) > 1 for i in range(10)]
    assert any(mixed)
    plain = StemSegments(tracks, SOURCES, length=int(1.5 * RATE), examples=10, normalize=False)
    assert all(len({origin(plain[i], s) for s in range(len(SOURCES))}) == 1 for i in range(5))


def test_empty_dataset_is_an_error():
    with pytest.raises(DatasetError):
        StemSegments([], SOURCES, length=100)
