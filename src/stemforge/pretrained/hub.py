"""Lazy, verified, resumable downloads of the models named in :mod:`stemforge.pretrained.cards`.

``fetch_model_files(name)`` makes sure every file of a model is in the cache folder and returns
that folder, laid out like a ``--repo`` folder (official file names ``<sig>-<sha8>.th`` plus a
``NAME.yaml`` for bags), so :func:`stemforge.pretrained.repo.load_from_repo` loads it.

A download goes to ``<file>.part``; an interrupted transfer (dropped connection, or a previous run
that was killed) continues from the end of the ``.part`` file with an HTTP Range request (a server
that ignores Range sends the whole file again, which is handled). The sha256 prefix carried by
the official file name is checked before the file is renamed into place, so the cache only ever
holds verified files.

Environment:

- ``STEMFORGE_CACHE``: cache folder (default: the platform cache dir, see :func:`cache_dir`);
  models go to its ``models/`` subfolder.
- ``STEMFORGE_OFFLINE=1``: never touch the network; only cached files are used.
- ``STEMFORGE_MODEL_URL``: a mirror replacing ``https://dl.fbaipublicfiles.com/demucs/``; it
  must serve the same relative paths (``hybrid_transformer/955717e8-8726e21a.th`` ...).

Only the standard library's ``urllib`` is used for HTTP.
"""
from __future__ import annotations

import hashlib
import http.client
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterable, Mapping, Optional

import yaml

from .cards import OFFICIAL_ROOT_URL, ModelCard, ModelFile, get_card

logger = logging.getLogger(__name__)

ENV_CACHE = "STEMFORGE_CACHE"
ENV_OFFLINE = "STEMFORGE_OFFLINE"
ENV_MODEL_URL = "STEMFORGE_MODEL_URL"

PART_SUFFIX = ".part"
CHUNK_BYTES = 1 << 16
TIMEOUT_S = 30.0
RETRIES = 5
RETRY_DELAY_S = 1.0  # doubled after every failed attempt
_USER_AGENT = "stemforge-model-download"
_TRUE = frozenset({"1", "true", "yes", "on"})


class HubError(Exception):
    """A model could not be obtained; the message says what to do."""


class OfflineError(HubError):
    """Offline mode is on and the model is not in the cache."""


class DownloadError(HubError):
    """A file could not be downloaded (HTTP error, network down after all retries)."""


class ChecksumMismatchError(DownloadError):
    """A downloaded file's sha256 does not start with the expected prefix."""


class _Retryable(Exception):
    """A transfer failed in a way that a new attempt (resuming) may fix."""


# ---------------------------------------------------------------------------------------------
# Settings from the environment


def cache_dir() -> Path:
    """``STEMFORGE_CACHE``, else the platform's user cache folder + ``stemforge``."""
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return Path(configured).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "stemforge"
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else home / "AppData" / "Local") / "stemforge" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else home / ".cache") / "stemforge"


def models_dir() -> Path:
    """The folder holding downloaded model files (usable as ``--repo``)."""
    return cache_dir() / "models"


def offline() -> bool:
    """True when ``STEMFORGE_OFFLINE`` is set to 1/true/yes/on."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in _TRUE


def base_url() -> str:
    """The download root: ``STEMFORGE_MODEL_URL`` or the official Demucs root, ending in ``/``."""
    url = os.environ.get(ENV_MODEL_URL, "").strip() or OFFICIAL_ROOT_URL
    return url if url.endswith("/") else url + "/"


def file_url(file: ModelFile, root: Optional[str] = None) -> str:
    """The URL of ``file`` under ``root`` (default :func:`base_url`)."""
    root = base_url() if root is None else (root if root.endswith("/") else root + "/")
    return root + file.path.lstrip("/")


# ---------------------------------------------------------------------------------------------
# Cache queries


def missing_files(card: ModelCard, folder: Optional[Path] = None) -> list[ModelFile]:
    """The files of ``card`` that are not (yet) in ``folder`` (default :func:`models_dir`)."""
    folder = models_dir() if folder is None else folder
    return [file for file in card.files if not (folder / file.filename).is_file()]


def is_cached(name: str, cards: Optional[Mapping[str, ModelCard]] = None) -> bool:
    """True when every file of model ``name`` is in the cache (no network needed)."""
    return not missing_files(get_card(name, cards))


# ---------------------------------------------------------------------------------------------
# Fetching a model


def fetch_model_files(name: str, *, cards: Optional[Mapping[str, ModelCard]] = None,
                      progress: bool = True) -> Path:
    """Download (if needed) every file of model ``name``; return the cache folder holding them.

    The folder can be passed to :func:`stemforge.pretrained.repo.load_from_repo` with ``name``:
    single-file models are found by their file name, bags by the ``NAME.yaml`` written here.
    Raises :class:`OfflineError` in offline mode when a file is missing, :class:`DownloadError`
    (or :class:`ChecksumMismatchError`) when a download fails.
    """
    card = get_card(name, cards)
    folder = models_dir()
    missing = missing_files(card, folder)
    if missing and offline():
        raise OfflineError(_offline_message(card, folder, missing))
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        root = base_url()
        for file in missing:
            logger.info("downloading %s for model %s", file.filename, name)
            download_file(file_url(file, root), folder / file.filename, file.sha256_prefix,
                          progress=progress)
    if card.is_bag:
        write_bag_yaml(card, folder)
    return folder


def _offline_message(card: ModelCard, folder: Path, missing: Iterable[ModelFile]) -> str:
    names = ", ".join(file.filename for file in missing)
    return (f"model {card.name!r} is not in the cache ({folder}; missing {names}) and "
            f"{ENV_OFFLINE} is set: unset {ENV_OFFLINE} to download it, or pass --repo DIR with "
            "its files")


def bag_description(card: ModelCard) -> dict:
    """The content of the bag file ``NAME.yaml`` for ``card`` (Demucs' bag format)."""
    content: dict = {"models": [file.signature for file in card.files]}
    if card.bag_weights is not None:
        content["weights"] = [list(row) for row in card.bag_weights]
    if card.bag_segment is not None:
        content["segment"] = card.bag_segment
    return content


def write_bag_yaml(card: ModelCard, folder: Path) -> Path:
    """Write ``folder/NAME.yaml`` for ``card`` (atomically; untouched when already up to date)."""
    path = folder / f"{card.name}.yaml"
    text = yaml.safe_dump(bag_description(card), sort_keys=False)
    if path.is_file() and path.read_text() == text:
        return path
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


# ---------------------------------------------------------------------------------------------
# Downloading one file


def download_file(url: str, dest: Path, sha256_prefix: str, *, progress: bool = True,
                  retries: Optional[int] = None, retry_delay: Optional[float] = None) -> Path:
    """Download ``url`` to ``dest`` through ``dest.part``; verify the sha256 prefix; rename.

    An existing ``.part`` file is resumed. If a resumed file fails the checksum it is discarded
    and downloaded once more from scratch (the old part may come from another file version).
    """
    dest = Path(dest)
    part = dest.with_name(dest.name + PART_SUFFIX)
    resumed = part.is_file() and part.stat().st_size > 0
    _transfer_with_retries(url, part, progress, retries, retry_delay)
    if not _matches(part, sha256_prefix) and resumed:
        logger.warning("%s: resumed download is corrupt; downloading it again", dest.name)
        part.unlink()
        _transfer_with_retries(url, part, progress, retries, retry_delay)
    if not _matches(part, sha256_prefix):
        actual = file_sha256(part)[: len(sha256_prefix)]
        part.unlink()
        raise ChecksumMismatchError(
            f"{url}: downloaded file has sha256 {actual}..., expected {sha256_prefix}...; it was "
            f"deleted. The server (or a proxy / {ENV_MODEL_URL} mirror) sent a corrupt or "
            "different file; try again later or use another mirror")
    os.replace(part, dest)
    return dest


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's contents (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _matches(path: Path, sha256_prefix: str) -> bool:
    return file_sha256(path).startswith(sha256_prefix.lower())


def _transfer_with_retries(url: str, part: Path, progress: bool, retries: Optional[int],
                           retry_delay: Optional[float]) -> None:
    """Fill ``part`` with the whole body of ``url``, resuming after transient failures."""
    retries = RETRIES if retries is None else retries
    delay = RETRY_DELAY_S if retry_delay is None else retry_delay
    with _Bar(part.name[: -len(PART_SUFFIX)], progress) as bar:
        for attempt in range(retries + 1):
            try:
                _transfer(url, part, bar)
                return
            except _Retryable as exc:
                if attempt == retries:
                    raise DownloadError(f"{url}: download failed after {retries + 1} attempts "
                                        f"({exc}); check the network and run again: the "
                                        "download resumes where it stopped") from None
                logger.warning("%s: %s; retrying (%d/%d)", part.name, exc, attempt + 1, retries)
                time.sleep(delay * 2 ** attempt)


def _request(url: str, offset: int) -> urllib.request.Request:
    headers = {"User-Agent": _USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.Request(url, headers=headers)


def _transfer(url: str, part: Path, bar: "_Bar") -> None:
    """One attempt: request the rest of the file after ``part``'s current size and append it."""
    offset = part.stat().st_size if part.is_file() else 0
    try:
        response = urllib.request.urlopen(_request(url, offset), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        _handle_http_error(exc, url, part)
        raise _Retryable(f"HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        raise _Retryable(_reason(exc)) from None
    with response:
        offset = _start_offset(response, offset, url)
        total = _content_length(response)
        bar.reset(offset, None if total is None else offset + total)
        received = _copy_body(response, part, offset, bar)
    if total is not None and received < total:
        raise _Retryable(f"connection closed after {offset + received} of {offset + total} bytes")


def _handle_http_error(exc: urllib.error.HTTPError, url: str, part: Path) -> None:
    """Raise :class:`DownloadError` for errors a retry cannot fix; return for transient ones."""
    exc.close()
    if exc.code == 416 and part.is_file():
        # The part is already complete (or longer than the file): start again from zero.
        part.unlink()
        return
    if exc.code in (408, 429) or exc.code >= 500:
        return
    hint = ("the model file is not on the server" if exc.code == 404 else "the server refused it")
    raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}: {hint}; check {ENV_MODEL_URL} "
                        f"(now {base_url()!r}) or download the file by hand into a --repo folder")


def _reason(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason if reason is not None else exc) or type(exc).__name__


def _start_offset(response: http.client.HTTPResponse, offset: int, url: str) -> int:
    """Where the body starts in the file: ``offset`` for a 206 answer, 0 when Range was ignored."""
    if offset and response.status == 206:
        start = _content_range_start(response.headers.get("Content-Range", ""))
        if start != offset:
            raise _Retryable(f"server resumed at byte {start}, expected {offset}")
        return offset
    if offset:
        logger.info("%s: the server ignored the resume request; downloading from the start", url)
    return 0


def _content_range_start(header: str) -> Optional[int]:
    """``"bytes 100-199/200"`` -> 100."""
    try:
        unit, spec = header.split(" ", 1)
        return int(spec.split("-", 1)[0]) if unit == "bytes" else None
    except ValueError:
        return None


def _content_length(response: http.client.HTTPResponse) -> Optional[int]:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None


def _copy_body(response: http.client.HTTPResponse, part: Path, offset: int, bar: "_Bar") -> int:
    """Write the body to ``part`` from byte ``offset`` on; return the bytes received.

    A connection dropped mid-body keeps what was received (flushed to disk) and raises
    :class:`_Retryable` so that the next attempt resumes after it.
    """
    received = 0
    with open(part, "r+b" if offset else "wb") as out:
        out.seek(offset)
        out.truncate()
        try:
            for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        except http.client.IncompleteRead as exc:
            out.write(exc.partial)
            received += len(exc.partial)
            raise _Retryable("connection dropped") from None
        except (OSError, http.client.HTTPException) as exc:
            raise _Retryable(_reason(exc)) from None
    return received


# ---------------------------------------------------------------------------------------------
# Progress bar


class _Bar:
    """A tqdm byte counter on stderr that survives restarts of the transfer."""

    def __init__(self, desc: str, enabled: bool) -> None:
        self._tqdm = None
        if enabled:
            from tqdm import tqdm

            self._tqdm = tqdm(desc=desc, unit="B", unit_scale=True, unit_divisor=1024,
                              file=sys.stderr, leave=False)

    def reset(self, done: int, total: Optional[int]) -> None:
        if self._tqdm is not None:
            self._tqdm.reset(total=total)
            self._tqdm.update(done)

    def update(self, count: int) -> None:
        if self._tqdm is not None:
            self._tqdm.update(count)

    def __enter__(self) -> "_Bar":
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._tqdm is not None:
            self._tqdm.close()
