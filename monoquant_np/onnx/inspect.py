"""What a model stores quantized, and how (spec section 13.8).

:func:`inspect_model` lists every weight of a model that an int4 quantizer
would care about:

* quantized weights, recognised by the operator that reads them:
  ``DequantizeLinear`` on an INT4/UINT4/INT8/UINT8 constant (scheme from the
  type, group from ``block_size``, or per-channel without it; `` dq8`` appended
  when its scales come from this package's double-quant graph, spec 11),
  ``com.microsoft.MatMulNBits`` (``bits``, ``block_size``, zero points ->
  uint), ``com.microsoft.GatherBlockQuantized``, ``com.microsoft.MatMulBnb4``
  (NF4), and this package's NF4 graph (a UINT4 constant with a ``_codebook``
  sibling);
* float weights still read by ``MatMul`` (B), ``Gemm`` (B) or ``Gather``
  (data), listed as ``float32``/``float16``.

``bytes`` counts the codes plus scales and zero points. Models from any tool
are read (e.g. onnxruntime's ``matmul_nbits_quantizer`` output); nothing is
changed.
"""

from __future__ import annotations

import dataclasses
import os

import onnx
from onnx import TensorProto, helper

from .model_io import iter_graphs, load_model, tensor_nbytes

__all__ = ["TensorInfo", "inspect_model", "format_inspection"]

_QTYPES: dict[int, str] = {
    TensorProto.INT4: "int4", TensorProto.UINT4: "uint4", TensorProto.INT8: "int8", TensorProto.UINT8: "uint8",
}
_FTYPES: dict[int, str] = {
    TensorProto.FLOAT: "float32", TensorProto.FLOAT16: "float16", TensorProto.BFLOAT16: "bfloat16",
}


@dataclasses.dataclass
class TensorInfo:
    """One weight: ``scheme`` is e.g. ``"int4"`` or ``"float32"``; ``group_size`` None when per-tensor/float."""

    name: str
    shape: tuple[int, ...]
    scheme: str
    group_size: int | None
    axis: int | None
    nbytes: int
    stored_as: str
    used_by: tuple[str, ...] = ()


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def inspect_model(model_or_path: onnx.ModelProto | str | os.PathLike) -> tuple[list[TensorInfo], dict]:
    """``(rows, totals)`` for a model or path (see the module docstring)."""
    if isinstance(model_or_path, onnx.ModelProto):
        model, file_bytes = model_or_path, None
    else:
        model = load_model(model_or_path, load_external_data=False)
        file_bytes = os.path.getsize(model_or_path)
        data = [t for g in iter_graphs(model.graph) for t in g.initializer if t.external_data]
        if data:
            file_bytes += sum(tensor_nbytes(t) for t in data)
    consts: dict[str, TensorProto] = {}
    readers: dict[str, list[str]] = {}
    for g in iter_graphs(model.graph):
        for t in g.initializer:
            consts[t.name] = t
        for n in g.node:
            if n.op_type == "Constant" and n.output:
                for a in n.attribute:
                    if a.name == "value" and a.type == onnx.AttributeProto.TENSOR:
                        consts[n.output[0]] = a.t
            for i in n.input:
                readers.setdefault(i, []).append(n.op_type)
    rows: list[TensorInfo] = []
    seen: set[str] = set()

    def nb(*names: str) -> int:
        return sum(tensor_nbytes(consts[x]) for x in names if x and x in consts)

    def add(name, shape, scheme, group, axis, used, stored_as, *extra):
        if name in seen:
            return
        seen.add(name)
        seen.update(x for x in extra if x)
        rows.append(TensorInfo(name, tuple(int(d) for d in shape), scheme, group, axis, nb(name, *extra),
                               stored_as, tuple(sorted(set(readers.get(used, [])))) if used else ()))

    for g in iter_graphs(model.graph):
        for n in g.node:
            a = _attrs(n)
            ins = list(n.input) + [""] * 6
            if n.op_type == "DequantizeLinear" and ins[0] in consts and consts[ins[0]].data_type in _QTYPES:
                t = consts[ins[0]]
                scale_dims = tuple(consts[ins[1]].dims) if ins[1] in consts else None
                group = a.get("block_size") or None
                axis = a.get("axis", 1)
                if group is None and scale_dims is not None and len(scale_dims) <= 1 and len(t.dims) > 1:
                    group = None  # per-channel or per-tensor
                scheme = _QTYPES[t.data_type] if group else f"{_QTYPES[t.data_type]} per-channel"
                base = ins[0] + "_scale"
                dq = [base + x for x in ("_codes", "_scale", "_offset")] if base + "_codes" in consts else []
                if ins[1] not in consts and dq:  # scales made by this package's double-quant graph (spec 11)
                    scheme += " dq8"
                else:
                    dq = []
                add(ins[0], t.dims, scheme, group, axis, n.output[0], "DequantizeLinear", ins[1], ins[2], *dq)
            elif n.op_type == "MatMulNBits" and ins[1] in consts:
                bits = a.get("bits", 4)
                scheme = f"{'uint' if ins[3] else 'int'}{bits}"
                add(ins[1], (a.get("K", 0), a.get("N", 0)), scheme, a.get("block_size"), 0, "",
                    "MatMulNBits", ins[2], ins[3])
            elif n.op_type == "GatherBlockQuantized" and ins[0] in consts:
                t = consts[ins[0]]
                scheme = _QTYPES.get(t.data_type, "uint4")
                if ins[3] and t.data_type not in (TensorProto.INT4, TensorProto.UINT4):
                    scheme = "uint4"
                add(ins[0], t.dims, scheme, a.get("block_size"), a.get("quantize_axis"), "",
                    "GatherBlockQuantized", ins[2], ins[3])
            elif n.op_type == "MatMulBnb4" and ins[1] in consts:
                add(ins[1], (a.get("K", 0), a.get("N", 0)), "nf4" if a.get("quant_type", 1) == 1 else "fp4",
                    a.get("block_size"), None, "", "MatMulBnb4", ins[2])
    for name, t in consts.items():
        if name in seen or t.data_type != TensorProto.UINT4 or name + "_codebook" not in consts:
            continue
        meta = {p.key: p.value for p in t.metadata_props}
        extra = [name + s for s in ("_scale", "_scale_codes", "_scale_scale", "_scale_offset", "_codebook")]
        add(name, t.dims, "nf4", int(meta.get("monoquant.block_size", 0)) or None,
            int(meta.get("monoquant.axis", 0)), "", "Gather(codebook)", *extra)
    for g in iter_graphs(model.graph):
        for n in g.node:
            roles = {"MatMul": 1, "Gemm": 1, "Gather": 0}
            if n.op_type in roles and len(n.input) > roles[n.op_type]:
                w = n.input[roles[n.op_type]]
                t = consts.get(w)
                if t is not None and t.data_type in _FTYPES and len(t.dims) >= 2 and w not in seen:
                    add(w, t.dims, _FTYPES[t.data_type], None, None, w, "float")
    quant = [r for r in rows if r.stored_as != "float"]
    totals = {
        "quantized_weights": len(quant),
        "float_weights": len(rows) - len(quant),
        "quantized_bytes": sum(r.nbytes for r in quant),
        "float_bytes": sum(r.nbytes for r in rows if r.stored_as == "float"),
        "all_tensor_bytes": sum(tensor_nbytes(t) for t in consts.values()),
        "file_bytes": file_bytes,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": model.ir_version,
    }
    return rows, totals


def format_inspection(rows: list[TensorInfo], totals: dict) -> str:
    """A text table of the rows, then the totals."""
    head = ("tensor", "shape", "scheme", "group", "bytes", "stored as")
    body = [(r.name if len(r.name) <= 60 else "..." + r.name[-57:], "x".join(map(str, r.shape)), r.scheme,
             str(r.group_size or "-"), f"{r.nbytes:,}", r.stored_as) for r in rows]
    width = [max(len(x) for x in col) for col in zip(head, *body, strict=True)]
    lines = []
    for cells in [head, *body]:
        parts = (c.rjust(w) if j in (3, 4) else c.ljust(w) for j, (c, w) in enumerate(zip(cells, width, strict=True)))
        lines.append("  ".join(parts).rstrip())
    lines.insert(1, "  ".join("-" * w for w in width))
    lines.append(
        f"quantized: {totals['quantized_weights']} weights, {totals['quantized_bytes']:,} bytes; "
        f"float: {totals['float_weights']} weights, {totals['float_bytes']:,} bytes; "
        f"opset {totals['opset']}, IR {totals['ir_version']}"
        + (f"; file {totals['file_bytes']:,} bytes" if totals.get("file_bytes") is not None else "")
    )
    if not rows:
        lines = ["no MatMul/Gemm/Gather weight found", lines[-1]]
    return "\n".join(lines)
