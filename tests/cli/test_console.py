"""The ``stemforge`` executable ends right after ``separate`` and normally after the rest."""
from __future__ import annotations

import pytest

from stemforge.cli import main as cli_main


class _Exited(Exception):
    def __init__(self, how: str, code: int) -> None:
        super().__init__(how, code)
        self.how, self.code = how, code


@pytest.fixture
def exits(monkeypatch):
    def quick(code: int) -> None:
        raise _Exited("os._exit", code)

    def normal(code: int) -> None:
        raise _Exited("sys.exit", code)

    monkeypatch.setattr(cli_main.os, "_exit", quick)
    monkeypatch.setattr(cli_main.sys, "exit", normal)


def test_separate_skips_the_teardown_with_its_exit_status(exits, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("sys.argv", ["stemforge", "separate", str(tmp_path / "missing.wav"),
                                     "-o", str(tmp_path / "out")])
    with pytest.raises(_Exited) as exited:
        cli_main.console()
    assert (exited.value.how, exited.value.code) == ("os._exit", cli_main.EXIT_USER_ERROR)
    assert "missing.wav" in capsys.readouterr().err


def test_other_commands_exit_normally(exits, monkeypatch):
    monkeypatch.setattr("sys.argv", ["stemforge", "models"])
    with pytest.raises(_Exited) as exited:
        cli_main.console()
    assert (exited.value.how, exited.value.code) == ("sys.exit", 0)
