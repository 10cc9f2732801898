"""Rendering a page in headless Chromium: its DOM after rendering and a screenshot, decoded (spec 21.5).

:func:`chromium_path` finds the browser (``$CHROMIUM``, then ``chromium``,
``chromium-browser``, ``google-chrome`` on ``PATH``); :func:`dump_dom` and
:func:`screenshot` run it with ``--headless --disable-gpu --no-sandbox`` on a
local file; :func:`read_png` decodes the screenshot (8-bit RGB or RGBA,
non-interlaced, as Chromium writes it) with the standard library only, so a
test can check the colours the page shows.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

import numpy as np

__all__ = ["chromium_path", "dump_dom", "screenshot", "read_png"]

_FLAGS = ("--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", "--allow-file-access-from-files")


def chromium_path() -> str | None:
    """The Chromium executable, or None when none is installed."""
    env = os.environ.get("CHROMIUM")
    if env and Path(env).exists():
        return env
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    exe = chromium_path()
    if exe is None:
        raise FileNotFoundError("no Chromium found (set $CHROMIUM or install the chromium package)")
    with tempfile.TemporaryDirectory() as profile:  # a fresh profile: no state shared between runs
        return subprocess.run([exe, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              timeout=timeout, check=False)


def dump_dom(html_path: str | os.PathLike, timeout: float = 120.0) -> str:
    """The DOM of the page at ``html_path`` after Chromium rendered it, serialized as HTML."""
    res = _run(["--dump-dom", Path(html_path).resolve().as_uri()], timeout)
    if res.returncode != 0:
        raise RuntimeError(f"chromium --dump-dom failed ({res.returncode}): {res.stderr.decode()[-300:]}")
    return res.stdout.decode("utf-8")


def screenshot(html_path: str | os.PathLike, png_path: str | os.PathLike, size: tuple[int, int] = (1000, 1400),
               timeout: float = 120.0) -> None:
    """A PNG screenshot of the page at ``html_path`` (``size`` = width, height in CSS pixels)."""
    out = Path(png_path).resolve()
    res = _run([f"--screenshot={out}", f"--window-size={size[0]},{size[1]}", Path(html_path).resolve().as_uri()],
               timeout)
    if res.returncode != 0 or not out.exists():
        raise RuntimeError(f"chromium --screenshot failed ({res.returncode}): {res.stderr.decode()[-300:]}")


def read_png(path: str | os.PathLike) -> np.ndarray:
    """The pixels of an 8-bit RGB/RGBA non-interlaced PNG as uint8 ``(height, width, channels)``."""
    data = Path(path).read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG file")
    pos, idat, head = 8, [], None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            head = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        pos += 12 + n
    if head is None or head[2] != 8 or head[3] not in (2, 6) or head[6] != 0:
        raise ValueError(f"{path}: only 8-bit RGB/RGBA non-interlaced PNGs are read, got header {head}")
    w, h, ch = head[0], head[1], 3 if head[3] == 2 else 4
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8).reshape(h, 1 + w * ch)
    out = np.zeros((h, w * ch), dtype=np.int32)
    prev = np.zeros(w * ch, dtype=np.int32)
    for y in range(h):
        f, line = raw[y, 0], raw[y, 1:].astype(np.int32)
        cur = _unfilter(f, line, prev, ch)
        out[y], prev = cur, cur
    return out.astype(np.uint8).reshape(h, w, ch)


def _unfilter(f: int, line: np.ndarray, prev: np.ndarray, ch: int) -> np.ndarray:
    """One scanline with PNG filter ``f`` undone (0 none, 1 sub, 2 up, 3 average, 4 Paeth)."""
    if f == 0:
        return line
    if f == 2:
        return (line + prev) & 255
    if f == 1:  # running sum per channel
        return np.cumsum(line.reshape(-1, ch), axis=0).reshape(-1) & 255
    cur = line.copy()
    for i in range(len(cur)):
        a = int(cur[i - ch]) if i >= ch else 0
        b = int(prev[i])
        c = int(prev[i - ch]) if i >= ch else 0
        if f == 1:
            pred = a
        elif f == 3:
            pred = (a + b) // 2
        else:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
        cur[i] = (int(cur[i]) + pred) & 255
    return cur
