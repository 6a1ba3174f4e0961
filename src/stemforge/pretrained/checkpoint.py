"""Reading and writing model checkpoints without ever running code from them.

Three kinds of file are understood:

- **Official Demucs 3/4 packages** (``<sig>-<sha8>.th``): a ``torch.save`` pickle of
  ``{"klass", "args", "kwargs", "state", "training_args"}``. ``klass`` is a class reference such as
  ``demucs.htdemucs.HTDemucs``; it is read as a :class:`ClassRef` (a name, never imported) and
  mapped to our architecture through :data:`stemforge.models.registry.OFFICIAL_CLASSES`.
- **Official Demucs 2 weights** (``demucs-e07c671f.th`` ...): a plain state dict; the file name says
  which model it is (see :mod:`stemforge.models.demucs_v2`).
- **stemforge files** (``.safetensors``): tensors plus a JSON header in the safetensors metadata,
  ``{format_version, arch, config, sources, samplerate, audio_channels, segment, meta}``.

Torch pickles are read by :func:`read_torch_file`, a restricted unpickler (zip format and the
legacy non-zip format). It allows plain containers, numbers, strings, bytes, ``Fraction``, numpy
scalars/arrays of plain dtypes and tensors; ``demucs.*`` globals become inert :class:`ClassRef`
names; any other global (``os.system``, ``builtins.eval``, ...) raises
:class:`UnsafeCheckpointError` before anything can be called. ``torch.load`` is never used.
"""
from __future__ import annotations

import codecs
import inspect
import io
import json
import logging
import os
import pickle
import struct
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Callable, Mapping

import numpy as np
import torch
from torch import nn

from ..atomic import atomic_path
from . import readahead
from .readahead import LOCAL_HEADER_SIZE, ZIP_MAGIC, MemoryFile, data_offset

from stemforge.models.registry import (
    OFFICIAL_CLASSES,
    UnknownArchitectureError,
    build_model,
    model_class,
)

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike
FORMAT_VERSION = 1
METADATA_KEY = "stemforge"


# ---------------------------------------------------------------------------------------------
# Errors


class CheckpointError(Exception):
    """A model file cannot be read (corrupt, unsupported or unsafe)."""


class UnsafeCheckpointError(CheckpointError):
    """The pickle refers to a global that is not on the allow-list (it could run code)."""


class QuantizedCheckpointError(CheckpointError):
    """The file holds diffq-quantized weights, which stemforge cannot unpack."""


class UnsupportedCheckpointError(CheckpointError):
    """The file is valid but describes a model stemforge does not implement."""


# ---------------------------------------------------------------------------------------------
# Restricted unpickler: the allow-list


@dataclass(frozen=True)
class ClassRef:
    """A class named by a checkpoint (``demucs.htdemucs.HTDemucs``); never imported nor called."""

    name: str

    def __repr__(self) -> str:
        return f"ClassRef({self.name!r})"


@dataclass(frozen=True)
class _StorageKind:
    """What ``torch.HalfStorage`` & co. resolve to: only the element dtype."""

    dtype: torch.dtype


@dataclass
class _Storage:
    """A storage read from the file: raw bytes, element dtype, element offset (legacy views)."""

    data: torch.UntypedStorage
    dtype: torch.dtype
    offset: int = 0


_STORAGE_DTYPES: dict[str, torch.dtype] = {
    "DoubleStorage": torch.float64, "FloatStorage": torch.float32, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool, "ComplexFloatStorage": torch.complex64,
    "ComplexDoubleStorage": torch.complex128, "UntypedStorage": torch.uint8,
}
_TORCH_DTYPE_NAMES = frozenset({
    "float64", "float32", "float16", "bfloat16", "int64", "int32", "int16", "int8", "uint8",
    "bool", "complex64", "complex128", "double", "float", "half", "long", "int", "short",
})
_PLAIN_NUMPY_KINDS = frozenset("biufc")
_CLASS_NAMESPACES = ("demucs",)  # globals recorded by name only


def _require(condition: bool, what: str) -> None:
    if not condition:
        raise CheckpointError(f"checkpoint is malformed (unexpected {what}); refusing to load it")


def _is_int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(type(v) is int and v >= 0 for v in value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                    backward_hooks: Any = None, metadata: Any = None) -> torch.Tensor:
    """Safe stand-in for ``torch._utils._rebuild_tensor_v2``: a view of ``storage``."""
    _require(isinstance(storage, _Storage), "tensor (storage is not a storage)")
    _require(type(offset) is int and offset >= 0, "tensor offset")
    _require(_is_int_tuple(size) and _is_int_tuple(stride) and len(size) == len(stride),
             "tensor shape")
    _require(not backward_hooks, "tensor with backward hooks")
    _require(metadata is None or isinstance(metadata, dict), "tensor metadata")
    tensor = torch.empty((0,), dtype=storage.dtype)
    try:
        return tensor.set_(storage.data, storage.offset + offset, size, stride)
    except RuntimeError as exc:
        raise CheckpointError(f"tensor does not fit in its storage: {exc}") from None


def _rebuild_tensor_v1(storage: Any, offset: Any, size: Any, stride: Any) -> torch.Tensor:
    return _rebuild_tensor(storage, offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None
                       ) -> torch.Tensor:
    _require(isinstance(data, torch.Tensor) and not backward_hooks, "parameter")
    return data


def _ordered_dict(*args: Any) -> OrderedDict:
    _require(len(args) == 0 or (len(args) == 1 and isinstance(args[0], (list, tuple))),
             "OrderedDict arguments")
    return OrderedDict(*args)


def _plain_set(*args: Any) -> set:
    _require(len(args) == 0 or (len(args) == 1 and isinstance(args[0], (list, tuple))), "set")
    return set(*args)


def _plain_frozenset(*args: Any) -> frozenset:
    return frozenset(_plain_set(*args))


def _latin1_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``."""
    _require(isinstance(text, str) and encoding in ("latin1", "latin-1"), "bytes encoding")
    return codecs.encode(text, "latin1")


def _plain_bytearray(*args: Any) -> bytearray:
    _require(all(isinstance(a, (bytes, str)) for a in args) and len(args) <= 2, "bytearray")
    return bytearray(*args)


def _fraction(*args: Any) -> Fraction:
    _require(1 <= len(args) <= 2 and all(type(a) in (int, str) for a in args), "Fraction")
    return Fraction(*args)


def _complex(*args: Any) -> complex:
    _require(len(args) <= 2 and all(type(a) in (int, float) for a in args), "complex")
    return complex(*args)


def _numpy_dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    _require(isinstance(spec, str) and isinstance(align, bool) and isinstance(copy, bool),
             "numpy dtype")
    dtype = np.dtype(spec, align, True)  # always a copy: BUILD must never touch numpy's singletons
    _require(dtype.kind in _PLAIN_NUMPY_KINDS, f"numpy dtype {spec!r}")
    return dtype


def _numpy_scalar(dtype: Any, data: Any = None) -> Any:
    _require(isinstance(dtype, np.dtype) and dtype.kind in _PLAIN_NUMPY_KINDS
             and isinstance(data, bytes), "numpy scalar")
    _require(len(data) == dtype.itemsize, "numpy scalar size")
    return np.frombuffer(data, dtype=dtype)[0]


def _numpy_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> np.ndarray:
    _require(subtype is np.ndarray and isinstance(dtype_code, bytes), "numpy array")
    return np.ndarray.__new__(np.ndarray, (0,), np.uint8)


def _torch_size(*args: Any) -> torch.Size:
    _require(len(args) == 1 and _is_int_tuple(tuple(args[0])), "torch.Size")
    return torch.Size(args[0])


def _torch_device(*args: Any) -> torch.device:
    _require(1 <= len(args) <= 2 and isinstance(args[0], str), "torch.device")
    return torch.device(*args)


_SAFE_CALLABLES: dict[tuple[str, str], Callable[..., Any]] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("builtins", "set"): _plain_set,
    ("builtins", "frozenset"): _plain_frozenset,
    ("builtins", "bytearray"): _plain_bytearray,
    ("builtins", "complex"): _complex,
    ("_codecs", "encode"): _latin1_encode,
    ("fractions", "Fraction"): _fraction,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("numpy.core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _numpy_reconstruct,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v1,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch", "Size"): _torch_size,
    ("torch", "device"): _torch_device,
}
_SAFE_CALLABLE_IDS = frozenset(id(f) for f in _SAFE_CALLABLES.values())


def _resolve_global(module: str, name: str) -> Any:
    """The object a pickle GLOBAL may refer to, or :class:`UnsafeCheckpointError`."""
    if module == "__builtin__":
        module = "builtins"
    if (module, name) in _SAFE_CALLABLES:
        return _SAFE_CALLABLES[(module, name)]
    if module == "torch" and name in _STORAGE_DTYPES:
        return _StorageKind(_STORAGE_DTYPES[name])
    if module == "torch" and name in _TORCH_DTYPE_NAMES:
        return getattr(torch, name)
    if module == "numpy" and name == "ndarray":
        return np.ndarray
    if module.split(".")[0] in _CLASS_NAMESPACES:
        return ClassRef(f"{module}.{name}")
    if module.split(".")[0] == "diffq":
        raise QuantizedCheckpointError(
            f"checkpoint refers to {module}.{name}: it holds diffq-quantized weights, which "
            "stemforge cannot read; " + _QUANTIZED_ADVICE)
    raise UnsafeCheckpointError(
        f"checkpoint refers to the global {module}.{name}, which is not allowed (only containers, "
        "numbers, strings, Fraction, numpy scalars and tensors are); refusing to load it. "
        "It may have been crafted to run code.")


def _call_allowed(func: Any, args: Any) -> Any:
    if isinstance(func, ClassRef):
        raise UnsafeCheckpointError(f"checkpoint tries to call {func.name}; refusing to load it")
    _require(id(func) in _SAFE_CALLABLE_IDS and isinstance(args, tuple), "call")
    return func(*args)


def _build_ndarray(array: np.ndarray, state: Any) -> None:
    _require(isinstance(state, tuple) and len(state) == 5, "numpy array state")
    _, shape, dtype, _, raw = state
    _require(_is_int_tuple(tuple(shape)) and isinstance(dtype, np.dtype)
             and dtype.kind in _PLAIN_NUMPY_KINDS and isinstance(raw, bytes), "numpy array state")
    array.__setstate__(state)


def _apply_build(inst: Any, state: Any) -> None:
    """BUILD opcode: only numpy dtypes/arrays and an OrderedDict's ``_metadata`` may get state."""
    if isinstance(inst, np.dtype):
        _require(isinstance(state, tuple), "numpy dtype state")
        inst.__setstate__(state)
    elif type(inst) is np.ndarray:
        _build_ndarray(inst, state)
    elif type(inst) is OrderedDict and isinstance(state, dict) and set(state) <= {"_metadata"}:
        if "_metadata" in state:
            inst._metadata = state["_metadata"]  # type: ignore[attr-defined]
    else:
        raise UnsafeCheckpointError(
            f"checkpoint sets the state of a {type(inst).__name__} object; refusing to load it")


class _SafeUnpickler(pickle._Unpickler):  # type: ignore[name-defined]
    """Pure-python unpickler whose code-running opcodes only reach the allow-list above."""

    dispatch = dict(pickle._Unpickler.dispatch)  # type: ignore[attr-defined]

    def __init__(self, file: BinaryIO, persistent: Callable[[Any], Any] | None = None) -> None:
        super().__init__(file, encoding="utf-8")
        self._persistent = persistent

    def find_class(self, module: str, name: str) -> Any:
        return _resolve_global(module, name)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise CheckpointError("unexpected persistent id in checkpoint pickle")
        return self._persistent(pid)

    def _instantiate(self, klass: Any, args: Any) -> None:
        self.append(_call_allowed(klass, tuple(args)))

    def _load_reduce(self) -> None:
        args = self.stack.pop()
        self.stack[-1] = _call_allowed(self.stack[-1], args)

    def _load_build(self) -> None:
        state = self.stack.pop()
        _apply_build(self.stack[-1], state)

    def _refuse(self) -> None:
        raise UnsafeCheckpointError("checkpoint creates objects of arbitrary classes or uses "
                                    "pickle extension codes; refusing to load it")

    dispatch[pickle.REDUCE[0]] = _load_reduce
    dispatch[pickle.BUILD[0]] = _load_build
    for _opcode in (pickle.NEWOBJ, pickle.NEWOBJ_EX, pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_opcode[0]] = _refuse
    del _opcode


# ---------------------------------------------------------------------------------------------
# Torch file formats

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


def _element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def _bytes_to_storage(data: bytes | bytearray | memoryview, dtype: torch.dtype,
                      big_endian: bool = False) -> torch.UntypedStorage:
    """A storage over ``data`` (shared if it is a ``bytearray`` or a writable ``memoryview``,
    else copied)."""
    if not len(data):
        return torch.UntypedStorage(0)
    shareable = isinstance(data, bytearray) or (isinstance(data, memoryview) and not data.readonly)
    raw = torch.frombuffer(data if shareable else bytearray(data), dtype=torch.uint8)
    size = _element_size(dtype)
    if big_endian and size > 1:
        raw = raw.view(-1, size).flip(1).reshape(-1)
    return raw.untyped_storage()


def _storage_id(pid: Any) -> tuple[_StorageKind, str, int, Any]:
    """Check a ``('storage', kind, key, location, numel, [view])`` persistent id."""
    _require(isinstance(pid, tuple) and len(pid) in (5, 6), "persistent id")
    typename = pid[0].decode("ascii") if isinstance(pid[0], bytes) else pid[0]
    _require(typename == "storage", f"persistent id {typename!r}")
    kind, key, numel = pid[1], str(pid[2]), pid[4]
    _require(isinstance(kind, _StorageKind) and type(numel) is int and numel >= 0, "storage id")
    view = pid[5] if len(pid) == 6 else None
    return kind, key, numel, view


def _is_class_pid(pid: Any) -> bool:
    """``('module', class, source_file, source)``: how the legacy format saves a module class."""
    return (isinstance(pid, tuple) and len(pid) == 4 and pid[0] in ("module", b"module")
            and isinstance(pid[1], ClassRef))


def _read_member(archive: zipfile.ZipFile, file: BinaryIO | MemoryFile, name: str,
                 crc_checked: frozenset[str]) -> bytearray | memoryview:
    """The bytes of one archive member, CRC-checked (unless listed in ``crc_checked``: already
    verified by the read-ahead).

    torch stores tensor data uncompressed; such members are read straight from ``file`` into the
    buffer that becomes the tensor's storage (one copy instead of three: ``zipfile`` reads in
    chunks, joins them into ``bytes``, and the storage needs a writable copy), or, from a file
    already in memory, are views of its bytes (no copy)."""
    info = archive.getinfo(name)
    if info.compress_type != zipfile.ZIP_STORED:
        return bytearray(archive.read(name))
    file.seek(info.header_offset)
    offset = data_offset(info, file.read(LOCAL_HEADER_SIZE))
    if offset is None:
        raise CheckpointError(f"bad zip entry header for {name!r}")
    data: bytearray | memoryview
    if isinstance(file, MemoryFile):
        data = file.view(offset, info.file_size)
    else:
        file.seek(offset)
        data = bytearray(info.file_size)
        data = data[:file.readinto(data)]
    if len(data) != info.file_size:
        raise CheckpointError(f"tensor data {name!r} is truncated")
    if name not in crc_checked and zlib.crc32(data) != info.CRC:
        raise CheckpointError(f"tensor data {name!r} is corrupt (CRC mismatch)")
    return data


def _read_zip(file: BinaryIO | MemoryFile, crc_checked: frozenset[str]) -> Any:
    with zipfile.ZipFile(file) as archive:  # type: ignore[arg-type]
        pickles = [n for n in archive.namelist() if n.endswith("data.pkl") and n.count("/") <= 1]
        if len(pickles) != 1:
            raise CheckpointError("zip archive is not a torch checkpoint (no data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(archive.namelist())
        big_endian = (f"{prefix}byteorder" in names
                      and archive.read(f"{prefix}byteorder").strip() == b"big")
        storages: dict[str, _Storage] = {}

        def load_storage(pid: Any) -> _Storage:
            kind, key, numel, _ = _storage_id(pid)
            if key not in storages:
                record = f"{prefix}data/{key}"
                if record not in names:
                    raise CheckpointError(f"checkpoint is missing tensor data {record!r}")
                data = _read_member(archive, file, record, crc_checked)
                if len(data) < numel * _element_size(kind.dtype):
                    raise CheckpointError(f"tensor data {record!r} is shorter than declared")
                storages[key] = _Storage(_bytes_to_storage(data, kind.dtype, big_endian),
                                         kind.dtype)
            return storages[key]

        with archive.open(pickles[0]) as pkl:
            return _SafeUnpickler(io.BytesIO(pkl.read()), load_storage).load()


def _read_legacy(file: BinaryIO, file_size: int) -> Any:
    """The pre-1.6 torch format: magic, protocol, sys info, object pickle, keys, raw storages."""
    if _SafeUnpickler(file).load() != _LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    if _SafeUnpickler(file).load() != _LEGACY_PROTOCOL:
        raise CheckpointError("unsupported legacy torch protocol version")
    sys_info = _SafeUnpickler(file).load()
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    roots: dict[str, _Storage] = {}

    def load_storage(pid: Any) -> _Storage | ClassRef:
        if _is_class_pid(pid):  # legacy torch.save records nn.Module classes this way
            return pid[1]
        kind, key, numel, view = _storage_id(pid)
        nbytes = numel * _element_size(kind.dtype)
        if nbytes > file_size:
            raise CheckpointError("storage larger than the file: corrupt checkpoint")
        if key not in roots:
            roots[key] = _Storage(torch.UntypedStorage(nbytes), kind.dtype)
        if view is None:
            return roots[key]
        _require(isinstance(view, tuple) and len(view) == 3 and type(view[1]) is int, "view")
        return _Storage(roots[key].data, kind.dtype, view[1])

    result = _SafeUnpickler(file, load_storage).load()
    keys = _SafeUnpickler(file).load()
    _require(isinstance(keys, list), "storage key list")
    for key in keys:
        _fill_legacy_storage(file, roots[str(key)], big_endian)
    return result


def _fill_legacy_storage(file: BinaryIO, storage: _Storage, big_endian: bool) -> None:
    header = file.read(8)
    if len(header) != 8:
        raise CheckpointError("checkpoint is truncated (missing tensor data)")
    (numel,) = struct.unpack(">q" if big_endian else "<q", header)
    nbytes = numel * _element_size(storage.dtype)
    if nbytes != storage.data.nbytes():
        raise CheckpointError("tensor data size does not match its declaration")
    data = file.read(nbytes)
    if len(data) != nbytes:
        raise CheckpointError("checkpoint is truncated (missing tensor data)")
    source = _bytes_to_storage(data, storage.dtype, big_endian)
    if nbytes:
        storage.data.copy_(source)


def read_torch_file(path: PathLike) -> Any:
    """Safely unpickle a file written by ``torch.save`` (zip or legacy format).

    Tensors come back as CPU tensors in their saved dtype; class references as :class:`ClassRef`.
    Raises :class:`UnsafeCheckpointError` for disallowed globals and :class:`CheckpointError`
    for empty, truncated or garbled files.
    """
    path = Path(path)
    try:
        content = readahead.claim(path)
        if content is not None:
            return _read_any(content.open(), bytes(content.data[:512]), len(content.data), path,
                             content.crc_checked)
        with open(path, "rb") as file:
            head = file.read(512)
            file.seek(0)
            size = os.fstat(file.fileno()).st_size
            return _read_any(file, head, size, path, frozenset())
    except CheckpointError as exc:
        if str(path) in str(exc):
            raise
        raise type(exc)(f"{path}: {exc}") from None
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None


def _read_any(file: BinaryIO | MemoryFile, head: bytes, size: int, path: Path,
              crc_checked: frozenset[str]) -> Any:
    if size == 0:
        raise CheckpointError("file is empty")
    if len(head) > 262 and head[257:262] == b"ustar":
        raise UnsupportedCheckpointError("the old tar-based torch format is not supported")
    try:
        if head.startswith(ZIP_MAGIC):
            return _read_zip(file, crc_checked)
        if head.startswith(b"\x80"):
            return _read_legacy(file, size)  # type: ignore[arg-type]
    except CheckpointError:
        raise
    except Exception as exc:  # garbled input fails in many ways; report them all the same way
        raise CheckpointError(
            f"file is truncated or corrupt, not a readable torch checkpoint "
            f"({type(exc).__name__}: {exc})") from None
    raise CheckpointError("not a torch checkpoint (unknown file signature)")


# ---------------------------------------------------------------------------------------------
# Official Demucs files

_QUANTIZED_BAGS = {
    "mdx_q": ("mdx", ("6b9c2ca1", "b72baf4e", "42e558d4", "305bc58f")),
    "mdx_extra_q": ("mdx_extra", ("83fc094f", "464b36d7", "14fc6a69", "7fd6ef75")),
}
_QUANTIZED_ADVICE = ("use the non-quantized models instead: 'mdx' instead of 'mdx_q', "
                     "'mdx_extra' instead of 'mdx_extra_q'")


def _quantized_error(path: Path) -> QuantizedCheckpointError:
    sig = path.stem.split("-")[0]
    for bag, (replacement, members) in _QUANTIZED_BAGS.items():
        if sig in members:
            return QuantizedCheckpointError(
                f"{path}: model {sig} belongs to '{bag}', whose weights are diffq-quantized; "
                f"stemforge cannot unpack them. Use '{replacement}' instead "
                f"(same architecture, non-quantized weights).")
    return QuantizedCheckpointError(
        f"{path}: the weights are diffq-quantized, which stemforge cannot unpack; "
        + _QUANTIZED_ADVICE)


def _is_state_dict(content: Any) -> bool:
    return (isinstance(content, Mapping) and len(content) > 0
            and all(isinstance(k, str) and isinstance(v, torch.Tensor)
                    for k, v in content.items()))


def _is_package(content: Any) -> bool:
    return isinstance(content, Mapping) and {"klass", "state"} <= set(content)


def _merge_positional(arch: str, args: Any, kwargs: Any) -> dict[str, Any]:
    """Turn the recorded ``(args, kwargs)`` into keyword arguments of our constructor."""
    if not isinstance(args, (list, tuple)) or not isinstance(kwargs, Mapping):
        raise CheckpointError("malformed package: 'args' must be a sequence, 'kwargs' a mapping")
    params = [p for p in inspect.signature(model_class(arch).__init__).parameters.values()
              if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][1:]
    if len(args) > len(params):
        raise CheckpointError(f"package gives {len(args)} positional arguments, "
                              f"{arch} takes at most {len(params)}")
    merged = dict(kwargs)
    for param, value in zip(params, args):
        if param.name in merged:
            raise CheckpointError(f"package gives {param.name!r} both by position and by name")
        merged[param.name] = value
    return merged


def load_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` after casting each tensor to the model's dtype.

    A model built on the meta device (see :func:`_build`) takes the tensors themselves."""
    own = model.state_dict()
    cast = {key: value.to(own[key].dtype) if key in own else value
            for key, value in state.items()}
    on_meta = any(tensor.is_meta for tensor in own.values())
    try:
        model.load_state_dict(cast, strict=True, assign=on_meta)
    except RuntimeError as exc:
        raise CheckpointError(f"{source}: weights do not fit the model: {exc}") from None
    if on_meta and any(tensor.is_meta for tensor in model.state_dict().values()):
        raise CheckpointError(f"{source}: weights do not fit the model (some were not stored)")


def _model_from_package(package: Mapping[str, Any], path: Path) -> nn.Module:
    klass = package["klass"]
    if not isinstance(klass, ClassRef):
        raise CheckpointError(f"{path}: malformed package ('klass' is not a class reference)")
    arch = OFFICIAL_CLASSES.get(klass.name)
    if arch is None:
        known = ", ".join(sorted(OFFICIAL_CLASSES))
        raise UnsupportedCheckpointError(
            f"{path}: model class {klass.name} is not supported (supported: {known})")
    state = package["state"]
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: malformed package ('state' is not a mapping)")
    if state.get("__quantized"):
        raise _quantized_error(path)
    kwargs = _merge_positional(arch, package.get("args", ()), package.get("kwargs", {}))
    logger.debug("%s: official %s -> stemforge %s", path, klass.name, arch)
    model = _build(arch, kwargs, path)
    load_state(model, state, str(path))
    return model


def _build(arch: str, config: dict[str, Any], path: Path) -> nn.Module:
    """The module for ``arch`` on the meta device: no memory, no random initialisation; every
    tensor comes from the file (:func:`load_state`)."""
    try:
        with torch.device("meta"):
            return build_model(arch, config)
    except UnknownArchitectureError as exc:
        raise UnsupportedCheckpointError(f"{path}: {exc}") from None
    except (TypeError, ValueError, AssertionError) as exc:
        raise CheckpointError(
            f"{path}: cannot build {arch} from the stored config: {exc}") from None


def _model_from_v2_state(state: Mapping[str, torch.Tensor], path: Path) -> nn.Module:
    from stemforge.models.demucs_v2 import v2_config_for  # lazy: optional architecture

    try:
        config = v2_config_for(path.name)
    except KeyError as exc:
        raise UnsupportedCheckpointError(
            f"{path}: a bare state dict without architecture information; only the official "
            f"Demucs 2.x files are recognised, by their file name ({exc.args[0]})") from None
    model = _build("DemucsV2", config, path)
    load_state(model, state, str(path))
    return model


def load_official(path: PathLike) -> nn.Module:
    """Build the model stored in an official Demucs ``.th`` file, in eval mode.

    Handles v3/v4 packages (``klass``/``args``/``kwargs``/``state``) and the v2 bare state dicts
    (recognised by file name). Half-precision weights are cast to the model's dtype.
    """
    path = Path(path)
    content = read_torch_file(path)
    if _is_package(content):
        model = _model_from_package(content, path)
    elif _is_state_dict(content):
        model = _model_from_v2_state(content, path)
    else:
        raise CheckpointError(
            f"{path}: not an official Demucs checkpoint (expected a dict with 'klass', 'args', "
            "'kwargs' and 'state', or a Demucs 2.x state dict)")
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# stemforge format (safetensors)


def encode_config(value: Any, where: str = "config") -> Any:
    """JSON-able copy of ``value``; ``Fraction`` becomes ``{"__fraction__": [num, den]}``."""
    if isinstance(value, Fraction):
        return {"__fraction__": [value.numerator, value.denominator]}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [encode_config(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
        return {k: encode_config(v, f"{where}.{k}") for k, v in value.items()}
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in a stemforge checkpoint")


def decode_config(value: Any) -> Any:
    """Inverse of :func:`encode_config`: ``{"__fraction__": [num, den]}`` back to ``Fraction``."""
    if isinstance(value, dict):
        if set(value) == {"__fraction__"}:
            num, den = value["__fraction__"]
            return Fraction(int(num), int(den))
        return {k: decode_config(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_config(v) for v in value]
    return value


def _model_arch(model: nn.Module) -> str:
    arch = getattr(model, "arch_name", None)
    if arch is None:
        raise ValueError("model has no recorded architecture/config: build it with "
                         "stemforge.models.registry.build_model (or load it from a checkpoint)")
    return arch


def _plain_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors that share no memory (safetensors requires it)."""
    seen: set[int] = set()
    tensors = {}
    for key, value in model.state_dict().items():
        tensor = value.detach().cpu().contiguous()
        ptr = tensor.untyped_storage().data_ptr()
        if ptr in seen and tensor.numel():
            tensor = tensor.clone()
        seen.add(ptr)
        tensors[key] = tensor
    return tensors


def stemforge_header(model: nn.Module, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON header :func:`save_stemforge` writes for ``model``."""
    return {
        "format_version": FORMAT_VERSION,
        "arch": _model_arch(model),
        "config": encode_config(dict(getattr(model, "config"))),
        "sources": list(model.sources),
        "samplerate": int(model.samplerate),
        "audio_channels": int(model.audio_channels),
        "segment": encode_config(getattr(model, "segment", None), "segment"),
        "meta": encode_config(dict(meta or {}), "meta"),
    }


def save_stemforge(model: nn.Module, path: PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model`` as a stemforge ``.safetensors`` file, atomically.

    ``meta`` is the model card (JSON-able dict). The model must carry ``arch_name`` and ``config``
    (set by ``build_model`` and by every loader here).
    """
    from safetensors.torch import save_file

    path = Path(path)
    header = stemforge_header(model, meta)
    tensors = _plain_tensors(model)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(header)})
    return path


def read_stemforge(path: PathLike) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(header, tensors)`` of a stemforge file; the header's config is decoded (Fractions)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({exc})") from None
    if METADATA_KEY not in metadata:
        raise CheckpointError(f"{path}: safetensors file without a stemforge header")
    try:
        header = decode_config(json.loads(metadata[METADATA_KEY]))
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: corrupt stemforge header ({exc})") from None
    version = header.get("format_version") if isinstance(header, dict) else None
    if version != FORMAT_VERSION:
        raise UnsupportedCheckpointError(
            f"{path}: stemforge format version {version!r} is not supported "
            f"(this stemforge reads version {FORMAT_VERSION})")
    return header, tensors


def load_stemforge(path: PathLike) -> nn.Module:
    """Build the model stored in a stemforge ``.safetensors`` file, in eval mode.

    The model card is available as ``model.model_card``.
    """
    path = Path(path)
    header, tensors = read_stemforge(path)
    model = _build(header["arch"], header["config"], path)
    load_state(model, tensors, str(path))
    model.model_card = header.get("meta", {})  # type: ignore[attr-defined]
    model.eval()
    return model


# ---------------------------------------------------------------------------------------------
# Dispatch


def _looks_like_safetensors(head: bytes) -> bool:
    if len(head) < 9:
        return False
    (length,) = struct.unpack("<Q", head[:8])
    return 0 < length < 100_000_000 and head[8:9] == b"{"


def load_model_file(path: PathLike) -> nn.Module:
    """Load a single model file: official ``.th`` (v2/v3/v4) or stemforge ``.safetensors``."""
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(16)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from None
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        return load_stemforge(path)
    return load_official(path)


__all__ = [
    "CheckpointError", "UnsafeCheckpointError", "QuantizedCheckpointError",
    "UnsupportedCheckpointError", "ClassRef", "read_torch_file", "load_official", "load_state",
    "save_stemforge", "load_stemforge", "read_stemforge", "stemforge_header", "load_model_file",
    "FORMAT_VERSION",
]
