"""Hand-built ``.npz`` bytes for the reader's fault tests (spec section 8.3).

:func:`raw_zip` writes a zip whose every field is the caller's: a deflate
stream that does not decode, a wrong CRC, an encryption flag, an unknown
compression method, a directory that declares a size the stream does not
hold. :func:`zeros_deflate` makes the raw deflate stream of ``n_mib`` MiB of
zeros in about ``n_mib`` KiB without compressing them: one MiB of zeros
compressed and fully flushed (a byte-aligned, self-contained run of blocks),
repeated, then an empty final block.

    >>> import zlib
    >>> len(zlib.decompress(zeros_deflate(2), -15))
    2097152
"""

from __future__ import annotations

import dataclasses
import io
import os
import struct
import zlib

import numpy as np

__all__ = ["Member", "raw_zip", "npy_bytes", "npy_header", "deflate", "zeros_deflate", "STORED", "DEFLATED"]

STORED, DEFLATED = 0, 8


@dataclasses.dataclass
class Member:
    """One zip member: ``payload`` is written as is; ``size``/``crc`` default to those of ``plain``."""

    name: str
    payload: bytes
    method: int = STORED
    flags: int = 0
    plain: bytes | None = None  # the uncompressed bytes, for the default size and CRC
    size: int | None = None
    crc: int | None = None

    def fields(self) -> tuple[int, int]:
        plain = self.payload if self.plain is None else self.plain
        return (zlib.crc32(plain) if self.crc is None else self.crc,
                len(plain) if self.size is None else self.size)


def raw_zip(path: str | os.PathLike[str], members: list[Member]) -> None:
    """Write ``members`` as a zip at ``path``: local headers, data, central directory, end record."""
    out, central = bytearray(), bytearray()
    for m in members:
        crc, size = m.fields()
        name, offset, csize = m.name.encode(), len(out), len(m.payload)
        extra = b""
        if size >= 0xFFFFFFFF:  # ZIP64: both sizes move to the extra field
            extra = struct.pack("<HHQQ", 1, 16, size, csize)
            size = csize = 0xFFFFFFFF
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, m.flags, m.method, 0, 0x21, crc, csize,
                           size, len(name), len(extra)) + name + extra + m.payload
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, m.flags, m.method, 0, 0x21, crc,
                               csize, size, len(name), len(extra), 0, 0, 0, 0, offset) + name + extra
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central), len(out), 0)
    with open(path, "wb") as f:
        f.write(bytes(out + central + end))


def npy_bytes(arr: np.ndarray) -> bytes:
    """``arr`` in the ``.npy`` format (what ``numpy.save`` writes)."""
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def npy_header(dtype: str, shape: tuple[int, ...], fortran: bool = False) -> bytes:
    """A version 1.0 ``.npy`` header declaring ``dtype`` and ``shape``, without data."""
    buf = io.BytesIO()
    d = {"descr": dtype, "fortran_order": fortran, "shape": shape}
    np.lib.format.write_array_header_1_0(buf, d)
    return buf.getvalue()


def deflate(data: bytes) -> bytes:
    """``data`` as one raw deflate stream (what a zip's deflated member holds)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zeros_deflate(n_mib: int, prefix: bytes = b"") -> bytes:
    """A raw deflate stream of ``prefix`` then ``n_mib`` MiB of zero bytes (see the module docstring)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH) if prefix else b""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    mib = c.compress(bytes(1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return head + mib * n_mib + b"\x03\x00"
