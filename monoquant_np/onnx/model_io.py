"""Loading and saving ONNX models safely (spec section 13.6).

* :func:`load_model` turns every way a file can be wrong (missing, a folder,
  not ONNX, truncated, external data missing or outside the model's folder, a
  negative dimension) into one ``ValueError`` or ``OSError`` sentence that
  names the file; it applies the trust boundary of
  :func:`~monoquant_np.onnx.tensors.check_tensors` to every tensor.
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

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx

from .tensors import (
    check_tensors,
    every_tensor,
    external_base_dir,
    externalize,
    inline_copy,
    is_external,
    iter_tensors,
    load_external,
    tensor_nbytes,
)

__all__ = [
    "load_model", "save_model", "save", "write_text_atomic", "copy_atomic", "external_files",
    "check_output_path", "same_file", "PROTOBUF_LIMIT",
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
            graph, a tensor has a negative dimension or raw data of the
            wrong size, or its external data is missing, truncated, or not a
            regular file inside the model's folder (spec 13.6).
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
    try:
        check_tensors(model, p.parent)  # the trust boundary (spec 13.6): nothing outside p's folder is read
        if load_external_data:
            for t in every_tensor(model):
                if is_external(t):
                    load_external(t, p.parent)
    except (ValueError, OSError) as e:
        raise ValueError(f"{what} {str(p)!r}: {e}") from None
    return model


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when ``a`` and ``b`` name one file (any spelling, symlinks, hard links)."""
    a, b = Path(a), Path(b)
    if a.exists() and b.exists() and os.path.samefile(a, b):
        return True
    return a.resolve() == b.resolve()


def check_output_path(path: str | os.PathLike, inputs: tuple[str | os.PathLike, ...] = (),
                      what: str = "output") -> None:
    """Raise unless ``path`` can be written: ``OSError`` when it is a folder or its folder is missing,
    ``ValueError`` when it is one of ``inputs`` (which are never overwritten). ``what`` names it in messages."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise OSError(f"{what} {str(path)!r} is a folder, expected a file name")
    if not path.parent.exists():
        raise OSError(f"{what} folder {str(path.parent)!r} does not exist")
    for src in inputs:
        if same_file(src, path):
            raise ValueError(f"{what} {str(path)!r} is the input file {str(src)!r}; choose another name "
                             "(the input is never overwritten)")


@contextlib.contextmanager
def _temporary(out: Path, prefix: str) -> Iterator[str]:
    """A fresh temporary file ``.{prefix}.*.tmp`` next to ``out``, removed on exit unless renamed away."""
    fd, tmp = tempfile.mkstemp(prefix=f".{prefix}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        yield tmp
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _publish(tmp: str | os.PathLike, dst: Path) -> None:
    """Give ``tmp`` the mode a new file gets (0666 minus the umask; mkstemp makes 0600) and rename it to ``dst``."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(tmp, 0o666 & ~mask)
    os.replace(tmp, dst)


def external_files(model: onnx.ModelProto, base_dir: str | os.PathLike) -> list[Path]:
    """The side files that ``model``'s external tensors refer to (relative to ``base_dir``), each once."""
    locs = {e.value for t in iter_tensors(model) if is_external(t) for e in t.external_data if e.key == "location"}
    return [Path(base_dir) / loc for loc in sorted(locs)]


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
    check_output_path(out, inputs)
    has_external_refs = any(is_external(t) for t in iter_tensors(model))
    external_data = external_data or _too_large(model, has_external_refs, base_dir)
    data_path = out.with_name(out.name + ".data") if external_data else None
    if data_path is not None:
        check_output_path(data_path, inputs, "data file")
    data_tmp = _temporary(out, data_path.name) if data_path is not None else contextlib.nullcontext("")
    with _temporary(out, out.name) as tmp_model, data_tmp as tmp_data:
        if data_path is not None:
            to_write = externalize(model, Path(tmp_data), data_path.name, size_threshold, base_dir, consume)
        else:
            to_write = inline_copy(model, base_dir) if has_external_refs else model
        with open(tmp_model, "wb") as f:
            f.write(to_write.SerializeToString())
        if data_path is not None:
            _publish(tmp_data, data_path)
        _publish(tmp_model, out)
    return data_path


def _too_large(model: onnx.ModelProto, has_external_refs: bool, base_dir: str | os.PathLike | None) -> bool:
    """True when ``model`` written as one file would exceed :data:`PROTOBUF_LIMIT` (its external
    tensors counted at their size); a model with external references needs ``base_dir``."""
    if not has_external_refs:
        return model.ByteSize() > PROTOBUF_LIMIT
    external_base_dir(base_dir)
    return sum(tensor_nbytes(t) for t in iter_tensors(model)) > PROTOBUF_LIMIT


def write_text_atomic(path: str | os.PathLike, text: str, *, inputs: tuple[str | os.PathLike, ...] = ()) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a partial file)."""
    out = Path(path)
    check_output_path(out, inputs)
    with _temporary(out, out.name) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        _publish(tmp, out)


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``src`` byte for byte to ``dst`` through a temporary file and a rename."""
    out = Path(dst)
    check_output_path(out, (src,))
    with _temporary(out, out.name) as tmp:
        shutil.copyfile(src, tmp)
        _publish(tmp, out)


#: The public name of :func:`save_model` (``monoquant_np.onnx.save``).
save = save_model
