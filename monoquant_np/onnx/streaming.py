"""Writing an output model while its tensors are produced (spec section 13.6).

* :class:`DataFile` is the output's external data file, open for the whole
  run: a tensor is appended at a 64-byte aligned offset as soon as it exists
  (the quantized weights, one by one, while the model quantizer runs) and its
  proto is changed to refer to it; tensors still stored in the input's side
  files are copied across in chunks of :data:`COPY_CHUNK` bytes, never whole.
* :func:`write_inline` writes a model whose tensors are external as one
  ``.onnx`` file, copying each tensor's bytes from its file in chunks: the
  protobuf encoding of an initializer is its header (name, dims, type) and then
  its ``raw_data`` field, so the bytes can be copied straight behind a length
  prefix computed from the sizes. Memory holds the graph without its tensors.

Together they bound the memory of writing a quantized model by a constant plus
one chunk, whatever the model's size (spec 13.6 states the whole bound).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import onnx
from onnx import TensorProto, numpy_helper

from .protobuf import constant_tensor, iter_graphs
from .tensors import external_location, is_external, iter_tensors, open_external, tensor_nbytes

__all__ = ["DataFile", "write_inline", "COPY_CHUNK", "ALIGN"]

#: Bytes copied at a time from one file to another.
COPY_CHUNK = 1 << 24
#: Offsets of tensors in a data file are multiples of this.
ALIGN = 64

_TYPED_FIELDS = ("float_data", "int32_data", "int64_data", "double_data", "uint64_data")


def _copy(src: BinaryIO, dst: BinaryIO, length: int, what: str) -> None:
    """Copy ``length`` bytes from ``src``'s position to ``dst`` in chunks; ``ValueError`` if ``src`` ends first."""
    left = length
    while left:
        chunk = src.read(min(left, COPY_CHUNK))
        if not chunk:
            raise ValueError(f"{what} is truncated: {length - left} of {length} bytes")
        dst.write(chunk)
        left -= len(chunk)


class DataFile:
    """An external data file being written: ``f`` open for writing at its start, ``path`` its name on disk,
    ``location`` the name tensors refer to (renamed with :meth:`rename` once the file has its final name)."""

    def __init__(self, f: BinaryIO, path: str | os.PathLike, location: str):
        self.f, self.path, self.location, self.offset = f, Path(path), location, 0

    def owns(self, t: TensorProto) -> bool:
        """True when ``t`` refers to this file."""
        return is_external(t) and any(e.key == "location" and e.value == self.location for e in t.external_data)

    def _refer(self, t: TensorProto, length: int) -> None:
        """Pad to :data:`ALIGN`, then make ``t`` refer to ``length`` bytes at the new offset."""
        pad = (-self.offset) % ALIGN
        if pad:
            self.f.write(b"\0" * pad)
            self.offset += pad
        t.ClearField("raw_data")
        for field in _TYPED_FIELDS:
            t.ClearField(field)
        del t.external_data[:]
        t.data_location = TensorProto.EXTERNAL
        for k, v in (("location", self.location), ("offset", str(self.offset)), ("length", str(length))):
            e = t.external_data.add()
            e.key, e.value = k, v

    def append(self, t: TensorProto, base_dir: str | os.PathLike | None = None, threshold: int = 0) -> bool:
        """Move ``t``'s bytes to the end of the file and make ``t`` refer to them; True when moved.

        An external tensor (of the input, under ``base_dir``) is copied in
        chunks; an inline one is moved when it has at least ``threshold``
        bytes (strings and undefined types stay inline).
        """
        if self.owns(t):
            return False
        if is_external(t):
            src, _, length = open_external(t, base_dir)
            with src:
                self._refer(t, length)
                _copy(src, self.f, length, f"external data of tensor {t.name!r}")
        elif tensor_nbytes(t) < threshold or t.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
            return False
        else:
            raw = t.raw_data if t.HasField("raw_data") else numpy_helper.to_array(t).tobytes()
            self._refer(t, len(raw))
            self.f.write(raw)
            length = len(raw)
            del raw
        self.offset += length
        return True

    def externalize(self, model: onnx.ModelProto, threshold: int, base_dir: str | os.PathLike | None,
                    done: Callable[[TensorProto], None] | None = None) -> None:
        """:meth:`append` every tensor of ``model`` in graph order (``done(t)`` after each one moved)."""
        for t in iter_tensors(model):
            if self.append(t, base_dir, threshold) and done is not None:
                done(t)

    def rename(self, model: onnx.ModelProto, location: str) -> None:
        """Make every tensor of ``model`` that refers to this file refer to it as ``location``."""
        for t in iter_tensors(model):
            if self.owns(t):
                for e in t.external_data:
                    if e.key == "location":
                        e.value = location
        self.location = location

    def open_tensor(self, t: TensorProto, base_dir: str | os.PathLike | None) -> tuple[BinaryIO, int]:
        """``(file positioned at t's bytes, length)`` of an external tensor, in this file or the input's."""
        if not self.owns(t):
            src, _, length = open_external(t, base_dir)
            return src, length
        info = {e.key: e.value for e in t.external_data}
        src = open(self.path, "rb")  # noqa: SIM115 - returned to the caller, who closes it
        src.seek(int(info["offset"]))
        return src, int(info["length"])


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _key(message: Any, field: str) -> bytes:
    """The key of length-delimited field ``field`` of ``message`` (wire type 2)."""
    return _varint(message.DESCRIPTOR.fields_by_name[field].number << 3 | 2)


def write_inline(model: onnx.ModelProto, f: BinaryIO, data: DataFile | None,
                 base_dir: str | os.PathLike | None, done: Callable[[TensorProto], None] | None = None) -> None:
    """Write ``model`` to ``f`` as one protobuf with every external tensor inline; ``model`` is not changed.

    The bytes are those of ``SerializeToString()`` of the model with its tensors read in (protobuf writes
    fields in field-number order, so a message is the bytes of its fields before the big one, the big one,
    the bytes of its fields after it). The main graph's external initializers are written as
    ``key(initializer) len(entry) <fields before raw_data> key(raw_data) len(L) <L bytes copied in chunks>
    <fields after raw_data>``, their external references dropped; other external tensors (in ``Constant``
    nodes and subgraphs) are read whole into a copy of the graph. ``data`` is the data file being written,
    whose tensors are read from its path; the others are opened under ``base_dir``.
    """
    graph = _fields(model.graph, lambda name: name != "initializer")
    for g in iter_graphs(graph):  # Constant nodes and subgraphs: small, read whole
        for t in [*g.initializer, *filter(None, map(constant_tensor, g.node))]:
            if is_external(t):
                src, length = _open(data, t, base_dir)
                with src:
                    raw = src.read(length)
                _inline(t)
                t.raw_data = raw
    entries: list[tuple[bytes, bytes, TensorProto | None, int]] = []  # (before, after, source, length)
    for t in model.graph.initializer:
        if not is_external(t):
            entries.append((t.SerializeToString(), b"", None, 0))
            continue
        h = TensorProto()
        h.CopyFrom(t)
        _inline(h)
        length = _length(data, t, base_dir)
        before, after = _split(h, "raw_data")
        entries.append((before + _key(TensorProto, "raw_data") + _varint(length), after, t, length))
    g_before, g_after = _split(graph, "initializer")
    m_before, m_after = _split(model, "graph")
    init_key = _key(onnx.GraphProto, "initializer")
    sizes = [len(before) + length + len(after) for before, after, _, length in entries]
    graph_len = len(g_before) + sum(len(init_key) + len(_varint(n)) + n for n in sizes) + len(g_after)
    f.write(m_before + _key(onnx.ModelProto, "graph") + _varint(graph_len) + g_before)
    for (before, after, t, length), n in zip(entries, sizes, strict=True):
        f.write(init_key + _varint(n) + before)
        if t is not None:
            src, _ = _open(data, t, base_dir)
            with src:
                _copy(src, f, length, f"external data of tensor {t.name!r}")
            if done is not None:
                done(t)
        f.write(after)
    f.write(g_after + m_after)


def _inline(t: TensorProto) -> None:
    """Drop ``t``'s external references, as if its bytes had always been inline."""
    del t.external_data[:]
    t.ClearField("data_location")


def _fields(message: Any, keep: Callable[[str], bool]) -> Any:
    """A copy of protobuf ``message`` with only the set fields whose name ``keep`` accepts (the others are
    never copied, however large)."""
    out = type(message)()
    for fd, value in message.ListFields():
        if not keep(fd.name):
            continue
        repeated = fd.is_repeated if hasattr(fd, "is_repeated") else fd.label == fd.LABEL_REPEATED  # protobuf < 6
        if repeated:
            getattr(out, fd.name).extend(value)
        elif fd.message_type is not None:
            getattr(out, fd.name).CopyFrom(value)
        else:
            setattr(out, fd.name, value)
    return out


def _split(message: Any, field: str) -> tuple[bytes, bytes]:
    """The serialized fields of ``message`` numbered below ``field``'s, and above it (``field`` left out)."""
    fields = message.DESCRIPTOR.fields_by_name
    n = fields[field].number
    before = _fields(message, lambda name: fields[name].number < n).SerializeToString()
    return before, _fields(message, lambda name: fields[name].number > n).SerializeToString()


def _length(data: DataFile | None, t: TensorProto, base_dir: str | os.PathLike | None) -> int:
    """Bytes of external tensor ``t``: its ``length`` in the data file being written, else as the input's
    side file holds it (:func:`~monoquant_np.onnx.tensors.external_location`, which checks it)."""
    if data is not None and data.owns(t):
        return int(next(e.value for e in t.external_data if e.key == "length"))
    return external_location(t, base_dir)[2]


def _open(data: DataFile | None, t: TensorProto, base_dir: str | os.PathLike | None) -> tuple[BinaryIO, int]:
    if data is not None:
        return data.open_tensor(t, base_dir)
    src, _, length = open_external(t, base_dir)
    return src, length
