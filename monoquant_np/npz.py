"""Reading ``.npz`` archives within a byte limit, never unpickling (spec section 8.3).

An ``.npz`` is a zip whose members ``NAME.npy`` each hold one array in the
NumPy ``.npy`` format: a magic string, a header ``{'descr', 'fortran_order',
'shape'}`` and ``prod(shape) * itemsize`` bytes of data. :func:`read_npz`
reads the arrays named (all of them by default) and nothing else, by these
rules, every one checked before the data is decompressed:

* the path is a regular file and a readable zip, no ``.npy`` member name twice;
* each member read is stored or deflated (what ``numpy.savez`` and
  ``numpy.savez_compressed`` write), not encrypted;
* its ``.npy`` header is version 1.0 or 2.0 with a plain dtype (bool,
  integer, float, complex, bytes, str; never ``object``: no pickle), and
  ``header_bytes + prod(shape) * itemsize`` equals the uncompressed size the
  zip directory declares;
* the declared sizes of the members read add up to at most ``max_bytes``
  (checked from the zip directory before the first member is opened);
* decompression is streamed into a buffer of the declared size: a deflate
  stream that would inflate past it stops there and is refused, so memory
  stays ``O(max_bytes)`` whatever the archive holds.

Every failure (bad zip, corrupt deflate stream, bad CRC, truncation, bad
header, unsupported dtype, size over the limit) is one ``ValueError`` naming
the file and the member.

    >>> import numpy as np
    >>> npy_size(np.dtype(np.float32), (2, 3))  # 2 * 3 elements * 4 bytes
    24
"""

from __future__ import annotations

import io
import math
import os
import zipfile
import zlib
from collections.abc import Iterable
from typing import IO

import numpy as np

__all__ = ["read_npz", "npz_names", "npy_size", "DEFAULT_MAX_BYTES", "MAX_HEADER_BYTES"]

#: Default limit on the bytes of all arrays one :func:`read_npz` call returns (512 MiB).
DEFAULT_MAX_BYTES = 512 * 1024**2
#: The longest ``.npy`` header read (``numpy.load``'s own default limit).
MAX_HEADER_BYTES = 10000
_CHUNK = 1 << 20
_KINDS = "biufcSU"  # bool, ints, floats, complex, bytes, str: no object, no structured/void
# zipfile and numpy.lib.format raise BadZipFile, zlib.error, RuntimeError (encrypted), NotImplementedError
# (compression), EOFError, OSError, ValueError, SyntaxError (header), MemoryError, RecursionError, struct.error:
# every failure of reading untrusted bytes becomes one ValueError.
_ERRORS = (Exception,)


def npy_size(dtype: np.dtype, shape: tuple[int, ...]) -> int:
    """Data bytes of a ``.npy`` array: ``prod(shape) * dtype.itemsize`` (exact, Python ints)."""
    return math.prod(shape) * dtype.itemsize


def _open_zip(path: str, what: str) -> tuple[IO[bytes], zipfile.ZipFile]:
    if not os.path.exists(path):
        raise OSError(f"{what} {path!r} does not exist")
    if not os.path.isfile(path):  # a FIFO or a device would block or never end
        kind = "a directory" if os.path.isdir(path) else "not a regular file"
        raise ValueError(f"{what} {path!r} is {kind}, not an .npz file")
    f = open(path, "rb")  # noqa: SIM115 (closed by the caller, with the zip)
    try:
        return f, zipfile.ZipFile(f)
    except _ERRORS as e:
        f.close()
        raise ValueError(f"{what} {path!r} is not a readable .npz (a zip of .npy files): {_reason(e)}") from None


def _reason(e: BaseException) -> str:
    if isinstance(e, zlib.error):
        return f"corrupt compressed data ({e})"
    if isinstance(e, MemoryError):
        return "not enough memory"
    if isinstance(e, RecursionError):
        return "header nested too deeply"
    text = str(e).splitlines()[0][:300] if str(e) else ""  # a 10,000-byte header is not repeated in full
    return f"{type(e).__name__}: {text}" if not isinstance(e, ValueError | OSError) else text


def npz_names(path: str | os.PathLike[str], what: str = ".npz file") -> tuple[list[str], list[str]]:
    """``(arrays, others)``: the array names (members ``NAME.npy``) and the other member names of ``path``."""
    p = os.fspath(path)
    f, zf = _open_zip(p, what)
    with f, zf:
        names = [i.filename for i in zf.infolist()]
    return [n[:-4] for n in names if n.endswith(".npy")], [n for n in names if not n.endswith(".npy")]


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise ValueError(f"truncated: expected {n} more bytes, got {len(data)}")
    return data


def _header(f: IO[bytes]) -> tuple[int, tuple[int, ...], bool, np.dtype]:
    """``(header_bytes, shape, fortran_order, dtype)`` from the start of a ``.npy`` stream."""
    pre = _read_exact(f, 8)
    major, minor = np.lib.format.read_magic(io.BytesIO(pre))
    if (major, minor) not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {major}.{minor} is not read (1.0 and 2.0 are)")
    raw_len = _read_exact(f, 2 if major == 1 else 4)
    hlen = int.from_bytes(raw_len, "little")
    if hlen > MAX_HEADER_BYTES:
        raise ValueError(f".npy header of {hlen} bytes, longer than {MAX_HEADER_BYTES}")
    blob = io.BytesIO(pre + raw_len + _read_exact(f, hlen))
    blob.seek(8)
    reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    shape, fortran, dtype = reader(blob, max_header_size=MAX_HEADER_BYTES)
    if dtype.kind not in _KINDS or dtype.hasobject or dtype.itemsize == 0:
        raise ValueError(f"dtype {dtype.str!r} is not read (only bool, integer, float, complex, bytes and str "
                         "arrays; never object arrays, which need pickle)")
    if any(d < 0 for d in shape):
        raise ValueError(f".npy header declares shape {shape}")
    return len(blob.getvalue()), tuple(shape), bool(fortran), dtype


def _check_entry(info: zipfile.ZipInfo) -> None:
    if info.flag_bits & 0x1:
        raise ValueError("the member is encrypted")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ValueError(f"compression method {info.compress_type} (only stored (0) and deflated (8) are read)")


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int, limit_name: str) -> np.ndarray:
    """The array of one checked member (see the module docstring); ``limit`` bounds its data bytes."""
    _check_entry(info)
    with zf.open(info) as f:
        hbytes, shape, fortran, dtype = _header(f)
        nbytes = npy_size(dtype, shape)
        if nbytes > limit:
            raise ValueError(f"its .npy header declares {dtype} {shape} ({nbytes} bytes), above the limit of "
                             f"{limit} bytes left ({limit_name})")
        if hbytes + nbytes != info.file_size:
            raise ValueError(f"the zip directory declares {info.file_size} bytes, the .npy header "
                             f"{hbytes} + {nbytes} ({dtype} {shape})")
        buf = np.empty(nbytes, dtype=np.uint8)
        view, pos = buf.data, 0
        while pos < nbytes:
            chunk = f.read(min(_CHUNK, nbytes - pos))
            if not chunk:
                raise ValueError(f"truncated: {pos} of {nbytes} data bytes")
            view[pos:pos + len(chunk)] = chunk
            pos += len(chunk)
        if f.read(1):  # also completes the CRC check
            raise ValueError("more data than the header declares")
    arr = buf.view(dtype) if nbytes else np.empty(0, dtype=dtype)
    return arr.reshape(shape, order="F" if fortran else "C")


def read_npz(path: str | os.PathLike[str], names: Iterable[str] | None = None, *,
             max_bytes: int = DEFAULT_MAX_BYTES, what: str = ".npz file",
             limit_name: str = "max_bytes") -> dict[str, np.ndarray]:
    """The arrays ``names`` (default: every ``NAME.npy`` member) of the ``.npz`` at ``path``.

    ``max_bytes`` bounds the uncompressed bytes of the members read, in
    total; ``what`` names the file in messages (``"calibration file"``) and
    ``limit_name`` the way to raise the limit. Returns name -> array (a
    fresh, writeable array per member). Raises ``OSError`` for a missing
    file and ``ValueError`` for any of the failures of the module docstring,
    or for a name that is not an array member.
    """
    p = os.fspath(path)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
        raise TypeError(f"max_bytes must be an int >= 0, got {max_bytes!r}")
    f, zf = _open_zip(p, what)
    with f, zf:
        infos = [i for i in zf.infolist() if i.filename.endswith(".npy")]
        members = {i.filename[:-4]: i for i in infos}
        if len(members) != len(infos):  # readers differ on which copy they take
            twice = sorted({i.filename for i in infos if sum(j.filename == i.filename for j in infos) > 1})
            raise ValueError(f"{what} {p!r} holds member {twice[0]!r} more than once")
        wanted = list(members) if names is None else list(dict.fromkeys(names))
        missing = [n for n in wanted if n not in members]
        if missing:
            raise ValueError(f"{what} {p!r} has no array {missing[0]!r} (arrays: {sorted(members)})")
        declared = sum(members[n].file_size for n in wanted)
        if declared > max_bytes + len(wanted) * (MAX_HEADER_BYTES + 12):
            big = max(wanted, key=lambda n: members[n].file_size)
            raise ValueError(f"{what} {p!r}: the arrays read declare {declared} bytes uncompressed (largest "
                             f"{big!r}: {members[big].file_size}), above the limit of {max_bytes} bytes ({limit_name})")
        out: dict[str, np.ndarray] = {}
        left = max_bytes
        for n in wanted:
            try:
                out[n] = _read_member(zf, members[n], left, limit_name)
            except _ERRORS as e:
                raise ValueError(f"{what} {p!r}, member {members[n].filename!r}: {_reason(e)}") from None
            left -= out[n].nbytes
    return out
