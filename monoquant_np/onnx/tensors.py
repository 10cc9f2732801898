"""Reading tensors and moving their bytes to and from side files (spec section 13.6).

Every tensor of a model — initializers and ``Constant`` values, in the main
graph and every subgraph — is reached through :func:`iter_tensors`. A tensor's
size is computed from its dims and type (:func:`tensor_nbytes`), never by
reading its data. :func:`tensor_array` reads one tensor with at most one copy
of its bytes (external data straight from its file at its offset).
:func:`externalize` moves large tensors to a side file one at a time;
:func:`inline_copy` reads external tensors back.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .protobuf import constant_tensor, iter_graphs

__all__ = [
    "iter_tensors", "is_external", "tensor_nbytes", "tensor_array", "inline_copy", "externalize", "external_base_dir",
]


def iter_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every initializer and every ``Constant`` node's tensor, in all graphs."""
    for g in iter_graphs(model.graph):
        yield from g.initializer
        for node in g.node:
            t = constant_tensor(node)
            if t is not None:
                yield t


def is_external(t: TensorProto) -> bool:
    """True when ``t``'s bytes stay in an external data file (``data_location == EXTERNAL``)."""
    return t.HasField("data_location") and t.data_location == TensorProto.EXTERNAL


def external_base_dir(base_dir: str | os.PathLike | None) -> Path:
    """``base_dir`` as a ``Path``; ``ValueError`` when it is None but the model has external tensors to read."""
    if base_dir is None:
        raise ValueError("model refers to external data; pass base_dir (the input model's folder)")
    return Path(base_dir)


def _external_file(t: TensorProto, base_dir: Path) -> tuple[Path, int, dict[str, str]]:
    """``(file, offset, external_data entries)`` of external tensor ``t``; ``OSError`` when the file is missing."""
    info = {e.key: e.value for e in t.external_data}
    loc = base_dir / info["location"]
    if not loc.is_file():
        raise OSError(f"external data file {str(loc)!r} of tensor {t.name!r} does not exist")
    return loc, int(info.get("offset", 0)), info


def tensor_nbytes(t: TensorProto) -> int:
    """Bytes of the tensor's data: ``ceil(n / 2)`` for INT4/UINT4, ``n * itemsize`` otherwise.

    Computed from dims and type, so the (possibly large, possibly external)
    data is never read; strings and unknown types count their proto size.
    """
    n = math.prod(int(d) for d in t.dims)
    if t.data_type in (TensorProto.INT4, TensorProto.UINT4):
        return (n + 1) // 2
    try:
        return n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return t.ByteSize()


def tensor_array(t: TensorProto, base_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The tensor as a NumPy array with one copy of its bytes at most.

    External data is read straight from its file (``np.fromfile`` at the
    offset), raw data is viewed from the one ``bytes`` object protobuf hands
    out; ``onnx.numpy_helper.to_array`` would load external bytes into the
    proto first and copy them again.
    """
    simple = t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    if simple and is_external(t) and base_dir is not None:
        loc, offset, _ = _external_file(t, Path(base_dir))
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        n = math.prod(int(d) for d in t.dims)
        a = np.fromfile(loc, dtype=dt, count=n, offset=offset)
        if a.size != n:
            raise ValueError(f"external data of tensor {t.name!r} in {str(loc)!r} is truncated: "
                             f"{a.size} of {n} values")
        return a.reshape(tuple(t.dims)).astype(dt.newbyteorder("="), copy=False)
    if simple and t.HasField("raw_data"):
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        return np.frombuffer(t.raw_data, dtype=dt).reshape(tuple(t.dims)).astype(dt.newbyteorder("="), copy=False)
    return numpy_helper.to_array(t, str(base_dir) if base_dir is not None else "")


def _read_external(t: TensorProto, base_dir: str | os.PathLike | None) -> bytes:
    """The bytes of external tensor ``t`` (``length`` of them, else :func:`tensor_nbytes`); ``ValueError`` if short."""
    loc, offset, info = _external_file(t, external_base_dir(base_dir))
    with open(loc, "rb") as f:
        f.seek(offset)
        n = int(info["length"]) if "length" in info else -1
        raw = f.read(n)
    want = n if n >= 0 else tensor_nbytes(t)
    if len(raw) < want:
        raise ValueError(f"external data of tensor {t.name!r} in {str(loc)!r} is truncated: "
                         f"{len(raw)} of {want} bytes")
    return raw


def inline_copy(model: onnx.ModelProto, base_dir: str | os.PathLike | None) -> onnx.ModelProto:
    """A copy of ``model`` with external tensors read back into ``raw_data`` from files under ``base_dir``.

    Raises ``ValueError`` when a tensor is external and ``base_dir`` is None or
    its data is truncated, ``OSError`` when its data file is missing.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in iter_tensors(m):
        if is_external(t):
            t.raw_data = _read_external(t, base_dir)
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
    return m


def externalize(
    model: onnx.ModelProto,
    data_file: Path,
    location: str,
    threshold: int,
    base_dir: str | os.PathLike | None,
    consume: bool,
) -> onnx.ModelProto:
    """``model`` (or a copy) with its large tensors moved to ``data_file``, one by one.

    Every tensor of ``threshold`` bytes or more (:func:`tensor_nbytes`), and
    every tensor still external (read from ``base_dir``), is appended to
    ``data_file`` at an offset aligned to 64 bytes and refers to it as
    ``location`` (the name written in the model). With ``consume`` the
    tensors of ``model`` itself are changed, else those of a copy. Each
    tensor's bytes are moved to the file and cleared from the proto before the
    next is handled, so the peak is the model proto plus one tensor. Raises
    as :func:`inline_copy` for external tensors.
    """
    if consume:
        m = model
    else:
        m = onnx.ModelProto()
        m.CopyFrom(model)
    offset = 0
    with open(data_file, "wb") as f:
        for t in iter_tensors(m):
            if is_external(t):
                raw = _read_external(t, base_dir)
                del t.external_data[:]
            elif t.HasField("raw_data"):
                if tensor_nbytes(t) < threshold:
                    continue
                raw = t.raw_data
            else:
                if tensor_nbytes(t) < threshold or t.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
                    continue
                raw = numpy_helper.to_array(t).tobytes()
                for field in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                    t.ClearField(field)
            pad = (-offset) % 64
            if pad:
                f.write(b"\0" * pad)
                offset += pad
            f.write(raw)
            t.ClearField("raw_data")
            t.data_location = TensorProto.EXTERNAL
            for k, v in (("location", location), ("offset", str(offset)), ("length", str(len(raw)))):
                e = t.external_data.add()
                e.key, e.value = k, v
            offset += len(raw)
            del raw
    return m
