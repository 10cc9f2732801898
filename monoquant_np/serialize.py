"""The versioned ``.npz`` file format (spec section 8).

A file is an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` files),
readable with ``numpy.load(path, allow_pickle=False)``. It holds:

* ``__monoquant__``: uint8 bytes of a UTF-8 JSON document
  ``{"format": "monoquant-np", "version": 1, "tensors": [entry, ...]}``, each
  entry ``{"name", "key", "shape", "axis", "block_size", "bits", "signed",
  "scheme", "arrays": [...], "dq_offset", "dq_block_size"}``;
* for each entry with key ``k``, the arrays ``k.data`` (uint8), ``k.scale``
  (float32/float16) and, when present, ``k.zero_point``, ``k.codebook``,
  ``k.perm``, ``k.dq_codes``, ``k.dq_scale``.

Never pickle. Writing is atomic (a temporary file renamed into place).
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .double_quant import DoubleQuant
from .tensor import QuantizedTensor, check_qt

__all__ = ["save", "load", "FORMAT_NAME", "FORMAT_VERSION"]

FORMAT_NAME = "monoquant-np"
FORMAT_VERSION = 1
_META = "__monoquant__"


def save(path: str | os.PathLike[str], tensors: dict[str, QuantizedTensor]) -> None:
    """Write ``tensors`` to ``path`` (the exact name given; no suffix is added)."""
    if not isinstance(tensors, dict):
        raise TypeError(f"tensors must be a dict of name -> QuantizedTensor, got {type(tensors).__name__}")
    arrays: dict[str, np.ndarray] = {}
    entries: list[dict[str, Any]] = []
    for i, (name, qt) in enumerate(tensors.items()):
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be str, got {name!r}")
        check_qt(qt, f"tensors[{name!r}]")
        key = f"t{i}"
        parts = {"data": qt.data, "scale": qt.scale, "zero_point": qt.zero_point,
                 "codebook": qt.codebook, "perm": qt.perm}
        entry: dict[str, Any] = {
            "name": name, "key": key, "shape": list(qt.shape), "axis": qt.axis,
            "block_size": qt.block_size, "bits": qt.bits, "signed": qt.signed,
            "scheme": qt.scheme, "arrays": [],
        }
        if qt.double_quant is not None:
            parts["dq_codes"] = qt.double_quant.codes
            parts["dq_scale"] = qt.double_quant.scale
            entry["dq_offset"] = float(np.float32(qt.double_quant.offset))
            entry["dq_block_size"] = qt.double_quant.block_size
        for part, arr in parts.items():
            if arr is not None:
                arrays[f"{key}.{part}"] = arr
                entry["arrays"].append(part)
        entries.append(entry)
    meta = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "tensors": entries}
    arrays[_META] = np.frombuffer(json.dumps(meta).encode("utf-8"), dtype=np.uint8)
    target = Path(path)
    if not target.parent.exists():
        raise ValueError(f"path {str(target)!r}: folder {str(target.parent)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load(path: str | os.PathLike[str]) -> dict[str, QuantizedTensor]:
    """Read a file written by :func:`save`; ``ValueError`` naming the file if it is not one."""
    p = str(path)
    try:
        with open(p, "rb") as f:
            blob = f.read()
    except IsADirectoryError:
        raise ValueError(f"{p!r} is a directory, not a monoquant-np .npz file") from None
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as z:
            files = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, KeyError) as e:
        raise ValueError(f"{p!r} is not a readable monoquant-np .npz file ({e})") from None
    if _META not in files:
        raise ValueError(f"{p!r} is a .npz file but not a monoquant-np one (no {_META} entry)")
    try:
        meta = json.loads(files[_META].tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{p!r}: corrupt metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{p!r}: metadata does not name the {FORMAT_NAME} format")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(
            f"{p!r}: format version {meta.get('version')!r}, this monoquant-np reads version {FORMAT_VERSION}"
        )
    out: dict[str, QuantizedTensor] = {}
    try:
        for ent in meta["tensors"]:
            key = ent["key"]
            arr = {part: files[f"{key}.{part}"] for part in ent["arrays"]}
            dq = None
            if "dq_codes" in arr:
                dq = DoubleQuant(arr["dq_codes"], arr["dq_scale"], float(ent["dq_offset"]), int(ent["dq_block_size"]))
            out[ent["name"]] = QuantizedTensor(
                data=arr["data"], shape=tuple(ent["shape"]), axis=int(ent["axis"]),
                block_size=int(ent["block_size"]), scale=arr["scale"],
                zero_point=arr.get("zero_point"), signed=bool(ent["signed"]), bits=int(ent["bits"]),
                codebook=arr.get("codebook"), double_quant=dq, perm=arr.get("perm"),
            )
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{p!r}: inconsistent tensor entry ({err})") from None
    return out
