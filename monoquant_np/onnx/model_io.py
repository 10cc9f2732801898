"""Loading and saving ONNX models safely (spec section 13.6).

* :func:`load_model` turns every way a file can be wrong (missing, a folder,
  not ONNX, truncated, external data missing or outside the model's folder, a
  negative dimension) into one ``ValueError`` or ``OSError`` sentence that
  names the file; it applies the trust boundary of
  :func:`~monoquant_np.onnx.tensors.check_tensors` to every tensor.
* :func:`save_model` never leaves a partial output: it writes to a short
  temporary name in the destination folder, ``fsync``-s it and renames it into
  place (``os.replace``, atomic on POSIX), data file first, model last
  (:class:`~monoquant_np.onnx.outputs.Outputs`). It refuses to overwrite its
  own input or a special file (FIFO, device). With ``external_data=True`` every initializer of at least
  ``size_threshold`` bytes is appended to ``OUTPUT.data`` one tensor at a
  time; tensors that still refer to the input's external data file
  (``base_dir``) are copied across in chunks. It is :class:`ModelWriter`,
  which the command line opens before quantizing so that each quantized
  tensor goes to the data file as soon as it exists (spec 13.6).

Models whose serialized size would exceed protobuf's 2 GB limit are written
with external data automatically.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx

from .outputs import Outputs, check_name_length, check_special_file, writing
from .streaming import DataFile, write_inline
from .tensors import (
    check_tensors,
    every_tensor,
    external_base_dir,
    is_external,
    iter_tensors,
    load_external,
    tensor_nbytes,
)

__all__ = [
    "load_model", "save_model", "save", "ModelWriter", "write_text_atomic", "copy_atomic", "external_files",
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
    """Raise unless ``path`` can be written: ``OSError`` when it is a folder, a FIFO, a device or a socket,
    its folder is missing or its name too long; ``ValueError`` when it is one of ``inputs`` (which are
    never overwritten). ``what`` names it in messages."""
    path = Path(path)
    if path.exists() and path.is_dir():
        raise OSError(f"{what} {str(path)!r} is a folder, expected a file name")
    check_special_file(path, what)
    if not path.parent.exists():
        raise OSError(f"{what} folder {str(path.parent)!r} does not exist")
    check_name_length(path, what)
    for src in inputs:
        if same_file(src, path):
            raise ValueError(f"{what} {str(path)!r} is the input file {str(src)!r}; choose another name "
                             "(the input is never overwritten)")


def external_files(model: onnx.ModelProto, base_dir: str | os.PathLike) -> list[Path]:
    """The side files that ``model``'s external tensors refer to (relative to ``base_dir``), each once."""
    locs = {e.value for t in iter_tensors(model) if is_external(t) for e in t.external_data if e.key == "location"}
    return [Path(base_dir) / loc for loc in sorted(locs)]


class ModelWriter:
    """The output model, written while it is built (spec 13.6).

    Opening it checks ``path`` (as :func:`save_model` does) and stages a data
    file for ``<path>.data`` in ``outputs`` (an :class:`~monoquant_np.onnx.outputs.Outputs`;
    a private one, committed by :meth:`finish`, when None). :meth:`spill`
    appends a tensor's bytes to it at once (the model quantizer calls it with
    each quantized initializer as it is made); :meth:`finish` writes the rest:
    with ``external_data`` (or when one file would pass :data:`PROTOBUF_LIMIT`)
    the other large tensors are appended to the data file, input side files
    copied in chunks; otherwise every tensor is written inline into the one
    ``.onnx`` file, copied in chunks (:func:`~monoquant_np.onnx.streaming.write_inline`),
    and the data file is unstaged. Leaving the ``with`` block without
    :meth:`finish` (an error, a signal) leaves no output. Memory: the graph
    without its tensors, plus one chunk.
    """

    def __init__(self, path: str | os.PathLike, *, external_data: bool = False, size_threshold: int = 1024,
                 base_dir: str | os.PathLike | None = None, inputs: tuple[str | os.PathLike, ...] = (),
                 outputs: Outputs | None = None):
        self.out = Path(path)
        check_output_path(self.out, inputs)
        self.external_data, self.threshold, self.base_dir, self.inputs = external_data, size_threshold, base_dir, inputs
        self.data_path = self.out.with_name(self.out.name + ".data")
        self._stack = contextlib.ExitStack()
        self.outputs = outputs if outputs is not None else self._stack.enter_context(Outputs())
        self._own = outputs is None
        tmp = self.outputs.stage(self.data_path)
        f = self._stack.enter_context(open(tmp, "wb"))
        self.data = DataFile(f, tmp, Path(tmp).name)  # tensors refer to the temporary name until finish()

    def __enter__(self) -> ModelWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stack.__exit__(*exc)

    def spill(self, t: onnx.TensorProto) -> None:
        """Move inline tensor ``t`` (at least ``size_threshold`` bytes) to the data file now; ``t`` refers to it."""
        if not is_external(t):
            with writing(self.data_path, self.data.path):
                self.data.append(t, None, self.threshold)

    def finish(self, model: onnx.ModelProto, progress: Any = None) -> Path | None:
        """Write ``model`` (its tensors external to the data file, to the input's side files, or inline) and
        stage it; return the data file's path or None. ``model``'s tensors are moved to the data file when
        it is written (like ``save_model(consume=True)``). ``progress`` (a
        :class:`~monoquant_np.onnx.progress.Progress`) sees the phase ``save``."""
        has_refs = any(is_external(t) for t in iter_tensors(model))
        external = self.external_data or _too_large(model, has_refs, self.base_dir)
        if progress is not None:
            progress.phase("save", total=sum(tensor_nbytes(t) for t in iter_tensors(model)
                                             if external or is_external(t)))
        done = (lambda t: progress.advance(tensor_nbytes(t))) if progress is not None else None
        with writing(self.data_path, self.data.path):
            if external:
                check_output_path(self.data_path, self.inputs, "data file")
                self.data.externalize(model, self.threshold, self.base_dir, done)
                self.data.rename(model, self.data_path.name)
            self.data.f.close()
        tmp_model = self.outputs.stage(self.out)
        with writing(self.out, tmp_model), open(tmp_model, "wb") as f:
            if external or not has_refs:
                f.write(model.SerializeToString())
            else:
                write_inline(model, f, self.data, self.base_dir, done)
        if not external:
            self.outputs.unstage(self.data_path)
        if self._own:
            self.outputs.commit()
        return self.data_path if external else None


def save_model(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    external_data: bool = False,
    size_threshold: int = 1024,
    base_dir: str | os.PathLike | None = None,
    inputs: tuple[str | os.PathLike, ...] = (),
    consume: bool = False,
    outputs: Outputs | None = None,
) -> Path | None:
    """Write ``model`` to ``path`` atomically; return the data file's path or None.

    :class:`ModelWriter` then :meth:`ModelWriter.finish`.

    Args:
        model: the model; it is not modified (unless ``consume``).
        path: the output ``.onnx`` file. Its folder must exist.
        external_data: write every tensor of ``size_threshold`` bytes or more
            to ``<path>.data`` (one file, tensors appended in graph order,
            offsets aligned to 64 bytes), one tensor in memory at a time.
        base_dir: the folder that tensors still stored as external
            references are relative to (the input model's folder).
        inputs: paths the output must not be (the input files).
        consume: with ``external_data``, move the tensors' bytes out of
            ``model`` itself instead of a copy (``model`` then refers to the
            written data file). Saves one copy of the model.
        outputs: stage the files in this :class:`~monoquant_np.onnx.outputs.Outputs`
            and let its ``commit`` publish them (with other files) instead of
            publishing them now.

    Raises:
        OSError: the output folder is missing, the output is a folder or a
            special file, or writing fails (the message names the output).
        ValueError: ``path`` is one of ``inputs``.
    """
    with ModelWriter(path, external_data=external_data, size_threshold=size_threshold, base_dir=base_dir,
                     inputs=inputs, outputs=outputs) as w:
        if not consume and (external_data or any(is_external(t) for t in iter_tensors(model))):
            copy = onnx.ModelProto()
            copy.CopyFrom(model)
            model = copy
        return w.finish(model)


@contextlib.contextmanager
def _staging(outputs: Outputs | None) -> Iterator[Outputs]:
    """``outputs`` as it is (its owner commits), or a new :class:`Outputs` committed when the block succeeds."""
    if outputs is not None:
        yield outputs
        return
    with Outputs() as outs:
        yield outs
        outs.commit()


def _too_large(model: onnx.ModelProto, has_external_refs: bool, base_dir: str | os.PathLike | None) -> bool:
    """True when ``model`` written as one file would exceed :data:`PROTOBUF_LIMIT` (its external
    tensors counted at their size); a model with external references needs ``base_dir``."""
    if not has_external_refs:
        return model.ByteSize() > PROTOBUF_LIMIT
    external_base_dir(base_dir)
    return sum(tensor_nbytes(t) for t in iter_tensors(model)) > PROTOBUF_LIMIT


def write_text_atomic(path: str | os.PathLike, text: str, *, inputs: tuple[str | os.PathLike, ...] = (),
                      outputs: Outputs | None = None, what: str = "output") -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a partial file); with
    ``outputs``, staged there for its ``commit``. ``path`` may not be one of ``inputs`` (``what`` names
    it in messages)."""
    out = Path(path)
    check_output_path(out, inputs, what)
    with _staging(outputs) as outs:
        tmp = outs.stage(out)
        with writing(out, tmp), open(tmp, "w", encoding="utf-8") as f:
            f.write(text)


def copy_atomic(src: str | os.PathLike, dst: str | os.PathLike, *, outputs: Outputs | None = None) -> None:
    """Copy ``src`` byte for byte to ``dst`` through a temporary file and a rename; with ``outputs``,
    staged there for its ``commit``."""
    out = Path(dst)
    check_output_path(out, (src,))
    with _staging(outputs) as outs:
        tmp = outs.stage(out)
        with writing(out, tmp):
            shutil.copyfile(src, tmp)


#: The public name of :func:`save_model` (``monoquant_np.onnx.save``).
save = save_model
