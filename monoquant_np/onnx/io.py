"""Loading and saving ONNX models safely (spec section 13.6).

* :func:`load_model` turns every way a file can be wrong (missing, a folder,
  not ONNX, truncated, external data missing) into one ``ValueError`` or
  ``OSError`` sentence that names the file.
* :func:`save_model` never leaves a partial output: it writes to a temporary
  name in the destination folder and renames it into place (``os.replace``,
  atomic on POSIX), data file first, model last. It refuses to overwrite its
  own input. With ``external_data=True`` every initializer of at least
  ``size_threshold`` bytes is appended to ``OUTPUT.data`` one tensor at a
  time, so memory holds at most one tensor's bytes beyond the model itself;
  tensors that still refer to the input's external data file (``base_dir``)
  are copied across the same way, one at a time.

Models whose serialized size would exceed protobuf's 2 GB limit are written
with external data automatically.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

__all__ = [
    "load_model", "save_model", "save", "write_text_atomic", "copy_atomic",
    "iter_graphs", "iter_tensors", "tensor_nbytes", "tensor_array", "PROTOBUF_LIMIT",
]

#: protobuf refuses to serialize a message of 2 GiB or more.
PROTOBUF_LIMIT = 2**31 - 1


def _check_input_path(path: str | os.PathLike, what: str) -> Path:
    p = Path(path)
    if not p.exists():
        raise OSError(f"{what} {str(p)!r} does not exist")
    if p.is_dir():
        raise OSError(f"{what} {str(p)!r} is a folder, expected an .onnx file")
    return p


def load_model(path: str | os.PathLike, *, load_external_data: bool = True, what: str = "model") -> onnx.ModelProto:
    """Read an ONNX model, with a clear error for every kind of bad file.

    Args:
        path: an ``.onnx`` file.
        load_external_data: read tensors stored in side files now (True), or
            keep them as references to be streamed later (False; pass the
            file's folder as ``base_dir`` to :func:`save_model`).
        what: the word used in messages ("model", "reference", ...).

    Raises:
        OSError: the file is missing, is a folder, or cannot be read.
        ValueError: the file is not an ONNX model, is truncated, has no
            graph, or its external data is missing.
    """
    p = _check_input_path(path, what)
    size = p.stat().st_size
    if size == 0:
        raise ValueError(f"{what} {str(p)!r} is empty (0 bytes), not an ONNX model")
    try:
        model = onnx.load(str(p), load_external_data=False)
    except Exception as e:  # protobuf's DecodeError, or anything the parser throws
        raise ValueError(
            f"{what} {str(p)!r} is not a readable ONNX model (truncated or not ONNX): "
            f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'parse error'}"
        ) from None
    if not model.HasField("graph") or (not model.graph.node and not model.graph.output):
        raise ValueError(f"{what} {str(p)!r} is not an ONNX model: it has no graph (truncated or another format)")
    if not model.opset_import:
        raise ValueError(f"{what} {str(p)!r} is not an ONNX model: it declares no opset")
    if load_external_data:
        try:
            onnx.load_external_data_for_model(model, str(p.parent))
        except Exception as e:
            raise ValueError(f"{what} {str(p)!r}: cannot read its external data: {e}") from None
    return model


def iter_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """``graph`` and every subgraph (If/Loop/Scan bodies, any depth), outermost first."""
    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from iter_graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from iter_graphs(g)


def iter_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    """Every initializer and every ``Constant`` node's tensor, in all graphs."""
    for g in iter_graphs(model.graph):
        yield from g.initializer
        for node in g.node:
            if node.op_type == "Constant" and node.domain in ("", "ai.onnx"):
                for attr in node.attribute:
                    if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                        yield attr.t


def _is_external(t: TensorProto) -> bool:
    return t.HasField("data_location") and t.data_location == TensorProto.EXTERNAL


def _external_info(t: TensorProto) -> dict[str, str]:
    return {e.key: e.value for e in t.external_data}


def tensor_nbytes(t: TensorProto) -> int:
    """Bytes of the tensor's data: ``ceil(n / 2)`` for INT4/UINT4, ``n * itemsize`` otherwise.

    Computed from dims and type, so the (possibly large, possibly external)
    data is never read; strings and unknown types count their proto size.
    """
    n = 1
    for d in t.dims:
        n *= int(d)
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
    if simple and _is_external(t) and base_dir is not None:
        info = _external_info(t)
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        n = 1
        for d in t.dims:
            n *= int(d)
        a = np.fromfile(Path(base_dir) / info["location"], dtype=dt, count=n, offset=int(info.get("offset", 0)))
        if a.size != n:
            raise ValueError(f"external data of tensor {t.name!r} is truncated: {a.size} of {n} values")
        return a.reshape(tuple(t.dims)).astype(dt.newbyteorder("="), copy=False)
    if simple and t.HasField("raw_data"):
        dt = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).newbyteorder("<")
        return np.frombuffer(t.raw_data, dtype=dt).reshape(tuple(t.dims)).astype(dt.newbyteorder("="), copy=False)
    from onnx import numpy_helper

    return numpy_helper.to_array(t, str(base_dir) if base_dir is not None else "")


def _read_external(t: TensorProto, base_dir: Path) -> bytes:
    info = _external_info(t)
    loc = base_dir / info["location"]
    with open(loc, "rb") as f:
        f.seek(int(info.get("offset", 0)))
        n = int(info["length"]) if "length" in info else -1
        return f.read(n)


def _check_output_path(path: Path, inputs: tuple[str | os.PathLike, ...]) -> None:
    if path.exists() and path.is_dir():
        raise OSError(f"output {str(path)!r} is a folder, expected a file name")
    if not path.parent.exists():
        raise OSError(f"output folder {str(path.parent)!r} does not exist")
    for src in inputs:
        s = Path(src)
        if s.exists() and path.exists() and os.path.samefile(s, path):
            raise ValueError(f"output {str(path)!r} is the input file; choose another name "
                             "(the input is never overwritten)")
        if s.resolve() == path.resolve():
            raise ValueError(f"output {str(path)!r} is the input file; choose another name "
                             "(the input is never overwritten)")


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    external_data: bool = False,
    size_threshold: int = 1024,
    base_dir: str | os.PathLike | None = None,
    inputs: tuple[str | os.PathLike, ...] = (),
    consume: bool = False,
) -> Path | None:
    """Write ``model`` to ``path`` atomically; return the data file's path or None.

    Args:
        model: the model; it is not modified (tensors are detached on a copy
            of the graph's protos only when written externally).
        path: the output ``.onnx`` file. Its folder must exist.
        external_data: write every tensor of ``size_threshold`` bytes or more
            to ``<path>.data`` (one file, tensors appended in graph order,
            offsets aligned to 64 bytes), one tensor in memory at a time.
        base_dir: the folder that tensors still stored as external
            references are relative to (the input model's folder).
        inputs: paths the output must not be (the input files).
        consume: with ``external_data``, move the tensors' bytes out of
            ``model`` itself instead of a copy (``model`` then refers to the
            written data file). Saves one copy of the model: the command line
            uses it so that peak memory stays near one model plus one tensor.

    Raises:
        OSError: the output folder is missing or the output is a folder.
        ValueError: ``path`` is one of ``inputs``.
    """
    out = Path(path)
    _check_output_path(out, inputs)
    has_external_refs = any(_is_external(t) for t in iter_tensors(model))
    if not external_data and not has_external_refs and model.ByteSize() > PROTOBUF_LIMIT:
        external_data = True
    if not external_data and has_external_refs:
        if base_dir is None:
            raise ValueError("model refers to external data; pass base_dir (the input model's folder)")
        if sum(tensor_nbytes(t) for t in iter_tensors(model)) > PROTOBUF_LIMIT:
            external_data = True
    folder = out.parent
    tmp_model = tmp_data = None
    data_path = out.with_name(out.name + ".data") if external_data else None
    try:
        fd, tmp_model = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        if external_data:
            fd, tmp_data = tempfile.mkstemp(prefix=f".{out.name}.data.", suffix=".tmp", dir=folder)
            os.close(fd)
            location = out.name + ".data"
            to_write = _externalize(model, Path(tmp_data), location, size_threshold, base_dir, consume)
        else:
            to_write = _inline(model, base_dir) if has_external_refs else model
        with open(tmp_model, "wb") as f:
            f.write(to_write.SerializeToString())
        if tmp_data is not None and data_path is not None:
            os.replace(tmp_data, data_path)
            tmp_data = None
        os.replace(tmp_model, out)
        tmp_model = None
    finally:
        for t in (tmp_model, tmp_data):
            if t is not None and os.path.exists(t):
                os.unlink(t)
    return data_path


def _inline(model: onnx.ModelProto, base_dir: str | os.PathLike | None) -> onnx.ModelProto:
    """A copy of ``model`` with external tensors read back into ``raw_data``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in iter_tensors(m):
        if _is_external(t):
            t.raw_data = _read_external(t, Path(base_dir))  # type: ignore[arg-type]
            del t.external_data[:]
            t.data_location = TensorProto.DEFAULT
    return m


def _externalize(
    model: onnx.ModelProto,
    data_file: Path,
    location: str,
    threshold: int,
    base_dir: str | os.PathLike | None,
    consume: bool,
) -> onnx.ModelProto:
    """``model`` (or a copy) with its large tensors moved to ``data_file``, one by one.

    Each tensor's bytes are moved to
    the file and cleared from the copy before the next is handled, so the peak
    is the model proto plus one tensor.
    """
    if consume:
        m = model
    else:
        m = onnx.ModelProto()
        m.CopyFrom(model)
    offset = 0
    with open(data_file, "wb") as f:
        for t in iter_tensors(m):
            if _is_external(t):
                if base_dir is None:
                    raise ValueError("model refers to external data; pass base_dir (the input model's folder)")
                raw = _read_external(t, Path(base_dir))
                del t.external_data[:]
            elif t.HasField("raw_data"):
                if tensor_nbytes(t) < threshold:
                    continue
                raw = t.raw_data
            else:
                if tensor_nbytes(t) < threshold or t.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
                    continue
                raw = onnx.numpy_helper.to_array(t).tobytes()
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


def write_text_atomic(path: str | os.PathLike, text: str, *, inputs: tuple[str | os.PathLike, ...] = ()) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a partial file)."""
    out = Path(path)
    _check_output_path(out, inputs)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` byte for byte to ``dst`` through a temporary file and a rename."""
    import shutil

    out = Path(dst)
    _check_output_path(out, (src,))
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


#: The public name of :func:`save_model` (``monoquant_np.onnx.save``).
save = save_model
