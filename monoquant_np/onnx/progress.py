"""Progress of a long command on stderr (spec section 13.9).

A :class:`Progress` follows one command through its phases (``load``,
``calibrate stage i/n``, ``quantize``, ``save``). On a terminal it keeps one
line up to date, at most every ``interval`` seconds::

    quantize 12/155  1.23 of 4.40 GB  210 MB/s  ETA 0:15  model.layers.3.mlp.up_proj.weight

(phase, items done of total when counted, bytes done of total, rate since the
phase began, the time left at that rate, the current item) and ends with one
summary line. When the stream is not a terminal it writes nothing, unless
``lines=True`` (the command line's ``--progress``): then one plain line per
counted item (each weight quantized) and the summary, without carriage returns.

The pipeline calls :meth:`Progress.phase` and :meth:`Progress.advance`; a
calibration pre-pass reports its stages with :meth:`Progress.stage`. Output
and clock are injectable, so tests drive a fake terminal::

    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(out, tty=False, lines=True)
    >>> p.phase("quantize", total=3000, items=2)
    >>> p.advance(1000, "a"); p.advance(2000, "b")
    >>> p.finish("quantized 2 weights")
    >>> print(out.getvalue(), end="")
    quantize 1/2 a
    quantize 2/2 b
    quantized 2 weights
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

__all__ = ["Progress", "format_bytes", "format_seconds", "peak_rss"]


def peak_rss() -> int:
    """This process's peak resident memory in bytes (``getrusage``; 0 where the OS does not tell)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, kB on Linux


def format_bytes(n: float) -> str:
    """``n`` bytes with a decimal unit: ``format_bytes(1.23e9) == '1.23 GB'``, ``format_bytes(512) == '512 B'``."""
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def format_seconds(s: float) -> str:
    """``h:mm:ss`` or ``m:ss``: ``format_seconds(75) == '1:15'``, ``format_seconds(3675) == '1:01:15'``."""
    s = max(0, int(round(s)))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """One command's progress on ``stream`` (default ``sys.stderr``); see the module docstring.

    Args:
        stream: where lines go.
        tty: whether ``stream`` is a terminal (default ``stream.isatty()``).
        lines: on a non-terminal, write one line per item (``--progress``).
        clock: seconds, monotonic (tests pass a fake one).
        interval: least seconds between two redraws on a terminal.
    """

    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, lines: bool = False,
                 clock: Callable[[], float] = time.monotonic, interval: float = 0.2):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(self.stream.isatty()) if tty is None else bool(tty)
        self.lines = bool(lines) and not self.tty
        self.clock, self.interval = clock, interval
        self.name, self.total, self.items, self.done, self.count = "", 0, 0, 0, 0
        self.started = self.drawn = self.clock()
        self.t0 = self.started

    @property
    def enabled(self) -> bool:
        """True when anything is written: on a terminal, or with ``lines``."""
        return self.tty or self.lines

    def phase(self, name: str, total: int = 0, items: int = 0) -> None:
        """Begin phase ``name`` with ``total`` bytes (0: unknown) and ``items`` items (0: not counted)."""
        self.name, self.total, self.items, self.done, self.count = name, int(total), int(items), 0, 0
        self.started = self.clock()
        if self.tty:
            self._draw("", force=True)

    def stage(self, i: int, n: int, total: int = 0) -> None:
        """Begin calibration stage ``i`` of ``n`` (1-based): the phase ``calibrate stage i/n``."""
        self.phase(f"calibrate stage {i}/{n}", total)

    def advance(self, nbytes: int = 0, item: str = "") -> None:
        """``nbytes`` more bytes done and one more item (``item`` names it)."""
        self.done += int(nbytes)
        self.count += 1
        if self.tty:
            self._draw(item, force=bool(self.items) and self.count >= self.items)
        elif self.lines and self.items:
            print(f"{self.name} {self.count}/{self.items} {item}".rstrip(), file=self.stream, flush=True)

    def status(self, item: str = "") -> str:
        """The terminal line (module docstring), without control characters."""
        parts = [self.name + (f" {self.count}/{self.items}" if self.items else "")]
        elapsed = self.clock() - self.started
        if self.total:
            parts.append(f"{format_bytes(self.done)} of {format_bytes(self.total)}")
        elif self.done:
            parts.append(format_bytes(self.done))
        if self.done and elapsed > 0:
            rate = self.done / elapsed
            parts.append(f"{format_bytes(rate)}/s")
            if self.total > self.done:
                parts.append(f"ETA {format_seconds((self.total - self.done) / rate)}")
        if item:
            parts.append(item[-60:])
        return "  ".join(parts)

    def _draw(self, item: str, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.drawn < self.interval:
            return
        self.drawn = now
        print(f"\r\033[K{self.status(item)}", end="", file=self.stream, flush=True)

    def finish(self, summary: str) -> None:
        """End with the one summary line (on a terminal or with ``lines``; nothing otherwise)."""
        if self.tty:
            print(f"\r\033[K{summary}", file=self.stream, flush=True)
        elif self.lines:
            print(summary, file=self.stream, flush=True)

    def elapsed(self) -> float:
        """Seconds since this object was made."""
        return self.clock() - self.t0
