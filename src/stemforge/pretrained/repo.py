"""Models from a local folder (``--repo DIR``), resolved the way Demucs resolves its local repos.

A name ``NAME`` is looked up in ``DIR`` as:

1. a model file ``NAME-<hex>.th`` (the hex suffix is a prefix of the file's sha256, verified
   before loading) or ``NAME.th``; stemforge ``.safetensors`` files are found the same way;
2. otherwise a bag ``NAME.yaml`` (``models: [sig, ...]``, optional ``weights`` and ``segment``)
   whose member signatures are resolved as model files of the same folder.

One difference from Demucs: a ``-suffix`` that is not hexadecimal is part of the name
(``my-model.th`` is the model ``my-model``) instead of being taken for a checksum that must fail.
"""
from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import yaml

from . import readahead
from .hub import file_sha256

if TYPE_CHECKING:  # torch is imported only when a model is loaded (see files_in_repo)
    from torch import nn

    from stemforge.models.bag import ModelBag

PathLike = str | os.PathLike
MODEL_SUFFIXES = (".th", ".safetensors")
BAG_SUFFIX = ".yaml"  # in a repo folder, like Demucs
DIRECT_BAG_SUFFIXES = (".yaml", ".yml")  # a bag file given by path
_HEX = re.compile(r"[0-9a-f]+")


class RepoError(Exception):
    """A model cannot be resolved in a local folder."""


class ModelNotFoundError(RepoError, LookupError):
    """No model or bag has that name."""


class ChecksumError(RepoError):
    """A file's sha256 does not start with the checksum in its name."""


class DuplicateModelError(RepoError):
    """Two files in the folder claim the same model name."""


class BagFormatError(RepoError):
    """A bag ``.yaml`` file is malformed."""


@dataclass(frozen=True)
class ModelEntry:
    """A model file found in a repo: its name, path, and the checksum prefix from its name."""

    name: str
    path: Path
    checksum: str | None


def split_checksum(stem: str) -> tuple[str, str | None]:
    """``"955717e8-8726e21a"`` -> ``("955717e8", "8726e21a")``; ``"mine"`` -> ``("mine", None)``."""
    if "-" in stem:
        name, suffix = stem.rsplit("-", 1)
        if name and _HEX.fullmatch(suffix):
            return name, suffix
    return stem, None


def verify_checksum(path: PathLike, checksum: str) -> None:
    """Raise :class:`ChecksumError` unless ``sha256(path)`` starts with ``checksum``."""
    actual = (readahead.sha256(path) or file_sha256(path))[: len(checksum)]
    if actual != checksum:
        raise ChecksumError(f"{path}: sha256 starts with {actual}, but the file name says "
                            f"{checksum}; the file is corrupt or incomplete, download it again")


def scan_models(repo_dir: PathLike) -> dict[str, ModelEntry]:
    """Model files of ``repo_dir`` by name; two files with the same name are an error."""
    entries: dict[str, ModelEntry] = {}
    for path in sorted(Path(repo_dir).iterdir()):
        if path.suffix not in MODEL_SUFFIXES or not path.is_file():
            continue
        name, checksum = split_checksum(path.stem)
        if name in entries:
            raise DuplicateModelError(
                f"{repo_dir}: both {entries[name].path.name} and {path.name} are model {name!r}; "
                "delete all but one")
        entries[name] = ModelEntry(name, path, checksum)
    return entries


def scan_bags(repo_dir: PathLike) -> dict[str, Path]:
    """Bag files (``NAME.yaml``) of ``repo_dir`` by name."""
    return {path.stem: path for path in sorted(Path(repo_dir).iterdir())
            if path.suffix == BAG_SUFFIX and path.is_file()}


def _check_dir(repo_dir: PathLike) -> Path:
    repo = Path(repo_dir)
    if not repo.is_dir():
        raise RepoError(f"model repo {repo} does not exist or is not a directory")
    return repo


def list_repo(repo_dir: PathLike) -> dict[str, Path]:
    """Every name ``load_from_repo`` accepts in ``repo_dir`` -> its file (models win over bags)."""
    repo = _check_dir(repo_dir)
    found: dict[str, Path] = dict(scan_bags(repo))
    found.update({name: entry.path for name, entry in scan_models(repo).items()})
    return dict(sorted(found.items()))


def load_entry(entry: ModelEntry) -> nn.Module:
    """Load the model; with a checksum in the file name, only once the file is verified.

    The sha256 runs in a thread while the file is parsed (hashing releases the GIL), so the check
    costs no start-up time on a multi-core machine. A corrupt file reports the checksum mismatch
    rather than whatever parse error the corruption caused.
    """
    from .checkpoint import load_model_file

    if entry.checksum is None:
        return load_model_file(entry.path)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256") as pool:
        verified = pool.submit(verify_checksum, entry.path, entry.checksum)
        try:
            model = load_model_file(entry.path)
        except Exception:
            verified.result()  # raises ChecksumError if that is the cause
            raise
        verified.result()
    return model


def _member_resolver(models: dict[str, ModelEntry], where: Path) -> Callable[[str], nn.Module]:
    def resolve(sig: str) -> nn.Module:
        if sig not in models:
            raise ModelNotFoundError(f"bag {where} needs model {sig!r}, which is not in "
                                     f"{where.parent}")
        return load_entry(models[sig])
    return resolve


def _parse_bag(content: Any, path: PathLike) -> tuple[list[str], Any, Any]:
    if not isinstance(content, dict) or not isinstance(content.get("models"), list):
        raise BagFormatError(f"{path}: a bag file needs a 'models' list")
    sigs = content["models"]
    if not sigs or not all(isinstance(sig, (str, int)) for sig in sigs):
        raise BagFormatError(f"{path}: 'models' must be a non-empty list of model names")
    weights = content.get("weights")
    if weights is not None and not (
            isinstance(weights, list) and all(isinstance(row, list) for row in weights)):
        raise BagFormatError(f"{path}: 'weights' must be a list of per-source weight lists")
    segment = content.get("segment")
    if segment is not None and (isinstance(segment, bool) or not isinstance(segment, (int, float))
                                or segment <= 0):
        raise BagFormatError(f"{path}: 'segment' must be a positive number of seconds")
    return [str(sig) for sig in sigs], weights, segment


def _read_bag(path: PathLike) -> tuple[list[str], Any, Any]:
    """``(member signatures, weights, segment)`` of a bag file; :class:`BagFormatError` if it
    cannot be read or is malformed."""
    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise BagFormatError(f"{path}: cannot read bag file ({exc})") from None
    return _parse_bag(content, path)


def load_bag_yaml(path: PathLike, resolve: Callable[[str], nn.Module]) -> ModelBag:
    """Build the bag described by a yaml file, loading each member with ``resolve(sig)``.

    Members are loaded separately (a signature listed twice gives two modules), because the
    bag's ``segment`` override changes members in place.
    """
    from stemforge.models.bag import ModelBag

    sigs, weights, segment = _read_bag(path)
    models = [resolve(sig) for sig in sigs]
    try:
        bag = ModelBag(models, weights, segment)
    except ValueError as exc:
        raise BagFormatError(f"{path}: {exc}") from None
    bag.eval()
    return bag


def _find(name: str, repo_dir: PathLike) -> tuple[dict[str, ModelEntry], ModelEntry | Path]:
    """The repo's models, and model ``name`` in it or else its bag file (a model wins)."""
    repo = _check_dir(repo_dir)
    models = scan_models(repo)
    if name in models:
        return models, models[name]
    bags = scan_bags(repo)
    if name in bags:
        return models, bags[name]
    available = ", ".join(sorted(set(models) | set(bags))) or "none"
    raise ModelNotFoundError(f"no model or bag named {name!r} in {repo} (available: {available})")


def load_from_repo(name: str, repo_dir: PathLike) -> nn.Module:
    """Load model or bag ``name`` from the folder ``repo_dir`` (a single model wins over a bag)."""
    models, found = _find(name, repo_dir)
    if isinstance(found, ModelEntry):
        return load_entry(found)
    return load_bag_yaml(found, _member_resolver(models, found))


def files_in_repo(name: str, repo_dir: PathLike) -> list[Path]:
    """The model files ``load_from_repo(name, repo_dir)`` reads (a bag: its members'), found
    without importing torch; empty when ``name`` does not resolve (loading reports why)."""
    try:
        models, found = _find(name, repo_dir)
        if isinstance(found, ModelEntry):
            return [found.path]
        return _bag_member_files(found, models)
    except (RepoError, OSError):
        return []


def files_of_path(path: PathLike) -> list[Path]:
    """The model files ``load_model_path(path)`` reads, like :func:`files_in_repo`."""
    path = Path(path)
    try:
        if path.suffix in DIRECT_BAG_SUFFIXES:
            return _bag_member_files(path, scan_models(path.parent))
    except (RepoError, OSError):
        return []
    return [path] if path.suffix in MODEL_SUFFIXES and path.is_file() else []


def _bag_member_files(bag: Path, models: dict[str, ModelEntry]) -> list[Path]:
    try:
        sigs, _, _ = _read_bag(bag)
    except BagFormatError:
        return []
    return [models[sig].path for sig in dict.fromkeys(sigs) if sig in models]


def load_model_path(path: PathLike) -> nn.Module:
    """Load a file given directly: a model ``.th``/``.safetensors`` or a bag ``.yaml``.

    A bag's members are resolved in the yaml file's folder. A hex ``-suffix`` in a model file
    name is verified as a sha256 prefix, as in a repo.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist")
    if path.suffix in DIRECT_BAG_SUFFIXES:
        return load_bag_yaml(path, _member_resolver(scan_models(path.parent), path))
    if path.suffix in MODEL_SUFFIXES:
        name, checksum = split_checksum(path.stem)
        return load_entry(ModelEntry(name, path, checksum))
    raise RepoError(f"{path}: unknown model file type {path.suffix!r} "
                    f"(expected one of {', '.join(MODEL_SUFFIXES + DIRECT_BAG_SUFFIXES)})")
