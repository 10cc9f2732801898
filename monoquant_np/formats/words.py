"""GPTQ/AWQ 32-bit words: eight 4-bit codes per int32 (spec sections 12.4 and 12.5).

Nibble ``j`` of a word holds bits ``4j..4j+3``; the word is stored as the
int32 with that uint32 bit pattern. Which code goes to which nibble is each
dialect's own order (:mod:`.autogptq`: consecutive rows; :mod:`.autoawq`: its column
order ``AWQ_ORDER``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["pack_words", "unpack_words"]


def pack_words(nibbles: np.ndarray) -> np.ndarray:
    """Eight 4-bit codes per int32 word, nibble ``j`` at bits ``4j..4j+3`` (GPTQ/AWQ words).

    Shapes: ``(..., 8)`` codes ``0..15`` -> ``(...)`` int32 (the uint32 bit
    pattern, so a code >= 8 in nibble 7 makes the word negative).

    >>> hex(int(pack_words(np.arange(8)).view(np.uint32)))
    '0x76543210'
    """
    u = nibbles.astype(np.uint32)
    shifts = np.arange(0, 32, 4, dtype=np.uint32)  # (8,)
    return np.bitwise_or.reduce(u << shifts, axis=-1).astype(np.uint32).view(np.int32)


def unpack_words(words: np.ndarray, name: str = "packed words") -> np.ndarray:
    """Inverse of :func:`pack_words`: int32 ``(...)`` -> uint8 ``(..., 8)`` codes ``0..15``.

    ``name`` is the argument named in the ``TypeError`` for a non-int32 array.
    """
    if not isinstance(words, np.ndarray) or words.dtype not in (np.int32, np.uint32):
        got = words.dtype if isinstance(words, np.ndarray) else type(words).__name__
        raise TypeError(f"{name} must be an int32 array, got {got}")
    u = words.view(np.uint32)[..., None]  # (..., 1)
    return ((u >> np.arange(0, 32, 4, dtype=np.uint32)) & np.uint32(0xF)).astype(np.uint8)
