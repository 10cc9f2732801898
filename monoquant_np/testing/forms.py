"""The export forms of the conformance matrix: one row each, with the spec's expected outputs (spec 16.1).

A :class:`Form` names one graph form the project writes and builds, on
demand, a :class:`FormCase`: the model, its feeds, the spec's outputs and the
allowed error per output element under each bound:

* ``"float32"`` (every case): the float32 rounding bound of spec 12.7.2,
  ``2e-5 * (|x| @ |W|) + 2^-126`` for a layer (plus ``2e-5 * |bias|``), 0 for
  a table lookup or a ``DequantizeLinear`` node test (exact), and the golden
  model's tolerance ``tol * max|y|`` for a golden vector or a whole model;
* ``"int8 activations"`` (one-layer cases): spec 12.7.3's
  ``max|x_row| / 254 * sum_k |W[k, n]|`` bound of a runtime that rounds the
  activations to int8.

Adding a form is one entry of :data:`FORMS`, e.g.
``Form("qdq int4 g64 whole axis0 f32", "QDQ", lambda: layer_case(quantize(w, group_size=64)))``.
:func:`layer_case` exports a one-layer model with ``linear_model`` (any
``QuantizedTensor``, any export keyword); :func:`model_case` takes any model.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ..dequantize import dequantize
from ..matmul import dequant_matmul
from ..mxfp4 import quantize_mxfp4
from ..nf4 import quantize_nf4
from ..nvfp4 import quantize_nvfp4
from ..quantize import quantize
from ..requantize import double_quantize
from ..tensor import QuantizedTensor
from .backends import int8_activation_bound
from .conformance import float32_bound
from .runtimes import INT8_ACTIVATIONS

__all__ = ["FLOAT32", "Form", "FormCase", "FORMS", "layer_case", "model_case", "gather_case", "vector_case",
           "node_case", "minilm_case", "VECTORS"]

#: The bound every case has: float32 rounding (spec 12.7.2).
FLOAT32 = "float32"
#: The golden vectors of a source checkout (spec 9.8, 12.8).
VECTORS = Path(__file__).resolve().parents[2] / "spec" / "vectors"
_TOL = 2e-5


@dataclasses.dataclass(frozen=True)
class FormCase:
    """A model, its feeds, the spec's outputs and, per bound name, the allowed ``|diff|`` of each output."""

    model: Any
    feeds: Mapping[str, np.ndarray]
    expected: tuple[np.ndarray, ...]
    bounds: Mapping[str, tuple[np.ndarray, ...]]


@dataclasses.dataclass(frozen=True)
class Form:
    """One row of the matrix: ``name``, its ``group`` (a heading), and ``build() -> FormCase``.

    ``quick``: in the reduced matrix the quick test suite runs; ``e2e``: only
    in the full matrix (real-model rows).
    """

    name: str
    group: str
    build: Callable[[], FormCase]
    quick: bool = False
    e2e: bool = False


def _rng(name: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(name.encode()))


def _weight(shape: tuple[int, ...], seed: str) -> np.ndarray:
    return _rng(seed).standard_normal(shape).astype(np.float32)


def layer_case(qt: QuantizedTensor, bias: np.ndarray | None = None, *, batch: int = 2, **export: Any) -> FormCase:
    """``y = x @ dequantize(qt) + bias`` exported by ``linear_model(qt, bias, **export)``; the spec's
    ``dequant_matmul`` as expected output, with the float32 and int8-activation bounds."""
    from ..onnx.export.models import linear_model

    x = _rng(repr(qt.shape) + qt.scheme).standard_normal((batch, qt.shape[0])).astype(np.float32)
    w = dequantize(qt)
    extra = 0.0 if bias is None else _TOL * np.abs(bias).astype(np.float64)
    bounds = {FLOAT32: (float32_bound(x, w) + extra,), INT8_ACTIVATIONS: (int8_activation_bound(x, w) + extra,)}
    return FormCase(linear_model(qt, bias, **export), {"x": x}, (dequant_matmul(x, qt, bias),), bounds)


def model_case(model: Any, feeds: Mapping[str, np.ndarray], expected: tuple[np.ndarray, ...],
               tolerance: float = _TOL) -> FormCase:
    """Any model; each output may differ from the expected one by ``tolerance * max|expected|``."""
    bounds = tuple(np.full(e.shape, tolerance * float(np.abs(e.astype(np.float64)).max(initial=0.0)))
                   for e in expected)
    return FormCase(model, dict(feeds), tuple(expected), {FLOAT32: bounds})


def gather_case(qt: QuantizedTensor, **quantize_options: Any) -> FormCase:
    """A ``Gather`` of the ``(V, D)`` table ``qt`` (grouped along D), written by ``quantize_model``
    (``prequantized``) with ``quantize_options``; expected ``dequantize(qt)[ids]`` exactly."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..onnx.quantizer.pipeline import quantize_model

    v, d = qt.shape
    graph = helper.make_graph(
        [helper.make_node("Gather", ["table", "ids"], ["y"], axis=0)], "table",
        [helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 3, d])],
        [numpy_helper.from_array(np.zeros((v, d), np.float32), "table")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    q = quantize_model(model, ops="Gather", min_elements=0, prequantized={"table": qt}, **quantize_options)
    ids = np.array([[0, v - 1, 3], [7, 7, 1]], np.int64)
    return model_case(q, {"ids": ids}, (dequantize(qt)[ids],), tolerance=0.0)


def vector_case(name: str) -> FormCase:
    """A golden model of ``spec/vectors/onnx`` (spec 9.8), with its manifest's tolerance."""
    folder = VECTORS / "onnx" / name
    manifest = json.loads((VECTORS / "onnx" / "manifest.json").read_text())
    tol = next(c["tolerance"] for c in manifest["cases"] if c["name"] == name)
    data = np.load(folder / "data.npz")
    case = model_case(folder / "model.onnx", {"x": data["x"]}, (data["y"],), tol)
    if name.startswith("mlp"):
        return case
    x, w = data["x"], data["w_dequantized"]
    floor = float32_bound(x, w)  # a layer: never below float32 rounding, plus the int8 bound of spec 12.7.3
    extra = case.bounds[FLOAT32][0]
    return dataclasses.replace(case, bounds={FLOAT32: (np.maximum(floor, extra),),
                                             INT8_ACTIVATIONS: (int8_activation_bound(x, w) + extra,)})


def node_case(name: str) -> FormCase:
    """An ONNX node test of ``spec/vectors/onnx_node`` (spec 12.8), its 4-bit inputs made initializers
    (no Python binding feeds 4-bit arrays); expected bit for bit."""
    import onnx
    from onnx import numpy_helper

    folder = VECTORS / "onnx_node" / name
    model = onnx.load(folder / "model.onnx")
    tensors = [onnx.load_tensor(str(p)) for p in sorted((folder / "test_data_set_0").glob("input_*.pb"))]
    names = [i.name for i in model.graph.input]
    del model.graph.input[:]
    for n, t in zip(names, tensors, strict=True):
        t.name = n
        model.graph.initializer.append(t)
    expected = numpy_helper.to_array(onnx.load_tensor(str(folder / "test_data_set_0" / "output_0.pb")))
    return model_case(model, {}, (expected,), tolerance=0.0)


def minilm_case(target: str, **options: Any) -> FormCase:
    """MiniLM-L3 quantized by ``quantize_model(target=target, **options)`` (its default RTN, recorded);
    expected: the float model with every weight replaced by the spec's ``dequantize``, run by onnxruntime
    (its float operators are not the spec's subject); bound ``2e-5 * max|y|`` (spec 9.6)."""
    import onnx
    from onnx import numpy_helper

    from ..assets import minilm_model_path
    from ..onnx.quantizer.algorithm import rtn as default_rtn
    from ..onnx.quantizer.pipeline import quantize_model
    from .runtimes import run_model

    path = minilm_model_path()
    if path is None:
        raise FileNotFoundError("the MiniLM model wheel is not installed (see monoquant_np.assets)")
    qts: dict[str, QuantizedTensor] = {}

    def rtn(ctx: Any) -> QuantizedTensor:  # the command line's default, so its output is this case's model
        qts[ctx.name] = default_rtn(ctx)
        return qts[ctx.name]

    model = quantize_model(path, algorithm=rtn, target=target, **options)
    twin = onnx.load(path)
    for t in twin.graph.initializer:
        if t.name in qts:
            w = dequantize(qts[t.name])
            t.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(w if tuple(t.dims) == w.shape else w.T), t.name))
    ids = _rng("minilm").integers(1000, 20000, (2, 12)).astype(np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
    ref = run_model("onnxruntime", twin, feeds)
    if not ref.ok:
        raise RuntimeError(f"the float MiniLM twin does not run in onnxruntime: {ref.summary()}")
    return model_case(model, feeds, ref.outputs)


# ------------------------------------------------------------------- the table
def _qdq(scheme: str, g: int, partial: bool, axis: int, scale: str) -> Callable[[], FormCase]:
    def build() -> FormCase:
        length = 2 * g + (5 if partial else 0)
        shape = (length, 5) if axis == 0 else (6, length)
        w = _weight(shape, f"{scheme}{g}{partial}{axis}{scale}")
        return layer_case(quantize(w, group_size=g, axis=axis, symmetric=scheme == "int4", scale_dtype=scale))
    return build


def _qdq_forms() -> list[Form]:
    out = []
    for scheme in ("int4", "uint4"):
        for g in (16, 24):
            for partial in (False, True):
                for axis in (0, 1):
                    for scale in ("float32", "float16"):
                        name = (f"qdq {scheme} g{g} {'partial' if partial else 'whole'} axis{axis} "
                                f"{'f16' if scale == 'float16' else 'f32'}")
                        quick = (scheme, g, axis, scale) == ("int4", 16, 0, "float32")
                        out.append(Form(name, "QDQ (DequantizeLinear -> MatMul)",
                                        _qdq(scheme, g, partial, axis, scale), quick=quick))
    return out


def _w(k: int, n: int, seed: str = "w") -> np.ndarray:
    return _weight((k, n), f"{seed}{k}x{n}")


def _bias(n: int) -> np.ndarray:
    return _weight((n,), f"bias{n}")


_MNB = "com.microsoft.MatMulNBits"
_TABLES = "Gather tables"
_NF4 = "NF4 (codebook lookup)"
_DQ = "double-quantized scales (rebuilt in the graph)"
_FP4 = "MXFP4 and NVFP4 (spec 19.7)"
_TARGET = "export targets (spec 16.4)"
_VEC = "golden models (spec/vectors/onnx)"
_NODE = "ONNX node tests (spec/vectors/onnx_node)"

#: Every row of the matrix, in order (module docstring: adding a form is one entry).
FORMS: list[Form] = [
    *_qdq_forms(),
    Form("int8 per-channel fallback", "int8 fallback (spec 7)", lambda: layer_case(quantize(_w(8, 5), group_size=16)),
         quick=True),
    Form("uint8 per-channel fallback", "int8 fallback (spec 7)",
         lambda: layer_case(quantize(_w(8, 5), group_size=16, symmetric=False))),
    Form("matmulnbits int4 g16", _MNB, lambda: layer_case(quantize(_w(32, 5), group_size=16), format="matmulnbits"),
         quick=True),
    Form("matmulnbits uint4 g16 (zero points)", _MNB,
         lambda: layer_case(quantize(_w(32, 5), group_size=16, symmetric=False), format="matmulnbits")),
    Form("matmulnbits int4 g32 + bias", _MNB,
         lambda: layer_case(quantize(_w(64, 5), group_size=32), _bias(5), format="matmulnbits")),
    Form("matmulnbits int4 g16 odd K=37", _MNB,
         lambda: layer_case(quantize(_w(37, 5), group_size=16), format="matmulnbits")),
    Form("matmulnbits uint4 g16 odd K=37 + bias", _MNB,
         lambda: layer_case(quantize(_w(37, 5), group_size=16, symmetric=False), _bias(5), format="matmulnbits")),
    Form("matmulnbits int4 g128 (block 128)", _MNB,
         lambda: layer_case(quantize(_w(256, 8), group_size=128), format="matmulnbits")),
    Form("GatherBlockQuantized int4 g16", _TABLES,
         lambda: gather_case(quantize(_w(30, 32), group_size=16, axis=1)), quick=True),
    Form("GatherBlockQuantized uint4 g16", _TABLES,
         lambda: gather_case(quantize(_w(30, 32), group_size=16, axis=1, symmetric=False))),
    Form("DequantizeLinear -> Gather int4 g16", _TABLES,
         lambda: gather_case(quantize(_w(30, 32), group_size=16, axis=1), gather_op="DequantizeLinear")),
    Form("DequantizeLinear -> Gather uint4 g24 partial", _TABLES,
         lambda: gather_case(quantize(_w(30, 40), group_size=24, axis=1, symmetric=False),
                             gather_op="DequantizeLinear")),
    Form("nf4 lookup g16 whole", _NF4, lambda: layer_case(quantize_nf4(_w(32, 5), block_size=16))),
    Form("nf4 lookup g16 partial", _NF4, lambda: layer_case(quantize_nf4(_w(37, 5), block_size=16)), quick=True),
    Form("nf4 lookup g16 axis1", _NF4, lambda: layer_case(quantize_nf4(_w(6, 32), block_size=16, axis=1))),
    Form("MatMulBnb4 nf4 g16", _NF4, lambda: _bnb4(quantize_nf4(_w(32, 5), block_size=16))),
    Form("int4 + double quant, DequantizeLinear rebuild", _DQ,
         lambda: layer_case(double_quantize(quantize(_w(64, 5), group_size=16), block_size=4),
                            scale_rebuild="dequantizelinear")),
    Form("int4 + double quant, arithmetic rebuild", _DQ,
         lambda: layer_case(double_quantize(quantize(_w(64, 5), group_size=16), block_size=4),
                            scale_rebuild="arithmetic"), quick=True),
    Form("uint4 partial + double quant, arithmetic rebuild", _DQ,
         lambda: layer_case(double_quantize(quantize(_w(37, 5), group_size=16, symmetric=False), block_size=4),
                            scale_rebuild="arithmetic")),
    Form("nf4 + double quant, DequantizeLinear rebuild", _DQ,
         lambda: layer_case(quantize_nf4(_w(64, 5), block_size=16, double_quant=True, dq_block_size=4),
                            scale_rebuild="dequantizelinear")),
    Form("nf4 + double quant, arithmetic rebuild", _DQ,
         lambda: layer_case(quantize_nf4(_w(64, 5), block_size=16, double_quant=True, dq_block_size=4),
                            scale_rebuild="arithmetic")),
    Form("int8 fallback + double quant", _DQ,
         lambda: layer_case(double_quantize(quantize(_w(8, 5), group_size=16), block_size=2))),
    Form("mxfp4 b32 lookup (UINT4 + Gather)", _FP4, lambda: layer_case(quantize_mxfp4(_w(64, 5)))),
    Form("nvfp4 b16 lookup (UINT4 + Gather), partial", _FP4, lambda: layer_case(quantize_nvfp4(_w(37, 5)))),
    Form("mxfp4 b32 FLOAT4E2M1 + FLOAT8E8M0 DequantizeLinear", _FP4, lambda: _fp4_standard(quantize_mxfp4(_w(64, 5)))),
    Form("nvfp4 b16 FLOAT4E2M1 + FLOAT8E4M3FN DequantizeLinear", _FP4,
         lambda: _fp4_standard(quantize_nvfp4(_w(64, 5)))),
    Form("nvfp4 b16 FLOAT4E2M1 + FLOAT8E4M3FN DequantizeLinear, partial", _FP4,
         lambda: _fp4_standard(quantize_nvfp4(_w(37, 5)))),
]


def _fp4_standard(qt: QuantizedTensor) -> FormCase:
    """:func:`layer_case` with the standard FP4 model (opset 24) of spec 19.7 instead of the lookup form."""
    from ..onnx.export.fp4_subgraph import fp4_linear_model

    return dataclasses.replace(layer_case(qt), model=fp4_linear_model(qt))


def _bnb4(qt: QuantizedTensor) -> FormCase:
    from ..onnx.export.models import nf4_linear_model

    case = layer_case(qt)
    return dataclasses.replace(case, model=nf4_linear_model(qt, format="bnb4"))


def _target_forms() -> list[Form]:
    """The export targets of spec 16.4 on forms their runtime would otherwise refuse."""
    layers: dict[str, Callable[[], QuantizedTensor]] = {
        "uint4 g24 partial axis0 f16": lambda: quantize(_w(53, 5), group_size=24, symmetric=False,
                                                        scale_dtype="float16"),
        "int4 g16 partial axis1": lambda: quantize(_w(6, 37), group_size=16, axis=1),
        "int4 g32 whole + bias": lambda: quantize(_w(64, 5), group_size=32),
        "nf4 g16 partial + double quant": lambda: quantize_nf4(_w(37, 5), block_size=16, double_quant=True,
                                                               dq_block_size=4),
    }
    out = []
    for target in ("openvino", "tract", "portable"):
        for label, make in layers.items():
            def build(make: Callable[[], QuantizedTensor] = make, target: str = target,
                      bias: bool = "bias" in label) -> FormCase:
                return layer_case(make(), _bias(5) if bias else None, target=target)
            out.append(Form(f"target={target}: {label}", _TARGET, build,
                            quick=(target, label) == ("portable", "uint4 g24 partial axis0 f16")))
    return out


def _vector_forms() -> list[Form]:
    def names(sub: str) -> list[str]:
        path = VECTORS / sub / "manifest.json"
        return [c["name"] for c in json.loads(path.read_text())["cases"]] if path.exists() else []

    out = [Form(n, _VEC, functools.partial(vector_case, n), quick=n == "int4_g24_k50_n3_bias") for n in names("onnx")]
    return out + [Form(n, _NODE, functools.partial(node_case, n)) for n in names("onnx_node")]


FORMS += _target_forms() + _vector_forms() + [
    Form(f"MiniLM-L3 int4 g128, target={t}", "a whole quantized model (MiniLM-L3, 18 MatMuls)",
         functools.partial(minilm_case, t), e2e=True) for t in ("onnxruntime", "openvino", "tract", "portable")
]
