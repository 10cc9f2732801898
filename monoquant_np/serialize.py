"""The versioned ``.npz`` file format (spec section 8).

A file is an uncompressed NumPy ``.npz`` archive (a zip of ``.npy`` files),
readable with ``numpy.load(path, allow_pickle=False)``. It holds:

* ``__monoquant__``: uint8 bytes of a UTF-8 JSON document
  ``{"format": "monoquant-np", "version": 1, "tensors": [entry, ...]}``, each
  entry ``{"name", "key", "shape", "axis", "block_size", "bits", "signed",
  "scheme", "arrays": [...], "dq_offset", "dq_block_size"}``;
* for each entry with key ``k``, the arrays ``k.data`` (uint8), ``k.scale``
  (float32/float16) and, when present, ``k.zero_point``, ``k.codebook``,
  ``k.perm``, ``k.dq_codes``, ``k.dq_scale``, ``k.fp_codes`` (MXFP4/NVFP4
  block scale codes; the entry then has ``"fp_kind"`` and ``"fp_tensor_scale"``).

Never pickle. Writing is atomic (a temporary file renamed into place).
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .double_quant import DoubleQuant
from .errors import check_path
from .fp_scales import FloatScales
from .npz import npz_names, read_npz
from .tensor import QuantizedTensor, check_qt

__all__ = ["save", "load", "parse_metadata", "FORMAT_NAME", "FORMAT_VERSION", "METADATA_MAX_BYTES",
           "METADATA_MAX_DEPTH"]

FORMAT_NAME = "monoquant-np"
FORMAT_VERSION = 1
#: The longest metadata document read (bytes of UTF-8 JSON).
METADATA_MAX_BYTES = 16 * 1024**2
#: The deepest nesting of JSON arrays and objects read (the format itself uses 4).
METADATA_MAX_DEPTH = 32
_META = "__monoquant__"
_PARTS = ("data", "scale", "zero_point", "codebook", "perm", "dq_codes", "dq_scale", "fp_codes")
_JSON_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


def save(path: str | os.PathLike[str], tensors: dict[str, QuantizedTensor]) -> None:
    """Write ``tensors`` to ``path`` (the exact name given; no suffix is added).

    Spec 15: ``TypeError`` for a ``path`` that is not a str or ``os.PathLike``,
    ``tensors`` not a dict, a name not a str or a value not a QuantizedTensor;
    ``ValueError`` for a folder that does not exist.
    """
    check_path(path)
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
        if qt.fp_scales is not None:  # spec 18, 19: the 8-bit block scale codes (+ NVFP4's tensor scale)
            parts["fp_codes"] = qt.fp_scales.codes
            entry["fp_kind"], entry["fp_tensor_scale"] = qt.fp_scales.kind, qt.fp_scales.tensor_scale
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


def _json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in ``text``, brackets inside strings not counted."""
    depth = deepest = 0
    for m in _JSON_TOKENS.finditer(text):
        t = m.group()
        if t in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif t in "]}":
            depth -= 1
    return deepest


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_metadata(raw: np.ndarray, where: str = "metadata") -> dict[str, Any]:
    """The metadata document in the uint8 1-D array ``raw``, checked as spec 8.2 says.

    Refused with a ``ValueError`` starting with ``where``: another dtype or
    rank, more than :data:`METADATA_MAX_BYTES`, bytes that are not UTF-8,
    nesting deeper than :data:`METADATA_MAX_DEPTH`, invalid JSON (``NaN``
    and ``Infinity`` included), not an object naming the format, or a
    ``version`` that is not the int :data:`FORMAT_VERSION` (``true`` is not
    ``1``).

        >>> raw = np.frombuffer(b'{"format": "monoquant-np", "version": true}', dtype=np.uint8)
        >>> parse_metadata(raw)
        Traceback (most recent call last):
        ...
        ValueError: metadata: format version True, this monoquant-np reads version 1
    """
    if not isinstance(raw, np.ndarray) or raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(f"{where}: {_META} must be a 1-D uint8 array (UTF-8 JSON), got "
                         f"{getattr(raw, 'dtype', type(raw).__name__)} {getattr(raw, 'shape', '')}")
    if raw.size > METADATA_MAX_BYTES:
        raise ValueError(f"{where}: {raw.size} bytes of metadata, more than {METADATA_MAX_BYTES}")
    try:
        text = raw.tobytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: metadata is not UTF-8 ({e})") from None
    depth = _json_depth(text)
    if depth > METADATA_MAX_DEPTH:
        raise ValueError(f"{where}: metadata nested {depth} deep, more than {METADATA_MAX_DEPTH}")
    try:
        meta = json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"{where}: corrupt metadata ({str(e)[:200]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{where}: metadata does not name the {FORMAT_NAME} format")
    version = meta.get("version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise ValueError(f"{where}: format version {version!r}, this monoquant-np reads version {FORMAT_VERSION}")
    return meta


def _int(ent: dict[str, Any], key: str, low: int = 0) -> int:
    v = ent[key]
    if type(v) is not int or v < low:
        raise ValueError(f"{key} must be an int >= {low}, got {v!r}")
    return v


def _entry(ent: Any) -> dict[str, Any]:
    """``ent`` with its fields type-checked (values are checked by ``QuantizedTensor``); KeyError if one lacks."""
    if not isinstance(ent, dict):
        raise ValueError(f"a tensor entry must be an object, got {type(ent).__name__}")
    if not isinstance(ent["name"], str) or not isinstance(ent["key"], str):
        raise ValueError(f"name and key must be strings, got {ent['name']!r}, {ent['key']!r}")
    shape = ent["shape"]
    if not isinstance(shape, list) or not shape or any(type(d) is not int or d < 0 for d in shape):
        raise ValueError(f"shape must be a non-empty list of ints >= 0, got {shape!r}")
    for key in ("axis", "block_size", "bits"):
        _int(ent, key)
    if type(ent["signed"]) is not bool:
        raise ValueError(f"signed must be true or false, got {ent['signed']!r}")
    parts = ent["arrays"]
    if not isinstance(parts, list) or not {"data", "scale"} <= set(parts) or not set(parts) <= set(_PARTS):
        raise ValueError(f"arrays must list data, scale and others of {list(_PARTS)}, got {parts!r}")
    if "dq_codes" in parts:
        _int(ent, "dq_block_size", 1)
        if type(ent["dq_offset"]) not in (int, float):
            raise ValueError(f"dq_offset must be a number, got {ent['dq_offset']!r}")
    fp_bad = "fp_codes" in parts and not isinstance(ent["fp_kind"], str)
    if fp_bad or ("fp_codes" in parts and type(ent["fp_tensor_scale"]) not in (int, float)):
        raise ValueError(f"fp_kind must be a string and fp_tensor_scale a number, got {ent['fp_kind']!r}, "
                         f"{ent['fp_tensor_scale']!r}")
    return ent


def _default_budget(entries: list[dict[str, Any]]) -> int:
    """Bytes the members of ``entries`` may hold: 16 per element (4x float32), 8 per row along axis, 1 MiB."""
    total = 1 << 20
    for ent in entries:
        shape, axis = ent["shape"], ent["axis"]
        total += 16 * math.prod(shape) + 8 * (shape[axis] if axis < len(shape) else 0)
    return total


def load(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> dict[str, QuantizedTensor]:
    """Read a file written by :func:`save`; ``ValueError`` naming the file if it is not one.

    The metadata is read first, then only the members it names, through
    :func:`monoquant_np.npz.read_npz` (spec 8.3): their declared sizes may
    add up to ``max_bytes``, by default 16 bytes per element of the tensors
    the metadata declares (4x their float32 size) plus 8 per row along
    their axis plus 1 MiB. Members nobody names are never decompressed.
    Spec 15: ``TypeError`` for a ``path`` that is not a str or ``os.PathLike``;
    a missing file raises ``OSError``.
    """
    p = check_path(path)
    arrays, others = npz_names(p, "monoquant-np file")
    if _META not in arrays:
        how = "a member that is not a .npy array" if _META in others else "no such entry"
        raise ValueError(f"{p!r} is a .npz file but not a monoquant-np one ({_META}: {how})")
    raw = read_npz(p, [_META], max_bytes=METADATA_MAX_BYTES, what="monoquant-np file",
                   limit_name="the metadata limit")[_META]
    meta = parse_metadata(raw, repr(p))
    try:
        if not isinstance(meta.get("tensors"), list):
            raise ValueError(f"tensors must be a list, got {meta.get('tensors')!r}")
        entries = [_entry(ent) for ent in meta["tensors"]]
        names = [ent["name"] for ent in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"tensor names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{p!r}: inconsistent tensor entry ({err})") from None
    wanted = [f"{ent['key']}.{part}" for ent in entries for part in ent["arrays"]]
    files = read_npz(p, wanted, max_bytes=_default_budget(entries) if max_bytes is None else max_bytes,
                     what="monoquant-np file", limit_name="pass load(max_bytes=...) to raise it")
    return _tensors(p, entries, files)


def _tensors(p: str, entries: list[dict[str, Any]], files: dict[str, np.ndarray]) -> dict[str, QuantizedTensor]:
    out: dict[str, QuantizedTensor] = {}
    try:
        for ent in entries:
            arr = {part: files[f"{ent['key']}.{part}"] for part in ent["arrays"]}
            dq = None
            if "dq_codes" in arr:
                dq = DoubleQuant(arr["dq_codes"], arr["dq_scale"], float(ent["dq_offset"]), ent["dq_block_size"])
            out[ent["name"]] = QuantizedTensor(
                data=arr["data"], shape=tuple(ent["shape"]), axis=ent["axis"],
                block_size=ent["block_size"], scale=arr["scale"],
                zero_point=arr.get("zero_point"), signed=ent["signed"], bits=ent["bits"],
                codebook=arr.get("codebook"), double_quant=dq, perm=arr.get("perm"),
                fp_scales=FloatScales(arr["fp_codes"], ent["fp_kind"], float(ent["fp_tensor_scale"]))
                if "fp_codes" in arr else None,
            )
    except (KeyError, TypeError, ValueError, OverflowError, MemoryError) as err:
        raise ValueError(f"{p!r}: inconsistent tensor entry ({err})") from None
    return out
