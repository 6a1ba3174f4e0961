"""Model downloads against a local HTTP server (127.0.0.1, free port): never the real network."""
from __future__ import annotations

import hashlib
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
import yaml

from stemforge.pretrained import hub
from stemforge.pretrained.cards import OFFICIAL_ROOT_URL, ModelCard, ModelFile
from stemforge.pretrained.hub import (
    ChecksumMismatchError,
    DownloadError,
    OfflineError,
    fetch_model_files,
    is_cached,
)
from stemforge.pretrained.resolve import ModelResolutionError, load_model
from tests.reference import official_package, save_official

SOURCES = ["drums", "bass", "other", "vocals"]
MIRROR_PREFIX = "/mirror/"


# ---------------------------------------------------------------------------------------------
# A local file server supporting Range, with scripted misbehaviour


@dataclass
class ServerState:
    url: str = ""
    files: dict[str, bytes] = field(default_factory=dict)  # request path -> body
    drops: dict[str, list[int]] = field(default_factory=dict)  # path -> bytes sent, per request
    ignore_range: bool = False
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)

    def serve(self, relative_path: str, body: bytes) -> None:
        self.files[MIRROR_PREFIX + relative_path] = body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        state: ServerState = self.server.state  # type: ignore[attr-defined]
        range_header = self.headers.get("Range")
        state.requests.append((self.path, range_header))
        body = state.files.get(self.path)
        if body is None:
            self._empty(404)
            return
        start = 0
        if range_header and not state.ignore_range:
            start = int(range_header.removeprefix("bytes=").split("-")[0])
            if start >= len(body):
                self._empty(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        drops = state.drops.get(self.path)
        if drops:
            self.wfile.write(payload[: drops.pop(0)])  # then hang up mid-body
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    state = ServerState(url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.state = state  # type: ignore[attr-defined]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """A private cache, no offline flag, no retry delay, and no way to reach the real network."""
    monkeypatch.setenv(hub.ENV_CACHE, str(tmp_path / "cache"))
    monkeypatch.setenv(hub.ENV_MODEL_URL, "http://127.0.0.1:9/unused/")  # discard port
    monkeypatch.delenv(hub.ENV_OFFLINE, raising=False)
    monkeypatch.setattr(hub, "RETRY_DELAY_S", 0.0)
    monkeypatch.setattr(hub, "TIMEOUT_S", 10.0)


@pytest.fixture
def mirror(server, monkeypatch) -> ServerState:
    monkeypatch.setenv(hub.ENV_MODEL_URL, server.url + MIRROR_PREFIX)
    return server


# ---------------------------------------------------------------------------------------------
# Cards made of byte blobs


def sha8(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def blob(size: int = 50_000, seed: int = 0) -> bytes:
    generator = torch.Generator().manual_seed(seed)
    return bytes(torch.randint(0, 256, (size,), generator=generator, dtype=torch.uint8).tolist())


def single_card(name: str, data: bytes, sig: str = "0123abcd") -> ModelCard:
    file = ModelFile(f"blobs/{sig}-{sha8(data)}.th", sha8(data), len(data) / 1e6)
    return ModelCard(name=name, architecture="Demucs", sources=tuple(SOURCES), files=(file,),
                     licence="test", description="test blob", is_bag=False)


def test_download_verifies_caches_and_cleans_up(mirror):
    data = blob()
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    cards = {"blob": card}
    assert not is_cached("blob", cards)

    folder = fetch_model_files("blob", cards=cards, progress=False)

    assert folder == hub.models_dir()
    assert (folder / card.files[0].filename).read_bytes() == data
    assert not list(folder.glob("*.part"))
    assert is_cached("blob", cards)
    mirror.requests.clear()
    fetch_model_files("blob", cards=cards, progress=False)
    assert mirror.requests == []  # cached: no request


def test_progress_bar_on_stderr(mirror, capsys):
    data = blob(200_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    fetch_model_files("blob", cards={"blob": card}, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert card.files[0].filename in captured.err


def test_tampered_file_is_rejected_and_not_cached(mirror):
    data = blob()
    card = single_card("blob", data)
    tampered = bytearray(data)
    tampered[1234] ^= 0xFF
    mirror.serve(card.files[0].path, bytes(tampered))

    with pytest.raises(ChecksumMismatchError, match=f"expected {sha8(data)}"):
        fetch_model_files("blob", cards={"blob": card}, progress=False)

    folder = hub.models_dir()
    assert not (folder / card.files[0].filename).exists()
    assert not list(folder.glob("*.part"))
    assert not is_cached("blob", {"blob": card})


def test_dropped_connection_is_resumed_with_range(mirror):
    data = blob(100_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    path = MIRROR_PREFIX + card.files[0].path
    mirror.drops[path] = [30_000, 25_000]  # two hang-ups, then a full answer

    folder = fetch_model_files("blob", cards={"blob": card}, progress=False)

    assert (folder / card.files[0].filename).read_bytes() == data
    assert mirror.requests == [(path, None), (path, "bytes=30000-"), (path, "bytes=55000-")]


def test_interrupted_previous_run_is_resumed(mirror):
    data = blob(80_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    folder = hub.models_dir()
    folder.mkdir(parents=True)
    (folder / (card.files[0].filename + ".part")).write_bytes(data[:20_000])

    fetch_model_files("blob", cards={"blob": card}, progress=False)

    assert (folder / card.files[0].filename).read_bytes() == data
    assert [rng for _, rng in mirror.requests] == ["bytes=20000-"]


def test_server_ignoring_range_restarts_from_zero(mirror):
    data = blob(80_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    mirror.ignore_range = True
    folder = hub.models_dir()
    folder.mkdir(parents=True)
    (folder / (card.files[0].filename + ".part")).write_bytes(data[:20_000])

    fetch_model_files("blob", cards={"blob": card}, progress=False)

    assert (folder / card.files[0].filename).read_bytes() == data


def test_corrupt_leftover_part_is_downloaded_again(mirror):
    data = blob(60_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    folder = hub.models_dir()
    folder.mkdir(parents=True)
    (folder / (card.files[0].filename + ".part")).write_bytes(b"\0" * 10_000)

    fetch_model_files("blob", cards={"blob": card}, progress=False)

    assert (folder / card.files[0].filename).read_bytes() == data
    assert [rng for _, rng in mirror.requests] == ["bytes=10000-", None]


def test_oversized_leftover_part_restarts(mirror):
    data = blob(10_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    folder = hub.models_dir()
    folder.mkdir(parents=True)
    (folder / (card.files[0].filename + ".part")).write_bytes(b"\0" * 20_000)  # -> HTTP 416

    fetch_model_files("blob", cards={"blob": card}, progress=False)

    assert (folder / card.files[0].filename).read_bytes() == data


def test_gives_up_after_retries_and_keeps_the_part(mirror, monkeypatch):
    monkeypatch.setattr(hub, "RETRIES", 2)
    data = blob(50_000)
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    mirror.drops[MIRROR_PREFIX + card.files[0].path] = [1_000] * 3

    with pytest.raises(DownloadError, match="after 3 attempts.*resumes"):
        fetch_model_files("blob", cards={"blob": card}, progress=False)
    part = hub.models_dir() / (card.files[0].filename + ".part")
    assert part.read_bytes() == data[:3_000]
    assert not is_cached("blob", {"blob": card})

    fetch_model_files("blob", cards={"blob": card}, progress=False)  # the next run resumes
    assert mirror.requests[-1][1] == "bytes=3000-"
    assert is_cached("blob", {"blob": card})


def test_404_is_a_clear_error_without_retries(mirror):
    card = single_card("blob", blob())  # not served

    with pytest.raises(DownloadError, match="HTTP 404.*not on the server"):
        fetch_model_files("blob", cards={"blob": card}, progress=False)
    assert len(mirror.requests) == 1
    assert not list(hub.models_dir().glob("*"))


def test_unreachable_server_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(hub, "RETRIES", 1)
    card = single_card("blob", blob())
    with pytest.raises(DownloadError, match="after 2 attempts"):
        fetch_model_files("blob", cards={"blob": card}, progress=False)


def test_offline_and_not_cached_is_a_clear_error(mirror, monkeypatch):
    card = single_card("blob", blob())
    mirror.serve(card.files[0].path, blob())
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")

    with pytest.raises(OfflineError, match="not in the cache.*STEMFORGE_OFFLINE.*--repo"):
        fetch_model_files("blob", cards={"blob": card}, progress=False)
    assert mirror.requests == []


def test_offline_and_cached_works_without_requests(mirror, monkeypatch):
    data = blob()
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    fetch_model_files("blob", cards={"blob": card}, progress=False)
    mirror.requests.clear()
    monkeypatch.setenv(hub.ENV_OFFLINE, "true")

    folder = fetch_model_files("blob", cards={"blob": card}, progress=False)

    assert (folder / card.files[0].filename).read_bytes() == data
    assert mirror.requests == []


def test_mirror_url_replaces_the_official_root(mirror, monkeypatch):
    data = blob()
    card = single_card("blob", data)
    mirror.serve(card.files[0].path, data)
    fetch_model_files("blob", cards={"blob": card}, progress=False)
    assert mirror.requests[0][0] == MIRROR_PREFIX + card.files[0].path

    monkeypatch.setenv(hub.ENV_MODEL_URL, "https://models.example.org/demucs")  # no final slash
    assert hub.file_url(card.files[0]) == "https://models.example.org/demucs/" + card.files[0].path
    monkeypatch.delenv(hub.ENV_MODEL_URL)
    assert hub.file_url(card.files[0]) == OFFICIAL_ROOT_URL + card.files[0].path


def test_bag_yaml_is_written_from_the_card(mirror):
    datas = [blob(seed=i) for i in range(2)]
    files = tuple(ModelFile(f"bags/{sig}-{sha8(d)}.th", sha8(d)) for sig, d in
                  zip(["aaaa0001", "aaaa0002"], datas))
    card = ModelCard(name="duo", architecture="Demucs", sources=tuple(SOURCES), files=files,
                     licence="test", description="test bag",
                     bag_weights=((1.0, 0.0, 1.0, 0.0), (0.0, 1.0, 0.0, 1.0)), bag_segment=6.5)
    for file, data in zip(files, datas):
        mirror.serve(file.path, data)

    folder = fetch_model_files("duo", cards={"duo": card}, progress=False)

    content = yaml.safe_load((folder / "duo.yaml").read_text())
    assert content == {"models": ["aaaa0001", "aaaa0002"],
                       "weights": [[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]], "segment": 6.5}


@pytest.mark.parametrize("platform, env, expected", [
    ("linux", {"XDG_CACHE_HOME": "/xdg"}, "/xdg/stemforge"),
    ("linux", {}, "HOME/.cache/stemforge"),
    ("darwin", {}, "HOME/Library/Caches/stemforge"),
    ("win32", {"LOCALAPPDATA": "/local"}, "/local/stemforge/Cache"),
])
def test_default_cache_dir(monkeypatch, tmp_path, platform, env, expected):
    monkeypatch.delenv(hub.ENV_CACHE)
    for key in ("XDG_CACHE_HOME", "LOCALAPPDATA"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setattr(sys, "platform", platform)
    monkeypatch.setattr(Path, "home", classmethod(lambda cls: tmp_path))
    assert hub.cache_dir() == Path(expected.replace("HOME", str(tmp_path)))


def test_cache_dir_from_env(monkeypatch, tmp_path):
    monkeypatch.setenv(hub.ENV_CACHE, str(tmp_path / "elsewhere"))
    assert hub.models_dir() == tmp_path / "elsewhere" / "models"


# ---------------------------------------------------------------------------------------------
# load_model by name, end to end, with a real (tiny) official-format checkpoint


def tiny_official_file(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    from demucs.demucs import Demucs

    reference = Demucs(SOURCES, channels=4, depth=2)
    path = save_official(official_package(reference), tmp_path, "feed0001")
    return reference.eval(), path


def test_load_model_by_name_downloads_verifies_and_loads(mirror, tmp_path, monkeypatch):
    reference, path = tiny_official_file(tmp_path)
    checksum = path.stem.rsplit("-", 1)[1]
    file = ModelFile(f"tiny/{path.name}", checksum)
    cards = {"tiny": ModelCard(name="tiny", architecture="Demucs", sources=tuple(SOURCES),
                               files=(file,), licence="test", description="tiny", bag_segment=4.0)}
    mirror.serve(file.path, path.read_bytes())
    mirror.drops[MIRROR_PREFIX + file.path] = [path.stat().st_size // 3]

    bag = load_model("tiny", cards=cards, progress=False)

    assert [rng is not None for _, rng in mirror.requests] == [False, True]  # resumed once
    assert bag.sources == SOURCES and len(bag.models) == 1 and bag.segment == 4.0
    ours = bag.models[0].eval()
    mix = torch.randn(1, 2, 44100)
    with torch.no_grad():
        diff = (ours(mix) - reference(mix)).abs().max().item()
    assert diff <= 1e-5

    mirror.requests.clear()
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    again = load_model("tiny", cards=cards, progress=False)
    assert mirror.requests == []
    assert torch.equal(again.models[0].state_dict()["encoder.0.0.weight"],
                       ours.state_dict()["encoder.0.0.weight"])


def test_load_model_rejects_a_tampered_checkpoint(mirror, tmp_path):
    _, path = tiny_official_file(tmp_path)
    file = ModelFile(f"tiny/{path.name}", path.stem.rsplit("-", 1)[1])
    cards = {"tiny": ModelCard(name="tiny", architecture="Demucs", sources=tuple(SOURCES),
                               files=(file,), licence="test", description="tiny")}
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    mirror.serve(file.path, bytes(data))

    with pytest.raises(ModelResolutionError, match="sha256.*deleted"):
        load_model("tiny", cards=cards, progress=False)
    assert not (hub.models_dir() / path.name).exists()


def test_load_model_offline_not_cached(monkeypatch):
    monkeypatch.setenv(hub.ENV_OFFLINE, "1")
    with pytest.raises(ModelResolutionError, match="'htdemucs' is not in the cache"):
        load_model("htdemucs", progress=False)


def test_load_model_unknown_name_lists_known_models():
    with pytest.raises(ModelResolutionError, match="unknown model 'nope'.*htdemucs, htdemucs_ft"):
        load_model("nope")


def test_load_model_quantized_refused_before_download(server):
    with pytest.raises(ModelResolutionError, match="diffq.*use 'mdx_extra'"):
        load_model("mdx_extra_q")
    assert server.requests == []
