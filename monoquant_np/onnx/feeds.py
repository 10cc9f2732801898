"""Input feeds for onnxruntime: reading them and checking them against a model (spec sections 13.7, 14.4).

A *feed* maps each model input name to an array. Calibration and
verification inputs come as ``FEEDS.npz`` (``numpy.savez`` of arrays named
after the model inputs) or as a mapping; *batched* feeds carry the samples
along axis 0, every array with the same batch length.

:func:`load_feeds` reads them; :func:`check_feeds` is the one validator:

* every input the model declares (graph inputs that are not initializers) is
  present; a name the model does not take is an error only with ``strict``;
* an array of another kind (float, integer, bool, complex, string) than the
  input's is an error (a float array for an integer input, a complex one for
  a float input); other dtype differences (int32 for int64) are left to
  onnxruntime; the rank must match, and every
  dimension with a fixed size in the model;
* with ``batched``: at least one array, every array at least 1-D with one
  batch length, and that length at least 1;
* with ``finite`` (calibration): no NaN or infinity in a float array.

    >>> import numpy as np
    >>> batch_length({"x": np.zeros((3, 4)), "mask": np.ones((3, 4))})
    3
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper

from ..npz import DEFAULT_MAX_BYTES, read_npz

__all__ = ["load_feeds", "check_feeds", "batch_length", "model_input_names", "feeds_max_bytes", "MAX_BYTES_ENV",
           "input_dtype", "elem_type_name", "check_finite_feeds"]

#: Environment variable raising (or lowering) the byte limit of a feeds ``.npz`` (spec 8.3).
MAX_BYTES_ENV = "MONOQUANT_NP_MAX_INPUT_BYTES"


def input_dtype(elem_type: int) -> np.dtype | None:
    """The NumPy dtype of an ONNX element type number, or None for UNDEFINED (0) and numbers ONNX does not know."""
    try:
        return helper.tensor_dtype_to_np_dtype(elem_type) if elem_type else None
    except (KeyError, ValueError, TypeError):
        return None


def elem_type_name(elem_type: int) -> str:
    """``"FLOAT"``, ``"UNDEFINED"``, ... or ``"99 (unknown)"``."""
    try:
        return onnx.TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"{elem_type} (unknown)"


def feeds_max_bytes() -> int:
    """The byte limit of calibration and verify inputs: ``$MONOQUANT_NP_MAX_INPUT_BYTES`` if set, else 512 MiB."""
    text = os.environ.get(MAX_BYTES_ENV)
    if text is None or text == "":
        return DEFAULT_MAX_BYTES
    try:
        v = int(text)
    except ValueError:
        v = -1
    if v < 0:
        raise ValueError(f"{MAX_BYTES_ENV} must be a number of bytes (an int >= 0), got {text!r}")
    return v


def model_input_names(model: onnx.ModelProto) -> list[str]:
    """The inputs ``model`` must be fed: its main graph's inputs that are not initializers, in order."""
    inits = {t.name for t in model.graph.initializer}
    return [vi.name for vi in model.graph.input if vi.name not in inits]


def load_feeds(source: str | os.PathLike | Mapping[str, np.ndarray], model: onnx.ModelProto | None = None, *,
               what: str = "inputs file", batched: bool = False, strict: bool = False, finite: bool = False,
               max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Feeds from a ``.npz`` path or a mapping of input name -> array; checked against ``model`` when given.

    ``what`` names the file in messages (``"calibration file"``, ...);
    ``batched``, ``strict`` and ``finite`` are :func:`check_feeds`'. A file is read by
    :func:`monoquant_np.npz.read_npz`, every ``NAME.npy`` member, at most
    ``max_bytes`` in total (default :func:`feeds_max_bytes`). Raises
    ``OSError`` for a missing file and ``ValueError`` for a file that is not
    a readable ``.npz`` within the limit or feeds that :func:`check_feeds`
    refuses.
    """
    if isinstance(source, Mapping):
        feeds = {str(k): np.asarray(v) for k, v in source.items()}
        label = what
    else:
        limit = feeds_max_bytes() if max_bytes is None else max_bytes
        feeds = read_npz(source, max_bytes=limit, what=what, limit_name=f"set {MAX_BYTES_ENV} to raise it")
        label = f"{what} {os.fspath(source)!r}"
    if model is not None or batched or finite:
        check_feeds(feeds, model, label, batched=batched, strict=strict, finite=finite)
    return feeds


def check_feeds(feeds: Mapping[str, np.ndarray], model: onnx.ModelProto | None = None, what: str = "feeds", *,
                batched: bool = False, strict: bool = False, finite: bool = False) -> None:
    """Raise ``ValueError`` unless ``feeds`` suit ``model`` by the rules of the module docstring.

    ``what`` starts every message (``"calibration inputs"``, ``"the given
    inputs"``).
    """
    if batched:
        batch_length(feeds, what)
    if finite:
        check_finite_feeds(feeds, what)
    if model is not None:
        _check_names(feeds, model, what, strict)
        _check_kinds_and_shapes(feeds, model, what)


def check_finite_feeds(feeds: Mapping[str, np.ndarray], what: str = "feeds") -> None:
    """``ValueError`` naming the first float (or complex) array of ``feeds`` holding NaN or +-inf, and where.

        >>> check_finite_feeds({"x": np.array([[0.0, 1.0], [np.inf, 2.0]])}, "c.npz")
        Traceback (most recent call last):
        ...
        ValueError: c.npz: input 'x' holds 1 non-finite value (inf at [1, 0]); these inputs must be finite
    """
    for name, v in feeds.items():
        x = np.asarray(v)
        if x.dtype.kind not in "fc":
            continue
        bad = ~np.isfinite(x)
        if bad.any():
            at = [int(i) for i in np.argwhere(bad)[0]]
            n = int(bad.sum())
            raise ValueError(f"{what}: input {name!r} holds {n} non-finite value{'s' if n > 1 else ''} "
                             f"({x[tuple(at)]} at {at}); these inputs must be finite")


def _check_names(feeds: Mapping[str, np.ndarray], model: onnx.ModelProto, what: str, strict: bool) -> None:
    names = model_input_names(model)
    missing = [n for n in names if n not in feeds]
    extra = sorted(set(feeds) - set(names)) if strict else []
    if extra:
        raise ValueError(f"{what} must hold arrays named after the model inputs {names}; "
                         f"unknown {extra}, missing {missing}")
    if missing:
        raise ValueError(f"{what} lack the model input(s) {missing}: the model takes {names}, "
                         f"{what} hold {sorted(feeds)}")


_KIND = {"f": "float", "i": "integer", "u": "integer", "b": "bool", "c": "complex", "U": "string", "S": "string",
         "O": "string"}


def _check_kinds_and_shapes(feeds: Mapping[str, np.ndarray], model: onnx.ModelProto, what: str) -> None:
    inits = {t.name for t in model.graph.initializer}
    for vi in model.graph.input:
        if vi.name in inits or not vi.type.HasField("tensor_type"):
            continue
        tt, x = vi.type.tensor_type, np.asarray(feeds[vi.name])
        want = input_dtype(tt.elem_type)
        if want is not None and _KIND.get(x.dtype.kind, x.dtype.kind) != _KIND.get(want.kind, want.kind):
            raise ValueError(f"{what}: input {vi.name!r} is {x.dtype}, the model takes {want}")
        if tt.HasField("shape"):
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param or "?" for d in tt.shape.dim]
            fixed = [(d, n) for d, n in zip(dims, x.shape, strict=False) if isinstance(d, int) and d > 0]
            if x.ndim != len(dims) or any(d != n for d, n in fixed):
                raise ValueError(f"{what}: input {vi.name!r} has shape {x.shape}, the model takes "
                                 f"({', '.join(map(str, dims))})")


def batch_length(feeds: Mapping[str, np.ndarray], what: str = "feeds") -> int:
    """The common length of axis 0 of batched ``feeds`` (at least 1), else a ``ValueError`` starting with ``what``."""
    if not feeds:
        raise ValueError(f"{what} holds no arrays; expected one per model input, batch on axis 0")
    lengths = {k: (int(np.shape(v)[0]) if np.ndim(v) else -1) for k, v in feeds.items()}
    if -1 in lengths.values() or len(set(lengths.values())) != 1:
        raise ValueError(f"{what}: every array needs the same batch length on axis 0, got {lengths}")
    n = next(iter(lengths.values()))
    if n == 0:
        raise ValueError(f"{what} must hold at least one sample (batch length on axis 0), got 0")
    return n
