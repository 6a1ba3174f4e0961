"""``stemforge convert``: official file -> safetensors that separates identically."""
from __future__ import annotations

import numpy as np

from stemforge.cli.main import main as stemforge_main
from stemforge.inference.separator import Separator
from tests.conftest import make_music


def test_convert_then_separate_identically(tmp_path, tiny_repo):
    official = next(tiny_repo.glob("tiny-*.th"))
    converted = tmp_path / "tiny.safetensors"
    assert stemforge_main(["convert", str(official), str(converted)]) == 0
    assert converted.read_bytes()[:8] != official.read_bytes()[:8]
    mix = make_music(3.0)
    a = Separator(official, device="cpu", shifts=0).separate(mix, 44100)
    b = Separator(converted, device="cpu", shifts=0).separate(mix, 44100)
    for stem in a:
        assert np.array_equal(a[stem], b[stem])


def test_convert_refuses_bad_destination_and_bad_source(tmp_path, tiny_repo, capsys):
    official = next(tiny_repo.glob("tiny-*.th"))
    assert stemforge_main(["convert", str(official), str(tmp_path / "out.th")]) == 2
    garbage = tmp_path / "garbage.th"
    garbage.write_bytes(b"PK\x03\x04 not really a zip")
    assert stemforge_main(["convert", str(garbage), str(tmp_path / "x.safetensors")]) == 2
    assert not (tmp_path / "x.safetensors").exists()
    assert "Traceback" not in capsys.readouterr().err
