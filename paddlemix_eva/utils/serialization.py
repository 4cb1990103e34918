"""The one place that deserialises files: weight files, training checkpoints and caches, without running code.

`paddle.load` and `torch.load(weights_only=False)` unpickle, and a pickle can name any Python callable (its
`__reduce__`), so opening a downloaded `.pdparams` / `.pt` could run whatever its author wrote. Here every pickle
goes through `RestrictedUnpickler`, whose `find_class` admits only what tensor data is made of (numpy array
reconstruction, plain containers) and a few stand-ins that rebuild tensors as numpy arrays; any other global is
refused with `UnsafeFileError` before it is called. PyTorch zip checkpoints are read this way too, without torch.
`.npz` (no pickles) and `.safetensors` (no code by construction) also live here, so the package has no other
deserialising code.
"""
from __future__ import annotations

import collections
import contextlib
import fnmatch
import importlib
import logging
import os
import pickle
import sys
import zipfile
from dataclasses import dataclass
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Mapping, NoReturn, Optional

import numpy as np

logger = logging.getLogger(__name__)

PADDLE_SUFFIXES = (".pdparams",)
SAFETENSORS_SUFFIXES = (".safetensors",)
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")
NUMPY_SUFFIXES = (".npz",)
#: files a PaddleNLP resume `paddle.load`s (model, sharded model, optimizer, scheduler, scaler, RNG states)
RESUME_PICKLES = ("*.pdparams", "*.pdopt", "rng_state*.pth")
#: paddle.save's bookkeeping entries of a state dict (not tensors)
NAME_TABLE_KEY = "StructuredToParameterName@@"
BIG_PARAM_KEY = "UnpackBigParamInfor@@"  # typos: disable-line (Paddle's spelling)
#: what `torch.save` (legacy format) writes first
LEGACY_TORCH_MAGIC = 0x1950A86A20F9469CFC6C
READ_CHUNK = 1 << 24


class CheckpointError(ValueError):
    """A weight file that cannot be read or does not hold what was expected."""


class UnsafeFileError(CheckpointError):
    """A pickle that asks to call something other than tensor reconstruction: loading it could run code."""


class _Refused(Exception):
    """Raised by stand-ins for arguments they do not accept; turned into `UnsafeFileError` naming the file."""

    def __init__(self, global_name: str, detail: str = ""):
        super().__init__(global_name, detail)
        self.global_name, self.detail = global_name, detail


def unsafe_file_error(path: str, global_name: str, detail: str = "") -> UnsafeFileError:
    """The refusal: which file, which global, and what to do instead (one line, for the CLI's message)."""
    return UnsafeFileError(
        f"{path}: refused to load: its pickle asks to call the Python global `{global_name}`{detail}, which is not "
        "tensor data (unpickling it could run arbitrary code); nothing from the file was executed. If you trust "
        "this file, load it with its own framework in a separate process, re-save its state dict as .safetensors "
        "(or as plain tensors), and load that instead"
    )


try:  # raised for truncated / garbage .safetensors; not a subclass of any builtin error but Exception
    from safetensors import SafetensorError as _SafetensorError
except ImportError:  # pragma: no cover - safetensors is a requirement

    class _SafetensorError(Exception):
        pass


# --------------------------------------------------------------------------------------- restricted unpickling
class _Sealed:
    """Stand-ins are shared by every load: a pickle's BUILD must not be able to set attributes on them."""

    __slots__ = ()

    def __setstate__(self, state) -> None:
        raise _Refused(f"{type(self).__name__}.__setstate__")


class _StandIn(_Sealed):
    """A callable admitted under a global's name in place of the real one."""

    __slots__ = ("name", "func")

    def __init__(self, name: str, func: Callable):
        self.name, self.func = name, func

    def __call__(self, *args, **kwargs):
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<stand-in for {self.name}>"


Globals = Mapping[str, Any]


class RestrictedUnpickler(pickle.Unpickler):
    """`pickle.Unpickler` whose globals come only from `allowed` ("module.name" -> object); anything else raises
    `UnsafeFileError` naming the file and the global, before it could be called."""

    _PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}

    def __init__(self, file: BinaryIO, path: str, allowed: Globals,
                 persistent_load: Optional[Callable[[Any], Any]] = None, encoding: str = "ASCII"):
        super().__init__(file, encoding=encoding)
        self._path, self._allowed, self._persistent = path, allowed, persistent_load

    def find_class(self, module: str, name: str) -> Any:
        module = self._PY2_MODULES.get(module, module)  # protocol 2 files name builtins `__builtin__`
        key = f"{module}.{name}"
        if key in self._allowed:
            return self._allowed[key]
        unsupported = _unsupported_torch_dtype(module, name)
        if unsupported:
            raise CheckpointError(f"{self._path}: {unsupported}")
        raise unsafe_file_error(self._path, key)

    def persistent_load(self, pid: Any) -> Any:
        if self._persistent is None:
            raise pickle.UnpicklingError("a persistent id in a file that has no external records")
        return self._persistent(pid)


def restricted_load(file: BinaryIO, path: str, allowed: Globals,
                    persistent_load: Optional[Callable[[Any], Any]] = None, encoding: str = "ASCII") -> Any:
    """One pickle from `file` through `RestrictedUnpickler`; refusals name `path`."""
    unpickler = RestrictedUnpickler(file, path, allowed, persistent_load=persistent_load, encoding=encoding)
    try:
        return unpickler.load()
    except _Refused as refused:
        raise unsafe_file_error(path, refused.global_name, refused.detail) from None


def _numpy_multiarray():
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):  # numpy 2 moved it; 1.26 has both
        with contextlib.suppress(ImportError):
            return importlib.import_module(name)
    raise ImportError("numpy has no multiarray module")  # pragma: no cover


def _codecs_encode(text, encoding="utf-8"):
    """Protocol 2 writes `bytes` as `_codecs.encode(latin-1 text, 'latin1')`; nothing else is accepted."""
    if not isinstance(text, str) or str(encoding).lower().replace("-", "") not in ("latin1", "iso88591"):
        raise _Refused("_codecs.encode", f" with encoding {encoding!r}")
    return text.encode("latin1")


def _frombuffer(buffer, dtype, shape, order):
    """Protocol 5 arrays: numpy's `_frombuffer` (not importable under one name across numpy versions)."""
    return np.frombuffer(buffer, dtype=dtype).reshape(shape, order=order)


def _base_globals() -> Dict[str, Any]:
    """Array reconstruction and plain containers: all that a pickle of numbers, strings and arrays needs."""
    multiarray = _numpy_multiarray()
    allowed: Dict[str, Any] = {
        f"builtins.{t.__name__}": t for t in (tuple, list, dict, set, frozenset, bytes, bytearray, complex)
    }
    allowed["collections.OrderedDict"] = collections.OrderedDict
    allowed["_codecs.encode"] = _StandIn("_codecs.encode", _codecs_encode)
    allowed["numpy.ndarray"] = np.ndarray
    allowed["numpy.dtype"] = np.dtype
    for module in ("numpy.core", "numpy._core"):
        allowed[f"{module}.multiarray._reconstruct"] = multiarray._reconstruct
        allowed[f"{module}.multiarray.scalar"] = multiarray.scalar
        allowed[f"{module}.numeric._frombuffer"] = _StandIn(f"{module}.numeric._frombuffer", _frombuffer)
    return allowed


BASE_GLOBALS: Globals = _base_globals()


# ------------------------------------------------------------------------------------------- Paddle pickles
def _eval_dense_tensor(expression, globals_=None, locals_=None):
    """`paddle.save` writes a DenseTensor as `eval('data', {'data': array})`; this returns the array and refuses
    any other expression. Python's `eval` is never called."""
    if (expression == "data" and locals_ is None and isinstance(globals_, dict) and list(globals_) == ["data"]
            and isinstance(globals_["data"], np.ndarray)):
        return globals_["data"]
    raise _Refused("builtins.eval", f" on {str(expression)[:80]!r}")


class PaddleGeneratorState(_Sealed):
    """What a Paddle RNG state (`paddle.base.libpaddle.GeneratorState`) unpickles to here: its raw state tuple,
    kept as data; the real class is never instantiated."""

    __slots__ = ("state",)

    def __setstate__(self, state) -> None:
        object.__setattr__(self, "state", state)


PADDLE_GLOBALS: Globals = {**BASE_GLOBALS, "builtins.eval": _StandIn("builtins.eval", _eval_dense_tensor)}
PADDLE_RNG_GLOBALS: Globals = {**PADDLE_GLOBALS, "paddle.base.libpaddle.GeneratorState": PaddleGeneratorState}


def is_rng_state_file(path: str) -> bool:
    """PaddleNLP's RNG-state files, the only ones where Paddle's generator states are admitted."""
    return fnmatch.fnmatch(os.path.basename(path), "rng_state*.pth")


def load_paddle(path: str, rng_state: bool = False) -> Any:
    """What `paddle.load(path, return_numpy=True)` returns for a pickle written by `paddle.save` (tensors as
    numpy arrays, bfloat16 ones as uint16; name table dropped, big-tensor slices joined), without running code.
    `rng_state` also admits Paddle's generator states (PaddleNLP's `rng_state*.pth`)."""
    with open(path, "rb") as f:
        obj = restricted_load(f, path, PADDLE_RNG_GLOBALS if rng_state else PADDLE_GLOBALS, encoding="latin1")
    if isinstance(obj, dict):
        obj = _join_big_params(obj, path)
        if NAME_TABLE_KEY in obj:
            del obj[NAME_TABLE_KEY]
            return obj
    return _named_tensors_as_arrays(obj) if _has_named_tensor(obj) else obj


def _join_big_params(obj: dict, path: str) -> dict:
    """paddle.save with protocol 2/3 splits tensors over 1 GiB into `key@@.i` slices listed under BIG_PARAM_KEY."""
    info = obj.pop(BIG_PARAM_KEY, None)
    if info is None:
        return obj
    try:
        for key, entry in info.items():
            parts = [obj.pop(part) for part in entry["slices"]]
            obj[key] = np.concatenate(parts).reshape(entry["OriginShape"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"{path}: a tensor split into slices cannot be reassembled ({err!r}); the file is "
                              "corrupt") from err
    return obj


def _is_named_tensor(obj: Any) -> bool:
    """paddle.save writes a Tensor outside a flat state dict as the tuple (name, array)."""
    return type(obj) is tuple and len(obj) == 2 and isinstance(obj[0], str) and isinstance(obj[1], np.ndarray)


def _has_named_tensor(obj: Any) -> bool:
    if _is_named_tensor(obj):
        return True
    if type(obj) in (dict, collections.OrderedDict):
        return any(_has_named_tensor(v) for v in obj.values())
    if type(obj) in (list, tuple):
        return any(_has_named_tensor(v) for v in obj)
    return False


def _named_tensors_as_arrays(obj: Any) -> Any:
    """Every (name, array) tuple replaced by its array, as paddle.load does once it finds one."""
    if _is_named_tensor(obj):
        return obj[1]
    if type(obj) in (dict, collections.OrderedDict):
        for key in list(obj):
            obj[key] = _named_tensors_as_arrays(obj[key])
        return obj
    if type(obj) is list:
        obj[:] = [_named_tensors_as_arrays(v) for v in obj]
        return obj
    if type(obj) is tuple:
        return tuple(_named_tensors_as_arrays(v) for v in obj)
    if type(obj) is set:
        return {_named_tensors_as_arrays(v) for v in obj}
    return obj


# ----------------------------------------------------------------------------------- PyTorch zip checkpoints
@dataclass(frozen=True)
class TorchDtype:
    """A torch dtype as numpy stores it (bfloat16 as its uint16 bits, widened to float32 on reading)."""

    name: str
    numpy: str

    def __setstate__(self, state) -> None:
        raise _Refused(f"torch.{self.name}.__setstate__")


@dataclass(frozen=True)
class TorchStorageType:
    """Stand-in for `torch.FloatStorage` and co.: only says which dtype a storage record holds."""

    name: str
    dtype: TorchDtype

    def __setstate__(self, state) -> None:
        raise _Refused(f"torch.{self.name}.__setstate__")


_TORCH_DTYPES = {
    name: TorchDtype(name, code)
    for name, code in (
        ("float64", "f8"), ("float32", "f4"), ("float16", "f2"), ("bfloat16", "u2"), ("int64", "i8"),
        ("int32", "i4"), ("int16", "i2"), ("int8", "i1"), ("uint8", "u1"), ("uint16", "u2"), ("uint32", "u4"),
        ("uint64", "u8"), ("bool", "b1"), ("complex64", "c8"), ("complex128", "c16"),
    )
}  # fmt: skip
_TORCH_DTYPE_ALIASES = {"double": "float64", "float": "float32", "half": "float16", "long": "int64", "int": "int32",
                        "short": "int16", "cfloat": "complex64", "cdouble": "complex128"}
_TORCH_STORAGES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}  # fmt: skip


def _unsupported_torch_dtype(module: str, name: str) -> str:
    if module == "torch" and name.startswith(("float8", "float4", "complex32", "chalf", "qint", "quint", "bits")):
        return (f"holds tensors of dtype torch.{name}, which numpy has no type for; convert them (e.g. to float32) "
                "with torch and re-save")
    return ""


@dataclass(frozen=True)
class TorchStorage:
    """One storage record: its raw bytes (writable, in the file's byte order) and the dtype they hold."""

    data: np.ndarray
    dtype: TorchDtype
    byteorder: str

    def __setstate__(self, state) -> None:
        raise _Refused("torch storage.__setstate__")


def _check_ints(values, what: str, path: str) -> tuple:
    values = tuple(values) if isinstance(values, (tuple, list)) else values
    if not isinstance(values, tuple) or not all(type(v) is int and v >= 0 for v in values):
        raise CheckpointError(f"{path}: invalid tensor {what} {values!r}; the file is corrupt")
    return values


def _tensor_from_storage(path: str, storage, offset, size, stride, dtype: TorchDtype, metadata) -> np.ndarray:
    """The numpy array torch would view in `storage`, bounds-checked (a forged view cannot read past it)."""
    if not isinstance(storage, TorchStorage) or not isinstance(dtype, TorchDtype):
        raise CheckpointError(f"{path}: a tensor without a storage record; the file is corrupt")
    (offset,) = _check_ints((offset,), "offset", path)
    size, stride = _check_ints(size, "size", path), _check_ints(stride, "stride", path)
    if len(size) != len(stride):
        raise CheckpointError(f"{path}: tensor size {size} and stride {stride} disagree; the file is corrupt")
    element = np.dtype(dtype.numpy).newbyteorder("<" if storage.byteorder == "little" else ">")
    usable = storage.data.size - storage.data.size % element.itemsize
    elements = storage.data[:usable].view(element)
    count = int(np.prod(size, dtype=np.int64))
    if count == 0:
        array = np.empty(size, dtype=element)
    else:
        last = offset + sum((n - 1) * s for n, s in zip(size, stride))
        if last >= elements.size:
            raise CheckpointError(f"{path}: a tensor view (offset {offset}, size {size}, stride {stride}) reaches past "
                                  f"its storage of {elements.size} elements; the file is corrupt")
        contiguous = tuple(int(np.prod(size[i + 1:], dtype=np.int64)) for i in range(len(size)))
        dense = all(n == 1 or s == c for n, s, c in zip(size, stride, contiguous))
        if offset == 0 and count == elements.size and dense:  # the whole storage in order: no copy
            array = elements.reshape(size)
        else:
            strides = tuple(s * element.itemsize for s in stride)
            array = np.array(np.lib.stride_tricks.as_strided(elements[offset:], size, strides, writeable=False))
    if not array.dtype.isnative:
        array = array.astype(array.dtype.newbyteorder("="))
    if dtype.name == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return _apply_tensor_metadata(array, metadata, path)


def _apply_tensor_metadata(array: np.ndarray, metadata, path: str) -> np.ndarray:
    """torch saves a lazily conjugated / negated view as its storage plus `{'conj': True}` / `{'neg': True}`."""
    if not metadata:
        return array
    if not isinstance(metadata, dict) or not set(metadata) <= {"conj", "neg"}:
        raise CheckpointError(f"{path}: unsupported tensor metadata {metadata!r}")
    if metadata.get("conj"):
        array = np.conjugate(array)
    if metadata.get("neg"):
        array = np.negative(array)
    return array


class SavedNamespace:
    """Stands in for `argparse.Namespace`, which the training scripts of timm, DeiT and the EVA repositories save
    next to the weights (`'args': args`): a fresh, plain object whose attributes the pickle fills with values that
    went through the same restricted unpickler. Nothing is called."""

    def __repr__(self) -> str:
        return f"SavedNamespace({vars(self)})"


def _torch_globals(path: str) -> Dict[str, Any]:
    """Stand-ins for what `torch.save` pickles around tensors; they rebuild numpy arrays, torch is never imported."""

    def rebuild_v2(storage, offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
        if isinstance(storage, _LegacyStorage):
            return storage
        dtype = storage.dtype if isinstance(storage, TorchStorage) else None
        return _tensor_from_storage(path, storage, offset, size, stride, dtype, metadata)

    def rebuild_v3(storage, offset, size, stride, requires_grad, backward_hooks, dtype, metadata=None):
        if isinstance(storage, _LegacyStorage):
            return storage
        return _tensor_from_storage(path, storage, offset, size, stride, dtype, metadata)

    def rebuild_parameter(data, requires_grad=True, backward_hooks=None, state=None):
        return data

    allowed = dict(BASE_GLOBALS)
    for name, func in (("_rebuild_tensor_v2", rebuild_v2), ("_rebuild_tensor_v3", rebuild_v3),
                       ("_rebuild_parameter", rebuild_parameter), ("_rebuild_parameter_with_state", rebuild_parameter)):
        allowed[f"torch._utils.{name}"] = _StandIn(f"torch._utils.{name}", func)
    for name, dtype in list(_TORCH_DTYPES.items()) + [(a, _TORCH_DTYPES[n]) for a, n in _TORCH_DTYPE_ALIASES.items()]:
        allowed[f"torch.{name}"] = dtype
    for name, dtype in _TORCH_STORAGES.items():
        allowed[f"torch.{name}"] = TorchStorageType(name, _TORCH_DTYPES[dtype])
    allowed["torch.storage.UntypedStorage"] = allowed["torch.UntypedStorage"]  # how tensors of newer dtypes name it
    allowed["argparse.Namespace"] = SavedNamespace
    return allowed


class _TorchRecords:
    """persistent_load of a torch zip: ('storage', storage type, key, location, numel) -> its `data/<key>` record,
    read once however many tensors view it."""

    def __init__(self, archive: zipfile.ZipFile, prefix: str, path: str, byteorder: str):
        self.archive, self.prefix, self.path, self.byteorder = archive, prefix, path, byteorder
        self.storages: Dict[str, TorchStorage] = {}

    def __call__(self, pid: Any) -> TorchStorage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise CheckpointError(f"{self.path}: unexpected external record {str(pid)[:80]}; the file is corrupt")
        _, storage_type, key, _location, numel = pid
        if not isinstance(storage_type, TorchStorageType) or not isinstance(key, str) or type(numel) is not int:
            raise CheckpointError(f"{self.path}: malformed storage record {str(pid)[:80]}; the file is corrupt")
        if key not in self.storages:
            nbytes = numel * np.dtype(storage_type.dtype.numpy).itemsize
            self.storages[key] = TorchStorage(self._read(key, nbytes), storage_type.dtype, self.byteorder)
        return self.storages[key]

    def _read(self, key: str, nbytes: int) -> np.ndarray:
        name = f"{self.prefix}data/{key}"
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise CheckpointError(f"{self.path}: storage record {name} is missing; the file is truncated or "
                                  "corrupt") from None
        if nbytes < 0 or info.file_size < nbytes:
            raise CheckpointError(f"{self.path}: storage record {name} holds {info.file_size} bytes, {nbytes} "
                                  "expected; the file is truncated or corrupt")
        buffer = bytearray(nbytes)
        view = memoryview(buffer)
        with self.archive.open(info) as f:
            done = 0
            while done < nbytes:
                read = f.readinto(view[done:done + READ_CHUNK])
                if not read:
                    raise EOFError(f"storage record {name} ends early")
                done += read
        return np.frombuffer(buffer, dtype=np.uint8)


def load_torch(path: str) -> Any:
    """What `torch.load(path, weights_only=True)` returns for a `torch.save` zip checkpoint, tensors as numpy
    arrays (bfloat16 widened to float32), without torch and without running code. Legacy (pre-1.6) files are
    refused."""
    with open(path, "rb") as f:
        zipped = f.read(4) == b"PK\x03\x04"
    if not zipped:
        _refuse_legacy_torch(path)
    with zipfile.ZipFile(path) as archive:
        records = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(records) != 1:
            raise CheckpointError(f"{path}: a zip file but not a PyTorch checkpoint (expected one <name>/data.pkl "
                                  f"record, found {len(records)})")
        prefix = records[0][: -len("data.pkl")]
        byteorder = sys.byteorder
        if prefix + "byteorder" in archive.namelist():
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
            if byteorder not in ("little", "big"):
                raise CheckpointError(f"{path}: unknown byte order {byteorder!r}; the file is corrupt")
        with archive.open(records[0]) as f:
            persistent = _TorchRecords(archive, prefix, path, byteorder)
            return restricted_load(f, path, _torch_globals(path), persistent_load=persistent, encoding="utf-8")


class _LegacyStorage:
    """Placeholder for a legacy file's storages: the pickle is scanned for unsafe globals, never materialised."""


def _refuse_legacy_torch(path: str) -> NoReturn:
    """A non-zip .pt/.pth: check it is a legacy torch file, scan its pickle (naming any unsafe global), refuse it."""
    with open(path, "rb") as f:
        magic = restricted_load(f, path, BASE_GLOBALS, encoding="utf-8")
        if type(magic) is not int or magic != LEGACY_TORCH_MAGIC:
            raise CheckpointError(f"{path}: not a PyTorch checkpoint (neither a torch.save zip nor the legacy "
                                  "format): cannot read the weight file, it is truncated or corrupt")
        restricted_load(f, path, BASE_GLOBALS)  # protocol version
        restricted_load(f, path, BASE_GLOBALS)  # sys info
        legacy = dict(_torch_globals(path))
        legacy["torch._utils._rebuild_tensor"] = _StandIn("torch._utils._rebuild_tensor", lambda storage, *a: storage)
        restricted_load(f, path, legacy, persistent_load=lambda pid: _LegacyStorage(), encoding="utf-8")
    raise CheckpointError(
        f"{path}: a PyTorch checkpoint in the legacy (before torch 1.6, non-zip) format, which is not read here; "
        "re-save it with a recent torch (`torch.save(state_dict, path)`) or as .safetensors "
        "(`safetensors.torch.save_file`)"
    )


# ------------------------------------------------------------------------------------ numpy and safetensors
def load_npz(path: str) -> Dict[str, np.ndarray]:
    """Every array of an `.npz`; numpy never unpickles (an object array's pickle is only scanned, then refused)."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {}
        for key in data.files:
            try:
                arrays[key] = data[key]
            except ValueError as err:
                if "allow_pickle" not in str(err):
                    raise
                with data.zip.open(key + ".npy") as member:
                    _refuse_object_array(member, f"{path} (entry {key})")
        return arrays


def load_npy(path: str) -> np.ndarray:
    """The array in a `.npy` file; an object array (a pickle) is refused like in `load_npz`."""
    with _reading(path):
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as err:
            if "allow_pickle" not in str(err):
                raise
            with open(path, "rb") as f:
                _refuse_object_array(f, path)


def _refuse_object_array(member: BinaryIO, where: str) -> NoReturn:
    """An object array is a pickle of Python objects, not numbers: scan it (naming an unsafe global), then refuse."""
    version = np.lib.format.read_magic(member)
    readers = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
    if version in readers:
        readers[version](member)
        restricted_load(member, where, BASE_GLOBALS, encoding="latin1")
    raise CheckpointError(f"{where}: an array of Python objects (a pickle), not of numbers; weights must be numeric")


def load_safetensors(path: str) -> Dict[str, np.ndarray]:
    """A `.safetensors` file (a JSON header and raw bytes: no code by construction)."""
    from safetensors.numpy import load_file

    return load_file(path)


# --------------------------------------------------------------------------------------------- public entry
@contextlib.contextmanager
def _reading(path: str) -> Iterator[None]:
    """Any failure while parsing becomes a CheckpointError that names the file."""
    try:
        yield
    except (CheckpointError, FileNotFoundError, ImportError):
        raise
    except MemoryError as err:  # a corrupt pickle header can declare an absurd size
        raise CheckpointError(
            f"{path}: ran out of memory reading the weight file; it is corrupt (declares an impossible size) or too "
            "large for this machine"
        ) from err
    except (
        pickle.UnpicklingError,
        zipfile.BadZipFile,
        EOFError,
        OSError,
        ValueError,
        RuntimeError,
        OverflowError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
        _SafetensorError,
    ) as err:
        raise CheckpointError(f"{path}: cannot read the weight file, it is truncated or corrupt ({err})") from err


_LOADERS: Dict[tuple, Callable[[str], Any]] = {
    SAFETENSORS_SUFFIXES: load_safetensors,
    PADDLE_SUFFIXES: load_paddle,
    NUMPY_SUFFIXES: load_npz,
    TORCH_SUFFIXES: load_torch,
}


def load_state_dict_file(path: str) -> Any:
    """The content of a weight file, picked by suffix, tensors as numpy arrays (possibly nested in training-
    checkpoint dicts); no code from the file runs. Errors name the file: `FileNotFoundError`, `UnsafeFileError`
    for a pickle that would run code, `CheckpointError` for anything unreadable."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"weight file not found: {path}")
    lower = path.lower()
    for suffixes, loader in _LOADERS.items():
        if lower.endswith(suffixes):
            with _reading(path):
                return loader(path)
    known = sum(_LOADERS, ())
    raise CheckpointError(f"{path}: unknown weight file type; expected one of {known}")


def verify_checkpoint_dir(path: str) -> List[str]:
    """Safe-read every pickle a PaddleNLP resume from `path` would `paddle.load` (model, optimizer, scheduler,
    scaler, RNG states), so a file that would run code is refused before Paddle opens it; returns the files read.
    A path that is not a directory is left to PaddleNLP to report."""
    if not os.path.isdir(path):
        return []
    checked = []
    for name in sorted(os.listdir(path)):
        file = os.path.join(path, name)
        if os.path.isfile(file) and any(fnmatch.fnmatch(name, pattern) for pattern in RESUME_PICKLES):
            with _reading(file):
                load_paddle(file, rng_state=is_rng_state_file(file))
            checked.append(file)
    logger.info("checkpoint %s: %d pickle files checked, none runs code", path, len(checked))
    return checked
