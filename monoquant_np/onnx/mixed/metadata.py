"""Each weight's chosen format in the model's ``metadata_props`` (spec 21.4).

The key :data:`METADATA_KEY` holds JSON ``{weight name: format label}``
(labels as :attr:`~monoquant_np.onnx.mixed.candidates.Candidate.label`:
``"int4 g64"``, ``"int8"``, ``"float"``), names being the float model's
weight names.

    >>> import onnx
    >>> m = onnx.ModelProto()
    >>> write_formats(m, {"w": "int4 g64"}); read_formats(m)
    {'w': 'int4 g64'}
"""

from __future__ import annotations

import json

import onnx

__all__ = ["METADATA_KEY", "write_formats", "read_formats"]

#: The model metadata key holding each weight's chosen format.
METADATA_KEY = "monoquant_np.formats"


def write_formats(model: onnx.ModelProto, labels: dict[str, str]) -> None:
    """Set :data:`METADATA_KEY` of ``model`` (replacing an earlier value) to ``labels`` as sorted JSON."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend([*kept, onnx.StringStringEntryProto(key=METADATA_KEY,
                                                                     value=json.dumps(labels, sort_keys=True))])


def read_formats(model: onnx.ModelProto) -> dict[str, str] | None:
    """The labels :func:`write_formats` stored, or None when the model has none (or they are not a JSON object)."""
    for p in model.metadata_props:
        if p.key == METADATA_KEY:
            try:
                v = json.loads(p.value)
            except ValueError:
                return None
            return {str(k): str(x) for k, x in v.items()} if isinstance(v, dict) else None
    return None
