"""Read PyTorch and safetensors checkpoints as numpy arrays — without torch, and without
ever running code from the file.

A PyTorch ``.pth``/``.pth.tar`` file is a pickle, and unpickling a file with the standard
unpickler can run anything the file asks for. :func:`read_state_dict` uses a restricted
unpickler that rebuilds tensors and plain containers only; any other global the pickle names
(``os.system``, ``builtins.eval``, ``torch.nn.Module`` …) is refused with a one-line
:class:`EdgeMobileError` that names the file and the global, before anything is called.

Formats (detected from the content, never from the file name — :func:`detect_format`):

* ``torch_zip`` — ``torch.save`` since PyTorch 1.6: a zip with ``<name>/data.pkl`` and one
  raw little-endian storage per tensor in ``<name>/data/<key>``;
* ``torch_legacy`` — ``torch.save(..., _use_new_zipfile_serialization=False)``: four pickles
  (magic number, protocol, system info, the object) followed by the raw storages;
* ``safetensors`` — 8-byte header length, a JSON header, raw tensor bytes (no code at all);
* ``keras_h5`` / ``keras_zip`` — Keras weight files (HDF5, or a ``.keras`` zip), reported so
  the caller can hand them to Keras; :func:`read_state_dict` does not read them.

Globals the restricted unpickler allows: ``torch._utils._rebuild_tensor_v2``, the typed
storage classes (``torch.FloatStorage``, ``torch.LongStorage`` …, as persistent-id
markers), ``collections.OrderedDict``; besides these a pickle may only hold dicts, lists,
tuples, strings, numbers, booleans and None. A checkpoint that wraps its weights under
``"state_dict"`` or ``"model"`` is unwrapped, and a ``module.`` (DataParallel) key prefix is
removed.

Runtime code: imports numpy only.
"""

from __future__ import annotations

import collections
import io
import json
import math
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgemobile.errors import EdgeMobileError
from edgemobile.inputs import reading

# torch.save's legacy (non-zip) format starts with this number, pickled with protocol 2.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PREFIX = pickle.dumps(_LEGACY_MAGIC, protocol=2)
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"

# Typed storage class name -> numpy dtype of its elements ("bfloat16" is widened to float32).
_STORAGE_DTYPES: dict[str, Any] = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "BFloat16Storage": "bfloat16",
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}

_SAFETENSORS_DTYPES: dict[str, Any] = {
    "F64": np.float64,
    "F32": np.float32,
    "F16": np.float16,
    "BF16": "bfloat16",
    "I64": np.int64,
    "I32": np.int32,
    "I16": np.int16,
    "I8": np.int8,
    "U8": np.uint8,
    "BOOL": np.bool_,
}

# Keys under which training scripts commonly nest the weights.
WRAPPER_KEYS = ("state_dict", "model")


# -- format detection ---------------------------------------------------------------------
def detect_format(path: str | os.PathLike) -> str:
    """Name the container of ``path`` from its first bytes (and zip listing).

    Returns one of ``torch_zip``, ``torch_legacy``, ``safetensors``, ``keras_h5``,
    ``keras_zip``; raises :class:`EdgeMobileError` for anything else.
    """
    path = Path(path)
    with reading(path, "weights file"):
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(64)

    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        try:
            with zipfile.ZipFile(path) as zf:
                names = zf.namelist()
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            raise EdgeMobileError(f"{path}: corrupt zip archive ({exc})") from None
        if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
            return "torch_zip"
        if "model.weights.h5" in names or "config.json" in names:
            return "keras_zip"
        raise EdgeMobileError(f"{path}: a zip archive that is neither a PyTorch checkpoint nor a .keras model")
    if head.startswith(_HDF5_MAGIC):
        return "keras_h5"
    if head.startswith(_LEGACY_PREFIX):
        return "torch_legacy"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 0 < header_len <= size - 8 and head[8:9] == b"{":
            return "safetensors"
    if _is_tar(path):
        raise EdgeMobileError(
            f"{path}: a tar-based PyTorch checkpoint (PyTorch < 0.4); re-save it with a current "
            "PyTorch (torch.save) or as safetensors"
        )
    raise EdgeMobileError(
        f"{path}: not a weights file edgemobile reads (PyTorch .pth/.pth.tar, safetensors, Keras .h5/.keras)"
    )


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The flat ``{name: array}`` weights of a PyTorch or safetensors checkpoint.

    Arrays keep PyTorch's layout (conv weights OIHW). Raises :class:`EdgeMobileError` for
    Keras files (load those with Keras), refused pickles and corrupt files.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt == "torch_zip":
        obj = load_torch_zip(path)
    elif fmt == "torch_legacy":
        obj = load_torch_legacy(path)
    elif fmt == "safetensors":
        return read_safetensors(path)
    else:
        raise EdgeMobileError(f"{path}: a Keras weights file ({fmt}), not a PyTorch or safetensors checkpoint")
    return extract_state_dict(obj, path)


def extract_state_dict(obj: Any, path: str | os.PathLike = "checkpoint") -> dict[str, np.ndarray]:
    """Find the tensors in an unpickled checkpoint: unwrap ``state_dict``/``model``, strip ``module.``."""
    for _ in range(4):  # {"model": {"state_dict": ...}} nests at most a few levels
        if isinstance(obj, dict) and not any(isinstance(v, np.ndarray) for v in obj.values()):
            inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not any(isinstance(v, np.ndarray) for v in obj.values()):
        raise EdgeMobileError(
            f"{path}: no state_dict found (expected a dict of tensors, or one under "
            f"{' / '.join(repr(k) for k in WRAPPER_KEYS)})"
        )
    state: dict[str, np.ndarray] = {}
    for key, value in obj.items():
        if not isinstance(key, str) or not isinstance(value, np.ndarray):
            continue  # e.g. "epoch": 90 next to the tensors
        key = key.removeprefix("module.")
        state[key] = value
    return state


# -- the restricted unpickler ---------------------------------------------------------------
class _Refused(Exception):
    """A pickle asked for a global that is not on the allow-list."""


class _StorageType:
    """Marker for ``torch.FloatStorage`` & co.: carries the element dtype, nothing callable."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", _STORAGE_DTYPES[name])

    def __setattr__(self, key, value):  # BUILD opcodes cannot tamper with it
        raise _Refused(f"setting attributes on torch.{self.name}")

    def __setstate__(self, state):
        raise _Refused(f"state for torch.{self.name}")

    def __call__(self, *args, **kwargs):
        raise _Refused(f"calling torch.{self.name}")

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize


class _PendingTensor:
    """A tensor whose storage bytes come later (legacy format)."""

    __slots__ = ("offset", "size", "storage", "stride")

    def __init__(self, storage, offset, size, stride) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __setstate__(self, state):
        raise _Refused("state for a tensor")


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, load_storage: Callable[[tuple], Any], lazy: bool = False) -> None:
        super().__init__(file)
        self._load_storage = load_storage
        self._lazy = lazy

    def find_class(self, module: str, name: str):
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return self._rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid):
        # zip: ("storage", storage_type, key, location, numel)
        # legacy: ("storage", storage_type, root_key, location, numel, view_metadata)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise _Refused(f"persistent id {_short(pid)}")
        storage_type, key, _location, numel = pid[1:5]
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or not _is_int(numel) or numel < 0:
            raise _Refused(f"persistent id {_short(pid)}")
        if len(pid) == 6 and pid[5] is not None:
            raise _Refused("storage views (PyTorch < 1.0 checkpoints)")
        return self._load_storage((storage_type, key, int(numel)))

    def _rebuild_tensor_v2(self, storage, storage_offset, size, stride, requires_grad=False,
                           backward_hooks=None, metadata=None):
        if not (_is_int(storage_offset) and _int_tuple(size) and _int_tuple(stride) and len(size) == len(stride)):
            raise _Refused("a tensor with malformed size/stride")
        if self._lazy:
            return _PendingTensor(storage, int(storage_offset), tuple(size), tuple(stride))
        return _view(storage, int(storage_offset), tuple(size), tuple(stride))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value) -> bool:
    return isinstance(value, (tuple, list)) and all(_is_int(v) and v >= 0 for v in value)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _view(storage: np.ndarray, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """``torch.as_strided`` on a 1-D storage, bounds-checked, returned as a compact copy."""
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
        raise _Refused("a tensor without a storage")
    numel = math.prod(size)
    if numel == 0:
        return np.zeros(size, dtype=storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if offset < 0 or last >= storage.size or numel > storage.size:
        raise _Refused(f"a tensor of size {size} / stride {stride} / offset {offset} outside its storage of {storage.size}")
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size, strides=tuple(s * item for s in stride), writeable=False
    )
    return view.copy()  # compact C-ordered copy (ascontiguousarray would make 0-d arrays 1-d)


def _decode_storage(raw: bytes, storage_type: _StorageType, numel: int, big_endian: bool = False) -> np.ndarray:
    if len(raw) != numel * storage_type.itemsize:
        raise ValueError(f"storage holds {len(raw)} bytes, expected {numel} x {storage_type.itemsize}")
    if storage_type.dtype == "bfloat16":
        return _bfloat16_to_float32(np.frombuffer(raw, dtype=">u2" if big_endian else "<u2"))
    dtype = np.dtype(storage_type.dtype).newbyteorder(">" if big_endian else "<")
    return np.frombuffer(raw, dtype=dtype).astype(np.dtype(storage_type.dtype), copy=True)


def _bfloat16_to_float32(bits: np.ndarray) -> np.ndarray:
    return (bits.astype(np.uint32) << 16).view(np.float32)


def _unpickle(data: bytes, path: Path, load_storage, lazy: bool = False):
    try:
        return _RestrictedUnpickler(io.BytesIO(data), load_storage, lazy).load()
    except _Refused as exc:
        raise EdgeMobileError(
            f"{path}: refused to load: its pickle asks for {exc}, which is not a tensor or plain "
            "container (edgemobile never runs code from checkpoint files)"
        ) from None
    except EdgeMobileError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
            AttributeError, struct.error, OverflowError, MemoryError) as exc:
        raise EdgeMobileError(f"{path}: corrupt PyTorch checkpoint ({type(exc).__name__}: {_short(str(exc))})") from None


def _check_arrays(obj, path: Path, depth: int = 0):
    """Only numeric arrays and plain values may come out of a checkpoint."""
    if depth > 50:
        raise EdgeMobileError(f"{path}: corrupt PyTorch checkpoint (nesting deeper than 50)")
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind not in "biuf":
            raise EdgeMobileError(f"{path}: refused to load: a tensor of dtype {obj.dtype}")
    elif isinstance(obj, dict):
        for value in obj.values():
            _check_arrays(value, path, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for value in obj:
            _check_arrays(value, path, depth + 1)
    elif isinstance(obj, (_StorageType, _PendingTensor)):
        raise EdgeMobileError(f"{path}: corrupt PyTorch checkpoint (a bare storage object)")
    return obj


def load_torch_zip(path: str | os.PathLike) -> Any:
    """Unpickle a zip-format ``torch.save`` file with tensors as numpy arrays."""
    path = Path(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise EdgeMobileError(f"{path}: corrupt zip archive ({exc})") from None
    with zf:
        pickles = [n for n in zf.namelist() if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise EdgeMobileError(f"{path}: not a PyTorch checkpoint (expected one data.pkl, found {len(pickles)})")
        prefix = pickles[0][: -len("data.pkl")]
        names = set(zf.namelist())
        big_endian = False
        if prefix + "byteorder" in names:
            big_endian = zf.read(prefix + "byteorder").strip() == b"big"
        cache: dict[str, np.ndarray] = {}

        def load_storage(ref):
            storage_type, key, numel = ref
            if key not in cache:
                entry = f"{prefix}data/{key}"
                if entry not in names:
                    raise ValueError(f"storage {key!r} missing from the archive")
                cache[key] = _decode_storage(zf.read(entry), storage_type, numel, big_endian)
            storage = cache[key]
            if storage.size != numel:
                raise ValueError(f"storage {key!r} has {storage.size} elements, expected {numel}")
            return storage

        try:
            data = zf.read(pickles[0])
        except (zipfile.BadZipFile, OSError, zlib.error) as exc:
            raise EdgeMobileError(f"{path}: corrupt zip archive ({exc})") from None
        obj = _unpickle(data, path, load_storage)
    return _check_arrays(obj, path)


def load_torch_legacy(path: str | os.PathLike) -> Any:
    """Unpickle a legacy (non-zip) ``torch.save`` file with tensors as numpy arrays."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise EdgeMobileError(f"{path}: cannot read ({exc.strerror})") from None
    stream = io.BytesIO(blob)

    def no_storage(ref):
        raise _Refused("a storage outside the main pickle")

    def next_pickle(load_storage=no_storage, lazy=False):
        start = stream.tell()
        unpickler = _RestrictedUnpickler(stream, load_storage, lazy)
        try:
            return unpickler.load()
        except _Refused as exc:
            raise EdgeMobileError(
                f"{path}: refused to load: its pickle asks for {exc}, which is not a tensor or plain "
                "container (edgemobile never runs code from checkpoint files)"
            ) from None
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError,
                AttributeError, struct.error, OverflowError) as exc:
            raise EdgeMobileError(
                f"{path}: corrupt PyTorch checkpoint at byte {start} ({type(exc).__name__}: {_short(str(exc))})"
            ) from None

    if next_pickle() != _LEGACY_MAGIC:
        raise EdgeMobileError(f"{path}: not a PyTorch checkpoint (bad magic number)")
    if next_pickle() != 1001:
        raise EdgeMobileError(f"{path}: unsupported legacy PyTorch protocol version")
    sys_info = next_pickle()
    big_endian = isinstance(sys_info, dict) and sys_info.get("little_endian") is False
    refs: dict[str, tuple] = {}

    def record_storage(ref):
        key = ref[1]
        refs.setdefault(key, ref)
        return key

    obj = next_pickle(record_storage, lazy=True)
    keys = next_pickle()
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise EdgeMobileError(f"{path}: corrupt PyTorch checkpoint (bad storage key list)")
    storages: dict[str, np.ndarray] = {}
    try:
        for key in keys:
            if key not in refs:
                raise ValueError(f"storage {key!r} is not used by any tensor")
            storage_type, _, numel = refs[key]
            header = stream.read(8)
            if len(header) != 8:
                raise ValueError("file ends inside the storages")
            (count,) = struct.unpack(">q" if big_endian else "<q", header)
            if count != numel:
                raise ValueError(f"storage {key!r} has {count} elements, expected {numel}")
            raw = stream.read(numel * storage_type.itemsize)
            storages[key] = _decode_storage(raw, storage_type, numel, big_endian)
        missing = set(refs) - set(storages)
        if missing:
            raise ValueError(f"storages {sorted(missing)[:3]} missing")
        resolved = _resolve(obj, storages)
    except _Refused as exc:
        raise EdgeMobileError(f"{path}: refused to load: {exc}") from None
    except (ValueError, struct.error) as exc:
        raise EdgeMobileError(f"{path}: corrupt PyTorch checkpoint ({exc})") from None
    return _check_arrays(resolved, path)


def _resolve(obj, storages: dict[str, np.ndarray], depth: int = 0):
    if depth > 50:
        raise ValueError("nesting deeper than 50")
    if isinstance(obj, _PendingTensor):
        return _view(storages[obj.storage], obj.offset, obj.size, obj.stride)
    if isinstance(obj, dict):
        out = type(obj)() if type(obj) in (dict, collections.OrderedDict) else {}
        for k, v in obj.items():
            out[k] = _resolve(v, storages, depth + 1)
        return out
    if isinstance(obj, list):
        return [_resolve(v, storages, depth + 1) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, storages, depth + 1) for v in obj)
    return obj


# -- safetensors ------------------------------------------------------------------------------
def read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``{name: array}`` from a safetensors file (pure data: header JSON + raw bytes)."""
    path = Path(path)
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise EdgeMobileError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if len(blob) < 8:
            raise ValueError("shorter than its 8-byte header length")
        (header_len,) = struct.unpack("<Q", blob[:8])
        if header_len > len(blob) - 8:
            raise ValueError("header length past the end of the file")
        header = json.loads(blob[8 : 8 + header_len].decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
        data = memoryview(blob)[8 + header_len :]
        state: dict[str, np.ndarray] = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype_name = info.get("dtype") if isinstance(info, dict) else None
            if dtype_name not in _SAFETENSORS_DTYPES:
                raise ValueError(f"tensor {name!r} has unsupported dtype {dtype_name!r}")
            shape = info.get("shape")
            begin, end = info.get("data_offsets", (None, None))
            if not _int_tuple(shape) or not (_is_int(begin) and _is_int(end) and 0 <= begin <= end <= len(data)):
                raise ValueError(f"tensor {name!r} has a malformed shape or data_offsets")
            dtype = _SAFETENSORS_DTYPES[dtype_name]
            itemsize = 2 if dtype == "bfloat16" else np.dtype(dtype).itemsize
            count = math.prod(shape)
            if end - begin != count * itemsize:
                raise ValueError(f"tensor {name!r}: {end - begin} bytes for shape {shape}")
            raw = data[begin:end]
            if dtype == "bfloat16":
                array = _bfloat16_to_float32(np.frombuffer(raw, dtype="<u2"))
            else:
                array = np.frombuffer(raw, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
            state[name] = array.reshape(shape)
    except (ValueError, UnicodeDecodeError, struct.error, AttributeError, TypeError) as exc:
        raise EdgeMobileError(f"{path}: corrupt safetensors file ({exc})") from None
    return state


__all__ = [
    "WRAPPER_KEYS",
    "detect_format",
    "extract_state_dict",
    "load_torch_legacy",
    "load_torch_zip",
    "read_safetensors",
    "read_state_dict",
]
