"""What a model stores quantized, and how (spec section 13.8).

:func:`inspect_model` lists every weight of a model that an int4 quantizer
would care about:

* quantized weights, recognised by the operator that reads them:
  ``DequantizeLinear`` on an INT2/UINT2/INT4/UINT4/INT8/UINT8 constant (scheme from the
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
from onnx import TensorProto

from .mixed.metadata import read_formats
from .model_io import load_model
from .protobuf import attrs, graph_constants, iter_graphs
from .tensors import tensor_nbytes

__all__ = ["TensorInfo", "inspect_model", "format_inspection"]

_QTYPES: dict[int, str] = {
    TensorProto.INT4: "int4", TensorProto.UINT4: "uint4", TensorProto.INT8: "int8", TensorProto.UINT8: "uint8",
    TensorProto.INT2: "int2", TensorProto.UINT2: "uint2",
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


class _Listing:
    """The rows of one model: its constants (all graphs), who reads each value, and the rows added so far."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.consts: dict[str, TensorProto] = {}
        self.readers: dict[str, list[str]] = {}
        for g in iter_graphs(model.graph):
            self.consts.update(graph_constants(g))
            for n in g.node:
                for i in n.input:
                    self.readers.setdefault(i, []).append(n.op_type)
        self.rows: list[TensorInfo] = []
        self.seen: set[str] = set()

    def add(self, name: str, shape, scheme: str, group: int | None, axis: int | None, used: str, stored_as: str,
            *extra: str) -> None:
        """A row for ``name`` (and its companions ``extra``, counted in its bytes), unless already listed."""
        if name in self.seen:
            return
        self.seen.add(name)
        self.seen.update(x for x in extra if x)
        nbytes = sum(tensor_nbytes(self.consts[x]) for x in (name, *extra) if x and x in self.consts)
        used_by = tuple(sorted(set(self.readers.get(used, [])))) if used else ()
        dims = tuple(int(d) for d in shape)
        self.rows.append(TensorInfo(name, dims, scheme, group, axis, nbytes, stored_as, used_by))


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
    listing = _Listing(model)
    for g in iter_graphs(model.graph):
        for n in g.node:
            _list_quantized(listing, n)
    _list_nf4_graphs(listing)
    for g in iter_graphs(model.graph):
        for n in g.node:
            _list_float(listing, n)
    return listing.rows, _totals(listing, model, file_bytes)


def _list_quantized(listing: _Listing, n: onnx.NodeProto) -> None:
    """The weight ``n`` reads quantized, when it is a DequantizeLinear, MatMulNBits, GatherBlockQuantized or
    MatMulBnb4 node on a constant."""
    consts, a = listing.consts, attrs(n)
    ins = list(n.input) + [""] * 6
    if n.op_type == "DequantizeLinear" and ins[0] in consts and consts[ins[0]].data_type in _QTYPES:
        t = consts[ins[0]]
        group = a.get("block_size") or None
        scheme = _QTYPES[t.data_type] if group else f"{_QTYPES[t.data_type]} per-channel"
        base = ins[0] + "_scale"
        dq = [base + x for x in ("_codes", "_scale", "_offset")] if base + "_codes" in consts else []
        if ins[1] not in consts and dq:  # scales made by this package's double-quant graph (spec 11)
            scheme += " dq8"
        else:
            dq = []
        listing.add(ins[0], t.dims, scheme, group, a.get("axis", 1), n.output[0], "DequantizeLinear", ins[1], ins[2],
                    *dq)
    elif n.op_type == "MatMulNBits" and ins[1] in consts:
        scheme = f"{'uint' if ins[3] else 'int'}{a.get('bits', 4)}"
        listing.add(ins[1], (a.get("K", 0), a.get("N", 0)), scheme, a.get("block_size"), 0, "", "MatMulNBits",
                    ins[2], ins[3])
    elif n.op_type == "GatherBlockQuantized" and ins[0] in consts:
        t = consts[ins[0]]
        scheme = _QTYPES.get(t.data_type, "uint4")
        if ins[3] and t.data_type not in (TensorProto.INT4, TensorProto.UINT4):
            scheme = "uint4"
        listing.add(ins[0], t.dims, scheme, a.get("block_size"), a.get("quantize_axis"), "", "GatherBlockQuantized",
                    ins[2], ins[3])
    elif n.op_type == "MatMulBnb4" and ins[1] in consts:
        listing.add(ins[1], (a.get("K", 0), a.get("N", 0)), "nf4" if a.get("quant_type", 1) == 1 else "fp4",
                    a.get("block_size"), None, "", "MatMulBnb4", ins[2])


def _list_nf4_graphs(listing: _Listing) -> None:
    """This package's NF4 graphs (spec 10.6): a UINT4 constant with a ``_codebook`` sibling."""
    for name, t in listing.consts.items():
        if name in listing.seen or t.data_type != TensorProto.UINT4 or name + "_codebook" not in listing.consts:
            continue
        meta = {p.key: p.value for p in t.metadata_props}
        extra = [name + s for s in ("_scale", "_scale_codes", "_scale_scale", "_scale_offset", "_codebook")]
        listing.add(name, t.dims, "nf4", int(meta.get("monoquant.block_size", 0)) or None,
                    int(meta.get("monoquant.axis", 0)), "", "Gather(codebook)", *extra)


#: The input index of the weight of each float reader that :func:`inspect_model` lists.
_FLOAT_READERS = {"MatMul": 1, "Gemm": 1, "Gather": 0}


def _list_float(listing: _Listing, n: onnx.NodeProto) -> None:
    """The float weight ``n`` reads, when it is a MatMul (B), Gemm (B) or Gather (data) on a 2-D+ constant."""
    k = _FLOAT_READERS.get(n.op_type)
    if k is None or len(n.input) <= k:
        return
    w = n.input[k]
    t = listing.consts.get(w)
    if t is not None and t.data_type in _FTYPES and len(t.dims) >= 2 and w not in listing.seen:
        listing.add(w, t.dims, _FTYPES[t.data_type], None, None, w, "float")


def _totals(listing: _Listing, model: onnx.ModelProto, file_bytes: int | None) -> dict:
    """Counts and bytes of the quantized and float rows, the model's tensor bytes, file size, opset and IR."""
    rows = listing.rows
    quant = [r for r in rows if r.stored_as != "float"]
    return {
        "quantized_weights": len(quant),
        "float_weights": len(rows) - len(quant),
        "quantized_bytes": sum(r.nbytes for r in quant),
        "float_bytes": sum(r.nbytes for r in rows if r.stored_as == "float"),
        "all_tensor_bytes": sum(tensor_nbytes(t) for t in listing.consts.values()),
        "file_bytes": file_bytes,
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None),
        "ir_version": model.ir_version,
        "chosen_formats": read_formats(model),
    }


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
    chosen = totals.get("chosen_formats")
    if chosen:  # spec 21.4: the formats a size budget chose, by the float model's weight names
        counts: dict[str, int] = {}
        for label in chosen.values():
            counts[label] = counts.get(label, 0) + 1
        lines.append("formats chosen by the budget: " + ", ".join(f"{k} x{v}" for k, v in sorted(counts.items())))
        lines += [f"  {n}: {label}" for n, label in chosen.items()]
    if not rows:
        lines = ["no MatMul/Gemm/Gather weight found", lines[-1]]
    return "\n".join(lines)
