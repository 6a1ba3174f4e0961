"""Safe reading of official Demucs files and our safetensors format."""
from __future__ import annotations

import builtins
import os
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from stemforge.models.registry import build_model
from stemforge.pretrained import checkpoint as ckpt
from stemforge.pretrained.checkpoint import (
    CheckpointError,
    ClassRef,
    QuantizedCheckpointError,
    UnsafeCheckpointError,
    UnsupportedCheckpointError,
    load_model_file,
    load_official,
    load_stemforge,
    read_torch_file,
    save_stemforge,
)
from stemforge.pretrained.convert import convert
from tests.reference import official_package, save_official
from tests.pretrained.readahead_modes import byte_source  # noqa: F401 (fixture)

SOURCES = ["drums", "bass", "other", "vocals"]

pytestmark = pytest.mark.usefixtures("byte_source")


# --------------------------------------------------------------------------- reference models

def ref_demucs():
    from demucs.demucs import Demucs
    return Demucs(SOURCES, channels=4, depth=2)


def ref_hdemucs():
    from demucs.hdemucs import HDemucs
    return HDemucs(SOURCES, channels=4, depth=3, nfft=256)  # sources given by position


def ref_htdemucs():
    from demucs.htdemucs import HTDemucs
    return HTDemucs(SOURCES, channels=8, depth=2, nfft=512, t_layers=1, segment=Fraction(1, 4))


REFERENCES = {"Demucs": ref_demucs, "HDemucs": ref_hdemucs, "HTDemucs": ref_htdemucs}


def assert_same_state(ours: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    state = ours.state_dict()
    assert set(state) == set(expected)
    for key, value in expected.items():
        assert state[key].shape == value.shape, key
        assert state[key].dtype == torch.float32 or not value.is_floating_point(), key
        assert torch.equal(state[key], value.to(state[key].dtype)), key


# --------------------------------------------------------------------------- malicious files

class _Payload:
    """Pickles as a call of ``func(*args)``: what an attacker would put in a checkpoint."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _evil_package(payload) -> dict:
    return {"klass": None, "args": (), "kwargs": {}, "state": {"weight": payload}}


@pytest.mark.parametrize("legacy", [False, True])
@pytest.mark.parametrize("kind", ["os.system", "builtins.eval"])
def test_malicious_pickle_is_refused_without_running(tmp_path: Path, kind: str, legacy: bool):
    marker = tmp_path / "pwned"
    if kind == "os.system":
        payload = _Payload(os.system, f"touch {marker}")
    else:
        payload = _Payload(builtins.eval, f"__import__('os').system('touch {marker}')")
    path = tmp_path / "evil.th"
    torch.save(_evil_package(payload), path, _use_new_zipfile_serialization=not legacy)
    for loader in (read_torch_file, load_official, load_model_file):
        with pytest.raises(UnsafeCheckpointError) as info:
            loader(path)
        assert ("system" if kind == "os.system" else "eval") in str(info.value)
        assert "not allowed" in str(info.value)
    assert not marker.exists()


def test_demucs_function_call_is_refused(tmp_path: Path):
    """A demucs.* global is only a name: calling it (here demucs' own unsafe loader) is refused."""
    import demucs.states

    path = tmp_path / "evil.th"
    torch.save({"x": _Payload(demucs.states.load_model, str(path))}, path)
    with pytest.raises(UnsafeCheckpointError, match="demucs.states.load_model"):
        read_torch_file(path)


def test_pickled_module_object_is_refused(tmp_path: Path):
    """A whole pickled nn.Module (old-style save) needs arbitrary classes: refused."""
    path = tmp_path / "module.th"
    torch.save(ref_demucs(), path)
    with pytest.raises(UnsafeCheckpointError):
        read_torch_file(path)


# --------------------------------------------------------------------------- corrupt files

@pytest.fixture
def valid_file(tmp_path: Path) -> Path:
    return save_official(official_package(ref_hdemucs()), tmp_path, "valid")


def _expect_clean_error(path: Path) -> CheckpointError:
    with pytest.raises(CheckpointError) as info:
        load_official(path)
    message = str(info.value)
    assert str(path) in message and len(message) > len(str(path)) + 10
    assert not isinstance(info.value, UnsafeCheckpointError)
    return info.value


def test_truncated_file(tmp_path: Path, valid_file: Path):
    data = valid_file.read_bytes()
    path = tmp_path / "truncated.th"
    path.write_bytes(data[: len(data) // 2])
    assert "truncated or corrupt" in str(_expect_clean_error(path))


def test_truncated_legacy_file(tmp_path: Path):
    path = tmp_path / "legacy.th"
    torch.save(official_package(ref_hdemucs()), path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 10, 40):
        path.write_bytes(data[:cut])
        _expect_clean_error(path)


def test_garbled_files(tmp_path: Path, valid_file: Path):
    path = tmp_path / "garbled.th"
    path.write_bytes(os.urandom(5000))
    assert "not a torch checkpoint" in str(_expect_clean_error(path))
    path.write_bytes(b"\x80\x02" + os.urandom(5000))
    _expect_clean_error(path)
    data = bytearray(valid_file.read_bytes())
    middle = len(data) // 2
    data[middle: middle + 64] = os.urandom(64)
    path.write_bytes(bytes(data))
    _expect_clean_error(path)


def test_flipped_tensor_byte_fails_the_crc(tmp_path: Path, valid_file: Path):
    """Tensor data is read straight from the archive into the weights: its CRC is still checked."""
    import zipfile

    with zipfile.ZipFile(valid_file) as archive:
        info = max(archive.infolist(), key=lambda member: member.file_size)  # a weight tensor
        assert info.compress_type == zipfile.ZIP_STORED and "/data/" in info.filename
        name_length = len(info.filename.encode())
    data = bytearray(valid_file.read_bytes())
    local_extra = int.from_bytes(data[info.header_offset + 28: info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_length + local_extra
    data[start + info.file_size // 2] ^= 0x01
    path = tmp_path / "flipped.th"
    path.write_bytes(bytes(data))
    assert "CRC mismatch" in str(_expect_clean_error(path))
    assert load_official(valid_file) is not None  # the untouched file still loads


def test_empty_file(tmp_path: Path):
    path = tmp_path / "empty.th"
    path.write_bytes(b"")
    assert "empty" in str(_expect_clean_error(path))


def test_missing_file(tmp_path: Path):
    with pytest.raises(CheckpointError, match="cannot read"):
        load_official(tmp_path / "nope.th")


# --------------------------------------------------------------------------- unpickler basics

@pytest.mark.parametrize("legacy", [False, True])
def test_plain_containers_round_trip(tmp_path: Path, legacy: bool):
    import numpy as np
    from collections import OrderedDict

    base = torch.randn(3, 4)
    content = {
        "half": base.half(), "row": base[1], "transposed": base.t(), "empty": torch.empty(0),
        "ints": torch.arange(5), "frac": Fraction(39, 5), "set": {1, 2}, "bytes": b"\x00\xff",
        "tuple": (1, 2.5, None, True, "s"), "np": np.float64(1.5), "npint": np.int64(3),
        "ordered": OrderedDict(a=1, b=[1, 2]), "state": torch.nn.Linear(3, 2).state_dict(),
        "dtype": torch.float16, "size": torch.Size([2, 3]),
    }
    path = tmp_path / "plain.th"
    torch.save(content, path, _use_new_zipfile_serialization=not legacy)
    loaded = read_torch_file(path)
    assert set(loaded) == set(content)
    for key in ("half", "row", "transposed", "empty", "ints"):
        assert loaded[key].dtype == content[key].dtype
        assert torch.equal(loaded[key], content[key])
    for key in ("frac", "set", "bytes", "tuple", "np", "npint", "ordered", "dtype", "size"):
        assert loaded[key] == content[key]
    assert isinstance(loaded["frac"], Fraction)
    assert isinstance(loaded["ordered"], OrderedDict)
    for key, value in content["state"].items():
        assert torch.equal(loaded["state"][key], value)


def test_class_is_recorded_by_name(tmp_path: Path, valid_file: Path):
    content = read_torch_file(valid_file)
    assert content["klass"] == ClassRef("demucs.hdemucs.HDemucs")
    assert content["args"] == (SOURCES,)


# --------------------------------------------------------------------------- official packages

@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("arch", sorted(REFERENCES))
def test_official_round_trip(tmp_path: Path, arch: str, half: bool):
    ref = REFERENCES[arch]().eval()
    path = save_official(official_package(ref, half=half), tmp_path, "model")
    ours = load_official(path)
    assert type(ours).__name__ == arch and ours.arch_name == arch
    assert not ours.training
    expected = ref.state_dict()
    if half:
        expected = {k: v.half() for k, v in expected.items()}
    assert_same_state(ours, expected)
    assert list(ours.sources) == SOURCES
    assert ours.segment == ref.segment
    if arch == "HTDemucs":
        assert isinstance(ours.segment, Fraction)
    if not half:  # same weights -> same output
        mix = torch.randn(1, 2, 4410)
        with torch.no_grad():
            diff = (ours(mix) - ref(mix)).abs().max().item()
        assert diff <= 1e-5


def test_legacy_format_package(tmp_path: Path):
    ref = ref_hdemucs()
    path = tmp_path / "legacy.th"
    torch.save(official_package(ref, half=True), path, _use_new_zipfile_serialization=False)
    ours = load_official(path)
    assert_same_state(ours, {k: v.half() for k, v in ref.state_dict().items()})


def test_unknown_kwargs_are_dropped(tmp_path: Path, caplog):
    package = official_package(ref_hdemucs())
    package["kwargs"] = dict(package["kwargs"], some_future_option=3)
    path = save_official(package, tmp_path, "model")
    ours = load_official(path)
    assert "some_future_option" in caplog.text
    assert_same_state(ours, package["state"])


def test_state_mismatch_is_a_checkpoint_error(tmp_path: Path):
    package = official_package(ref_hdemucs())
    package["state"].pop(next(iter(package["state"])))
    path = save_official(package, tmp_path, "model")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_official(path)


def test_loading_takes_the_stored_tensors_without_initialising(tmp_path: Path, monkeypatch):
    """Models are built on the meta device: random initialisation touches no real memory,
    every parameter is a real tensor afterwards, and a wrong shape is still refused."""
    package = official_package(ref_hdemucs())
    path = save_official(package, tmp_path, "model")
    initialised: list[bool] = []
    real_init = torch.nn.init.kaiming_uniform_

    def recording_init(tensor, *args, **kwargs):
        initialised.append(tensor.is_meta)
        return real_init(tensor, *args, **kwargs)

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", recording_init)
    ours = load_official(path)
    assert initialised and all(initialised)
    assert not any(t.is_meta for t in ours.state_dict().values())
    assert_same_state(ours, package["state"])
    key = next(iter(package["state"]))
    package["state"][key] = torch.zeros(3, 1, 2)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_official(save_official(package, tmp_path, "bad"))


def test_unsupported_class(tmp_path: Path):
    from demucs.apply import BagOfModels

    package = official_package(ref_hdemucs())
    package["klass"] = BagOfModels
    path = save_official(package, tmp_path, "model")
    with pytest.raises(UnsupportedCheckpointError, match="demucs.apply.BagOfModels"):
        load_official(path)


def _quantized_package() -> dict:
    package = official_package(ref_hdemucs())
    package["state"] = {"__quantized": True, "quantized": [torch.zeros(3, dtype=torch.uint8)],
                        "others": []}
    return package


def test_quantized_known_model(tmp_path: Path):
    path = save_official(_quantized_package(), tmp_path, "6b9c2ca1")
    with pytest.raises(QuantizedCheckpointError) as info:
        load_official(path)
    assert "mdx_q" in str(info.value) and "'mdx'" in str(info.value)


def test_quantized_unknown_model(tmp_path: Path):
    path = save_official(_quantized_package(), tmp_path, "abcdef12")
    with pytest.raises(QuantizedCheckpointError, match="mdx_extra"):
        load_official(path)


# --------------------------------------------------------------------------- Demucs 2.x state dicts

def test_v2_state_dict_by_file_name(tmp_path: Path, monkeypatch):
    import stemforge.models.demucs_v2 as v2

    official = v2.v2_config_for

    def tiny_config(name: str) -> dict:
        return dict(official(name), channels=4, depth=2, lstm_layers=1)

    monkeypatch.setattr(v2, "v2_config_for", tiny_config)
    source = build_model("DemucsV2", tiny_config("demucs48_hq"))
    path = save_official(source.state_dict(), tmp_path, "demucs48_hq")
    ours = load_official(path)
    assert type(ours).__name__ == "DemucsV2"
    assert_same_state(ours, source.state_dict())


def test_plain_state_dict_with_unknown_name(tmp_path: Path):
    path = save_official(ref_hdemucs().state_dict(), tmp_path, "whatever")
    with pytest.raises(UnsupportedCheckpointError, match="state dict"):
        load_official(path)


# --------------------------------------------------------------------------- stemforge format

def test_stemforge_round_trip_keeps_fraction(tmp_path: Path):
    model = build_model("HTDemucs", dict(sources=SOURCES, channels=8, depth=2, t_layers=1,
                                         segment=Fraction(39, 5)))
    path = tmp_path / "model.safetensors"
    save_stemforge(model, path, meta={"name": "tiny", "licence": "MIT"})
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]  # no temp file left
    loaded = load_stemforge(path)
    assert loaded.segment == Fraction(39, 5) and isinstance(loaded.segment, Fraction)
    assert loaded.config["segment"] == Fraction(39, 5)
    assert loaded.model_card == {"name": "tiny", "licence": "MIT"}
    assert_same_state(loaded, model.state_dict())
    header, _ = ckpt.read_stemforge(path)
    assert header["sources"] == SOURCES and header["samplerate"] == 44100
    assert header["audio_channels"] == 2 and header["format_version"] == 1
    assert load_model_file(path).arch_name == "HTDemucs"


def test_stemforge_write_is_atomic(tmp_path: Path, monkeypatch):
    model = build_model("Demucs", dict(sources=SOURCES, channels=4, depth=2))
    path = tmp_path / "model.safetensors"
    save_stemforge(model, path)
    before = path.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("safetensors.torch.save_file", broken)
    with pytest.raises(OSError):
        save_stemforge(model, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]


def test_stemforge_garbled(tmp_path: Path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(os.urandom(100))
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        load_stemforge(path)


def test_convert_official_to_stemforge(tmp_path: Path):
    ref = ref_htdemucs()
    src = save_official(official_package(ref, half=True), tmp_path, "955717e8")
    dst = convert(src, tmp_path / "htdemucs.safetensors")
    loaded = load_model_file(dst)
    assert loaded.segment == Fraction(1, 4)
    assert loaded.model_card["converted_from"] == src.name
    assert_same_state(loaded, {k: v.half() for k, v in ref.state_dict().items()})


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_malicious_pickle_any_protocol(tmp_path: Path, protocol: int):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.th"
    torch.save({"x": _Payload(os.system, f"touch {marker}")}, path, pickle_protocol=protocol)
    with pytest.raises(UnsafeCheckpointError, match="system"):
        read_torch_file(path)
    assert not marker.exists()


@pytest.mark.parametrize("raw", [
    b"cos\nsystem\n(S'true'\ntR.",                      # protocol 0 GLOBAL + REDUCE
    b"(S'true'\nios\nsystem\n.",                         # protocol 0 INST
    b"\x80\x02cbuiltins\ngetattr\nq\x00.",               # getattr is not a container
    b"\x80\x02cdemucs.states\nload_model\nX\x01\x00\x00\x00x\x85R.",  # calling a ClassRef
    b"\x80\x02cdemucs.htdemucs\nHTDemucs\n)\x81}X\x01\x00\x00\x00a\x4b\x01sb.",  # NEWOBJ
    b"\x80\x02cdemucs.htdemucs\nHTDemucs\n}X\x01\x00\x00\x00a\x4b\x01sb.",  # BUILD on ClassRef
    b"\x80\x02\x82\x01.",                                # EXT1
])
def test_crafted_pickles_are_refused(raw: bytes):
    import io

    with pytest.raises(UnsafeCheckpointError):
        ckpt._SafeUnpickler(io.BytesIO(raw)).load()
