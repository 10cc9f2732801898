"""Reading tensors and moving their bytes to and from side files (spec section 13.6).

The trust boundary (spec 13.6) is enforced here, in :func:`external_location`,
the one function that turns a tensor's ``external_data`` entries into a file
to open: the location must be a relative path without ``..`` that resolves
(symlinks followed) inside the model's own folder to a regular file, and
``offset + length`` must lie within that file. Every reader of external bytes
(:func:`tensor_array`, :func:`inline_copy`, :func:`load_external`, and the
output writer :mod:`monoquant_np.onnx.streaming`) opens files only through it
(:func:`open_external`), and :func:`check_tensors`
applies it to every tensor of a model when the model is loaded.

Every tensor of a model — initializers and ``Constant`` values, in the main
graph and every subgraph — is reached through :func:`iter_tensors`. A tensor's
size is computed from its dims and type (:func:`tensor_nbytes`), never by
reading its data. :func:`tensor_array` reads one tensor with at most one copy
of its bytes (external data straight from its file at its offset).
:func:`inline_copy` reads external tensors back; writing them to a side file
is :mod:`monoquant_np.onnx.streaming`'s job.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from .protobuf import constant_tensor, iter_graphs

__all__ = [
    "iter_tensors", "is_external", "tensor_nbytes", "tensor_array", "inline_copy", "external_base_dir",
    "external_location", "check_tensors", "load_external", "every_tensor", "open_external",
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


def every_tensor(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every ``TensorProto`` of ``model``: initializers, sparse initializers' values and indices, and every
    tensor-valued node attribute (not only ``Constant``'s), in all graphs and in the model's functions."""
    graphs = list(iter_graphs(model.graph))
    nodes = [n for g in graphs for n in g.node] + [n for f in model.functions for n in f.node]
    for f in model.functions:  # a function body's If/Loop subgraphs
        for n in f.node:
            for a in n.attribute:
                for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                    for sub in iter_graphs(g):
                        graphs.append(sub)
                        nodes.extend(sub.node)
    for g in graphs:
        yield from g.initializer
        for sp in g.sparse_initializer:
            yield from (sp.values, sp.indices)
    for n in nodes:
        for a in n.attribute:
            if a.HasField("t"):
                yield a.t
            yield from a.tensors
            for sp in ([a.sparse_tensor] if a.HasField("sparse_tensor") else []) + list(a.sparse_tensors):
                yield from (sp.values, sp.indices)


def _refuse(t: TensorProto, location: str, why: str) -> ValueError:
    return ValueError(f"tensor {t.name!r}: external data location {location!r} {why} (external data must be a "
                      "regular file inside the model's folder)")


def external_location(t: TensorProto, base_dir: str | os.PathLike | None) -> tuple[Path, int, int]:
    """``(file, offset, length)`` of external tensor ``t``, after the trust-boundary checks (spec 13.6).

    ``location`` must be a non-empty relative path with no ``..`` part and no
    NUL; ``base_dir / location`` with every symlink resolved must lie inside
    ``base_dir`` resolved, and be a regular file (not a folder, FIFO, device
    or socket), itself not a symbolic link and with one hard link;
    ``offset >= 0`` and ``length >= 0`` (default: the tensor's size from its
    dims and type, :func:`tensor_nbytes`) must be integers with
    ``offset + length <= `` the file's size, and a ``length`` given for a
    fixed-size type must equal that size. Anything else is one ``ValueError``
    naming the tensor and the location. The returned path is the resolved one.

    # Note: the same rules as ``onnx.load`` (onnx >= 1.17 refuses absolute
    # paths, ``..``, symlinks and hard-linked files); onnxruntime refuses
    # locations outside the model's folder too.
    """
    root = os.path.realpath(external_base_dir(base_dir))
    if any(d < 0 for d in t.dims):
        raise ValueError(f"tensor {t.name!r} has dims {tuple(t.dims)}: a dimension is negative")
    info = {e.key: e.value for e in t.external_data}
    location = info.get("location", "")
    if not location or "\0" in location:
        raise _refuse(t, location, "is empty or not a file name")
    parts = PurePosixPath(location).parts
    if PurePosixPath(location).is_absolute() or os.path.isabs(location):
        raise _refuse(t, location, "is an absolute path")
    if ".." in parts or ".." in Path(location).parts:
        raise _refuse(t, location, "climbs out with '..'")
    real = os.path.realpath(os.path.join(root, location))
    if os.path.commonpath([root, real]) != root:
        raise _refuse(t, location, f"resolves to {real!r}, outside the model's folder {root!r}")
    if os.path.islink(os.path.join(root, location)):
        raise _refuse(t, location, "is a symbolic link")
    try:
        st = os.stat(real)
    except OSError as e:
        raise ValueError(f"external data file {os.path.join(root, location)!r} of tensor {t.name!r} "
                         f"does not exist or cannot be read ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(t, location, "is not a regular file")
    if st.st_nlink > 1:
        raise _refuse(t, location, f"has {st.st_nlink} hard links (one may lead out of the folder)")
    offset, length = _int_entry(t, info, "offset") or 0, _int_entry(t, info, "length")
    need = _fixed_nbytes(t)
    if length is None:
        length = need if need is not None else st.st_size - offset
    elif need is not None and length != need:
        raise ValueError(f"tensor {t.name!r}: external data in {location!r} has length {length}, its dims "
                         f"{tuple(t.dims)} and type need {need} bytes")
    if offset + length > st.st_size:
        raise ValueError(f"external data of tensor {t.name!r} in {location!r} is truncated: offset {offset} + "
                         f"length {length} is past the end of the file ({st.st_size} bytes)")
    return Path(real), offset, length


def _int_entry(t: TensorProto, info: dict[str, str], key: str) -> int | None:
    """The ``external_data`` entry ``key`` as an int >= 0 (None when absent); else ``ValueError``."""
    if key not in info:
        return None
    text = info[key]
    if not text.isascii() or not text.isdigit():
        raise ValueError(f"tensor {t.name!r}: external data {key} {text!r} of location "
                         f"{info.get('location', '')!r} is not an integer >= 0")
    return int(text)


def open_external(t: TensorProto, base_dir: str | os.PathLike | None) -> tuple[BinaryIO, int, int]:
    """``(open file, offset, length)`` of external tensor ``t`` (:func:`external_location`); the opened file
    itself is checked again (regular, long enough), so a file swapped after the check is refused too."""
    path, offset, length = external_location(t, base_dir)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    f = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or offset + length > st.st_size:
        f.close()
        raise ValueError(f"tensor {t.name!r}: external data file {str(path)!r} changed while it was read")
    f.seek(offset)
    return f, offset, length


def check_tensors(model: onnx.ModelProto, base_dir: str | os.PathLike | None) -> None:
    """Raise ``ValueError`` unless every tensor of ``model`` (:func:`every_tensor`) is sound: no negative
    dimension, inline ``raw_data`` of exactly the size its dims and type need, and external data that
    passes :func:`external_location` (relative to ``base_dir``, the model's folder). Nothing is read."""
    for t in every_tensor(model):
        if any(d < 0 for d in t.dims):
            raise ValueError(f"tensor {t.name!r} has dims {tuple(t.dims)}: a dimension is negative")
        if is_external(t):
            external_location(t, base_dir)
        elif t.HasField("raw_data"):
            need = _fixed_nbytes(t)
            if need is not None and len(t.raw_data) != need:
                raise ValueError(f"tensor {t.name!r} holds {len(t.raw_data)} bytes of raw data, its dims "
                                 f"{tuple(t.dims)} and type need {need}")


#: Element bits of the packed types (two or four elements per byte); getattr: older onnx lacks some.
_SUB_BYTE_BITS = {getattr(TensorProto, name): bits for name, bits in
                  (("INT4", 4), ("UINT4", 4), ("FLOAT4E2M1", 4), ("INT2", 2), ("UINT2", 2))
                  if hasattr(TensorProto, name)}
#: Types whose byte size is not ``n * itemsize``: their sizes are not checked.
_UNSIZED = {getattr(TensorProto, name) for name in ("STRING", "UNDEFINED", "FLOAT6E2M3", "FLOAT6E3M2")
            if hasattr(TensorProto, name)}


def _fixed_nbytes(t: TensorProto) -> int | None:
    """Bytes of ``t``'s data from its dims and type, or None for types without a fixed size (strings,
    undefined, 6-bit floats, unknown)."""
    n = math.prod(int(d) for d in t.dims)
    bits = _SUB_BYTE_BITS.get(t.data_type)
    if bits is not None:
        return (n * bits + 7) // 8
    if t.data_type in _UNSIZED:
        return None
    try:
        return n * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return None


def tensor_nbytes(t: TensorProto) -> int:
    """Bytes of the tensor's data: ``ceil(n * bits / 8)`` for the 4- and 2-bit types, ``n * itemsize``
    otherwise.

    Computed from dims and type, so the (possibly large, possibly external)
    data is never read; strings and unknown types count their proto size.
    """
    n = _fixed_nbytes(t)
    return t.ByteSize() if n is None else n


def tensor_array(t: TensorProto, base_dir: str | os.PathLike | None = None) -> np.ndarray:
    """The tensor as a NumPy array with one copy of its bytes at most.

    External data is read straight from its file (``np.fromfile`` at the
    offset), raw data is viewed from the one ``bytes`` object protobuf hands
    out; ``onnx.numpy_helper.to_array`` would load external bytes into the
    proto first and copy them again.
    """
    simple = t.data_type in (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE)
    if is_external(t):
        if not simple:
            inline = TensorProto()
            inline.CopyFrom(t)
            load_external(inline, base_dir)
            return numpy_helper.to_array(inline)
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        n = math.prod(int(d) for d in t.dims)
        f, _, _ = open_external(t, base_dir)
        with f:
            a = np.fromfile(f, dtype=dt, count=n)
        if a.size != n:
            raise ValueError(f"external data of tensor {t.name!r} is truncated: {a.size} of {n} values")
        return a.reshape(tuple(t.dims)).astype(dt.newbyteorder("="), copy=False)
    if simple and t.HasField("raw_data"):
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        return np.frombuffer(t.raw_data, dtype=dt).reshape(tuple(t.dims)).astype(dt.newbyteorder("="), copy=False)
    return numpy_helper.to_array(t)


def _read_external(t: TensorProto, base_dir: str | os.PathLike | None) -> bytes:
    """The ``length`` bytes of external tensor ``t`` (:func:`external_location`); ``ValueError`` if short."""
    f, _, length = open_external(t, base_dir)
    with f:
        raw = f.read(length)
    if len(raw) < length:
        raise ValueError(f"external data of tensor {t.name!r} is truncated: {len(raw)} of {length} bytes")
    return raw


def load_external(t: TensorProto, base_dir: str | os.PathLike | None) -> None:
    """Read external tensor ``t``'s bytes (:func:`external_location`) into its ``raw_data``, in place."""
    t.raw_data = _read_external(t, base_dir)
    del t.external_data[:]
    t.data_location = TensorProto.DEFAULT


def inline_copy(model: onnx.ModelProto, base_dir: str | os.PathLike | None) -> onnx.ModelProto:
    """A copy of ``model`` with external tensors read back into ``raw_data`` from files under ``base_dir``.

    Raises ``ValueError`` when a tensor is external and ``base_dir`` is None or
    its data is truncated, ``OSError`` when its data file is missing.
    """
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in iter_tensors(m):
        if is_external(t):
            load_external(t, base_dir)
    return m
