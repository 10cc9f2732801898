"""Bringing a model to opset 21 without copying its weights (spec section 13.4).

Blocked ``DequantizeLinear`` and INT4/UINT4 need opset 21; onnxruntime 1.2x-1.3x
loads IR versions up to 10..13, and IR 10 goes with opset 21.
"""

from __future__ import annotations

import onnx
from onnx import version_converter

from ..export.constants import MS_DOMAIN, OPSET, ir_version_for
from ..protobuf import iter_graphs
from ..tensors import tensor_nbytes

__all__ = ["to_opset21", "opset_of", "ensure_ms_opset", "drop_unused_ms_opset", "check_versions",
           "MAX_OPSET", "MAX_IR_VERSION"]

#: The newest ``ai.onnx`` opset a model may declare: onnx 1.23 defines opsets up to 28 and onnxruntime 1.32
#: implements them (it refuses 29 and later: "official support for domain ai.onnx is till opset 28").
MAX_OPSET = 28
#: The newest IR version a model may declare: onnx 1.23 writes IR 14, onnxruntime 1.32 loads up to 14.
MAX_IR_VERSION = 14


def check_versions(model: onnx.ModelProto) -> None:
    """``ValueError`` when ``model`` declares an ``ai.onnx`` opset above :data:`MAX_OPSET` or an IR
    version above :data:`MAX_IR_VERSION` (spec 13.4): its twin could not be checked, and no released
    onnxruntime would load it, so the model is refused instead of written."""
    v, ir = opset_of(model), int(model.ir_version)
    if v > MAX_OPSET or ir > MAX_IR_VERSION:
        raise ValueError(f"the model declares opset {v} and IR version {ir}: the newest this quantizer reads and "
                         f"writes are opset {MAX_OPSET} and IR version {MAX_IR_VERSION} (onnx 1.23, onnxruntime "
                         f"1.32); convert it to an older opset first")


def opset_of(model: onnx.ModelProto) -> int:
    """The model's ``ai.onnx`` opset version (0 when it imports none)."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 0


def to_opset21(model: onnx.ModelProto, version: int = OPSET) -> onnx.ModelProto:
    """``model`` at opset >= ``version`` (21, or 25 for ``INT2``/``UINT2`` weights, spec 20.8; converted,
    not relabelled) with an IR version onnxruntime loads.

    Below ``version`` the model goes through ``onnx.version_converter.convert_version``
    and ``onnx.checker.check_model``; either failing raises ``ValueError``
    (a checker complaint the input model already had is not counted).
    Only a *skeleton* is converted: the model without the bytes of its large
    main-graph initializers (each replaced by a 1-byte placeholder of the same
    name, type and dims). The converted nodes, opsets and any new tensors are
    then moved back into ``model``, which is changed in place and returned, so
    conversion never copies the weights (spec 13.4).

    # Note: onnxruntime's ``matmul_nbits_quantizer`` only raises the opset
    # number and warns that the result "may not be a valid model".

    ``version``/``ir_version``: another target opset and its IR version (24 and
    12 for the ``FLOAT4E2M1`` weights of spec 19.7).
    """
    v = opset_of(model)
    if v < version:
        skeleton, big = _skeleton(model)
        try:
            converted = version_converter.convert_version(skeleton, version)
        except Exception as e:
            raise ValueError(f"cannot convert the model from opset {v} to {version}: {str(e).splitlines()[0]}"
                             ) from None
        after = _checker_error(_as_inputs(converted, big))
        if after is not None and after != _checker_error(_as_inputs(skeleton, big)):
            # Note: a complaint the input model already had (onnxruntime may run it anyway) is not the converter's.
            raise ValueError(f"the model converted from opset {v} to {version} fails onnx.checker: {after}")
        _transplant(converted, model, big)
    if opset_of(model) in (OPSET, version):
        model.ir_version = ir_version_for(opset_of(model))
    else:
        model.ir_version = max(model.ir_version, ir_version_for(version))
    return model


def _checker_error(model: onnx.ModelProto) -> str | None:
    """The first line of ``onnx.checker.check_model``'s complaint about ``model``, or None."""
    try:
        onnx.checker.check_model(model)
    except Exception as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def _skeleton(model: onnx.ModelProto, threshold: int = 1024) -> tuple[onnx.ModelProto, set[str]]:
    """A copy of ``model`` whose main-graph initializers of ``threshold`` bytes or more are placeholders."""
    sk = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version", "doc_string"):
        setattr(sk, field, getattr(model, field))
    sk.opset_import.extend(model.opset_import)
    sk.functions.extend(model.functions)
    g, src = sk.graph, model.graph
    g.name = src.name
    for field in ("node", "input", "output", "value_info", "sparse_initializer"):
        getattr(g, field).extend(getattr(src, field))
    big: set[str] = set()
    for t in src.initializer:
        if tensor_nbytes(t) >= threshold:
            ph = g.initializer.add()
            ph.name, ph.data_type = t.name, t.data_type
            ph.dims.extend(t.dims)
            ph.raw_data = b"\0"
            big.add(t.name)
        else:
            g.initializer.append(t)
    return sk, big


def _as_inputs(model: onnx.ModelProto, big: set[str]) -> onnx.ModelProto:
    """``model`` with its placeholder initializers turned into graph inputs of the same type and shape."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    listed = {v.name for v in m.graph.input}
    keep = [t for t in m.graph.initializer if t.name not in big]
    ins = [onnx.helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
           for t in m.graph.initializer if t.name in big and t.name not in listed]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)
    m.graph.input.extend(ins)
    return m


def _transplant(converted: onnx.ModelProto, model: onnx.ModelProto, big: set[str]) -> None:
    """Move the converted graph structure into ``model``, keeping ``model``'s large initializers.

    ``value_info`` keeps only the names ``model`` already annotated: the
    converter's shape inference annotates every intermediate tensor, and with
    those annotations onnxruntime applies fusions it does not apply to the
    input model (SkipLayerNormalization on MiniLM), so the twin would run a
    different graph from the float model and from onnxruntime's own quantizer
    output.
    """
    g, cg = model.graph, converted.graph
    annotated = {v.name for v in g.value_info}
    for field in ("node", "input", "output"):
        del getattr(g, field)[:]
        getattr(g, field).extend(getattr(cg, field))
    del g.value_info[:]
    g.value_info.extend(v for v in cg.value_info if v.name in annotated)
    for i in reversed(range(len(g.initializer))):  # delete in place: the large tensors are never copied
        if g.initializer[i].name not in big:
            del g.initializer[i]
    g.initializer.extend(t for t in cg.initializer if t.name not in big)
    del model.opset_import[:]
    model.opset_import.extend(converted.opset_import)
    model.ir_version = converted.ir_version


def ensure_ms_opset(model: onnx.ModelProto) -> None:
    """Import the ``com.microsoft`` domain (version 1), for MatMulNBits and GatherBlockQuantized."""
    if not any(o.domain == MS_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(MS_DOMAIN, 1))


def drop_unused_ms_opset(model: onnx.ModelProto) -> None:
    """Remove the ``com.microsoft`` import when no node of any graph uses the domain."""
    if any(n.domain == MS_DOMAIN for g in iter_graphs(model.graph) for n in g.node):
        return
    for i, o in enumerate(model.opset_import):
        if o.domain == MS_DOMAIN:
            del model.opset_import[i]
            return
