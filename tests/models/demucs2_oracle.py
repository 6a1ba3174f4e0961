"""Test oracle: ``demucs/model.py`` from the demucs 2.0.3 sdist, loaded without installing it.

demucs 2.0.3 cannot be installed next to demucs 4.1.0 (same package name), and its ``utils``
module imports ``diffq``. We only need ``model.py``: it is loaded with importlib under a private
package name, with a small stand-in for its relative ``.utils`` import. ``julius`` (a test
dependency) must be importable.

Source location: ``$STEMFORGE_DEMUCS2_SRC`` (a directory containing ``demucs/model.py``), else
``<repo>/.cache/demucs-2.0.3`` as written by ``.ci/fetch_oracles.sh``.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

_PACKAGE = "_stemforge_oracle_demucs2"
DEFAULT_SRC = Path(__file__).resolve().parents[2] / ".cache" / "demucs-2.0.3"


class OracleMissingError(RuntimeError):
    """The demucs 2.0.3 source is not available."""


def oracle_source_dir() -> Path:
    """Directory holding ``demucs/model.py`` of demucs 2.0.3 (not checked for existence)."""
    return Path(os.environ.get("STEMFORGE_DEMUCS2_SRC", DEFAULT_SRC))


def _model_file() -> Path:
    path = oracle_source_dir() / "demucs" / "model.py"
    if not path.is_file():
        raise OracleMissingError(
            f"demucs 2.0.3 source not found at {path}. Run `.ci/fetch_oracles.sh` from the "
            "repository root (or set STEMFORGE_DEMUCS2_SRC to a directory containing "
            "demucs/model.py).")
    return path


def _capture_init(init):
    """Record constructor ``(args, kwargs)`` on the instance, as demucs' ``capture_init`` does."""
    def wrapped(self, *args, **kwargs):
        self._init_args_kwargs = (args, kwargs)
        init(self, *args, **kwargs)
    wrapped.__name__ = init.__name__
    wrapped.__doc__ = init.__doc__
    return wrapped


def _center_trim(tensor, reference):
    """Centre-trim ``tensor`` to the length of ``reference`` (a tensor or an int)."""
    length = reference.size(-1) if hasattr(reference, "size") else int(reference)
    excess = tensor.size(-1) - length
    if excess < 0:
        raise ValueError(f"tensor must be larger than reference. Delta is {excess}.")
    return tensor[..., excess // 2: excess // 2 + length]


def _install_stub_package() -> None:
    package = types.ModuleType(_PACKAGE)
    package.__path__ = []  # a package, so that relative imports resolve
    utils = types.ModuleType(f"{_PACKAGE}.utils")
    utils.capture_init = _capture_init
    utils.center_trim = _center_trim
    sys.modules[_PACKAGE] = package
    sys.modules[f"{_PACKAGE}.utils"] = utils


def load_oracle_module() -> types.ModuleType:
    """Import demucs 2.0.3's ``model.py`` (cached in ``sys.modules``) and return the module."""
    name = f"{_PACKAGE}.model"
    if name in sys.modules:
        return sys.modules[name]
    path = _model_file()
    _install_stub_package()
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def oracle_available() -> bool:
    """True when the 2.0.3 source is present (for ``pytest.mark.skipif``)."""
    try:
        _model_file()
    except OracleMissingError:
        return False
    return True


def Demucs2(*args, **kwargs):
    """Build demucs 2.0.3's ``Demucs`` with the given constructor arguments."""
    return load_oracle_module().Demucs(*args, **kwargs)
