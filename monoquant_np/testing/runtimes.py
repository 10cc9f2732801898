"""Runtime adapters: one model, one feed dict, any ONNX runtime installed (spec section 16.1).

Every adapter takes a model (an ``onnx.ModelProto``, its serialized bytes or
a path) and a feed dict (input name -> array) and returns an
:class:`Outcome`: the outputs in the model's order, or the runtime's own
error at load time or at run time, or ``"not installed"``. A runtime that is
missing is reported, never raised; nothing is imported before it is run.

===================  ===============  ==========================================================
name                 package          how it runs the model
===================  ===============  ==========================================================
``onnxruntime``      onnxruntime      CPU session, ``session.qdq_matmulnbits_accuracy_level=1``
                                      (float32, the spec; spec 9.6)
``onnxruntime-int8`` onnxruntime      the same at level 4, onnxruntime's own default: int8
                                      activations (documented bound: ``int8 activations``)
``onnx-reference``   onnx             ``onnx.reference.ReferenceEvaluator`` (standard domain)
``openvino``         openvino         CPU plugin, ``INFERENCE_PRECISION_HINT=f32``,
                                      ``DYNAMIC_QUANTIZATION_GROUP_SIZE=0`` (no int8 activations)
``openvino-dynquant`` openvino        the same without ``DYNAMIC_QUANTIZATION_GROUP_SIZE=0``:
                                      its default int8 activations on 4-bit weights
``tract``            tract            ``tract.onnx().load(path)``, input facts from the feeds
===================  ===============  ==========================================================

# Note: OpenVINO's CPU plugin, even asked for f32 inference, quantizes the
# activations of MatMuls on compressed 4- and 8-bit weights to int8 per group
# of 32 by default (the same idea as onnxruntime's accuracy level 4); the
# ``openvino`` adapter turns that off with ``DYNAMIC_QUANTIZATION_GROUP_SIZE=0``
# so that its output can be compared with the spec within float32 rounding.

    >>> RUNTIMES["onnxruntime"].package, RUNTIMES["openvino"].config["DYNAMIC_QUANTIZATION_GROUP_SIZE"]
    ('onnxruntime', '0')
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import os
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["Runtime", "Outcome", "RUNTIMES", "DEFAULT_RUNTIMES", "get_runtime", "run_model", "one_line",
           "OPENVINO_EXACT_CONFIG", "INT8_ACTIVATIONS"]

#: The documented bound of runtimes that quantize activations to int8 (spec 12.7.3, 16.2).
INT8_ACTIVATIONS = "int8 activations"
#: OpenVINO CPU properties under which its output is the spec's within float32 rounding (spec 16.3).
OPENVINO_EXACT_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "DYNAMIC_QUANTIZATION_GROUP_SIZE": "0",
                         "INFERENCE_NUM_THREADS": "1"}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one runtime did with one model.

    ``status`` is ``"ok"`` (``outputs`` holds every output, in the model's
    order), ``"load error"`` or ``"run error"`` (``message`` is the runtime's
    own text), or ``"not installed"``.
    """

    runtime: str
    status: str
    outputs: tuple[np.ndarray, ...] = ()
    message: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def summary(self) -> str:
        """One line: ``"ok"``, or the status and the runtime's message cut to its informative line."""
        return "ok" if self.ok else f"{self.status}: {one_line(self.message)}" if self.message else self.status


@dataclasses.dataclass(frozen=True)
class Runtime:
    """An ONNX runtime adapter: ``load(model) -> handle`` and ``run(handle, feeds) -> outputs``.

    ``package`` is the distribution whose version the matrix reports;
    ``bound`` names the runtime's documented bound when it departs from
    float32 on purpose (``None``: it must match the spec within float32
    rounding); ``config`` the options it is run with.
    """

    name: str
    package: str
    module: str
    description: str
    load: Callable[[Any], Any]
    run: Callable[[Any, Mapping[str, np.ndarray]], Sequence[np.ndarray]]
    bound: str | None = None
    config: Mapping[str, str] = dataclasses.field(default_factory=dict)

    @property
    def installed(self) -> bool:
        try:
            importlib.import_module(self.module)
        except ImportError:
            return False
        return True

    @property
    def version(self) -> str | None:
        """The installed version of :attr:`package`, or None."""
        try:
            return importlib.metadata.version(self.package)
        except importlib.metadata.PackageNotFoundError:
            return None


def one_line(message: str) -> str:
    """The informative line of a runtime's error: stack traces and location prefixes dropped.

    >>> one_line("Exception from src/core.cpp:84:\\nCheck 'x' failed at a.cpp:1:\\nbad block_size (24)\\n")
    'bad block_size (24)'
    """
    text = message.split("Stack backtrace:")[0]
    boiler = re.compile(r"^(Exception from |Check '.*' failed at |FrontEnd API failed with |Summary:|Model wasn't "
                        r"fully converted|Failed operations detailed log|\[ONNXRuntimeError\] : \d+ : \w+ : $)")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not boiler.match(ln.strip())]
    pick = next((ln for ln in reversed(lines) if not ln.startswith("-- Conversion is failed")), "")
    failed = next((ln[len("-- Conversion is failed for: "):] for ln in lines
                   if ln.startswith("-- Conversion is failed for: ")), None)
    out = f"{failed}: {pick}" if failed and failed not in pick else pick or message.strip()
    out = re.sub(r"\s+", " ", out)
    return out if len(out) <= 200 else out[:197] + "..."


def _model_bytes(model: Any) -> bytes:
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model.SerializeToString()
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    if isinstance(model, (str, os.PathLike)):
        with open(model, "rb") as f:
            return f.read()
    raise TypeError(f"model must be an onnx.ModelProto, serialized bytes or a path, got {type(model).__name__}")


def _model_path(model: Any, folder: str) -> str:
    """A path to ``model``: its own path (external data stays beside it) or the bytes written into ``folder``."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    path = os.path.join(folder, "model.onnx")
    with open(path, "wb") as f:
        f.write(_model_bytes(model))
    return path


# ----------------------------------------------------------------- onnxruntime
def _ort_loader(level: int) -> Callable[[Any], Any]:
    def load(model: Any) -> Any:
        from ..onnx.runtime import make_session

        return make_session(model if isinstance(model, (str, os.PathLike)) else _model_bytes(model), level,
                            intra_op_threads=1)
    return load


def _ort_run(sess: Any, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
    return sess.run(None, dict(feeds))


# ------------------------------------------------------------ ONNX reference
def _reference_load(model: Any) -> Any:
    import onnx
    from onnx.reference import ReferenceEvaluator

    proto = onnx.load(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else onnx.load_from_string(
        _model_bytes(model))
    return ReferenceEvaluator(proto)


def _reference_run(ev: Any, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
    return ev.run(None, dict(feeds))


# ------------------------------------------------------------------- OpenVINO
def _openvino_loader(config: Mapping[str, str]) -> Callable[[Any], Any]:
    def load(model: Any) -> Any:
        import openvino as ov

        core = ov.Core()
        with tempfile.TemporaryDirectory(prefix="monoquant-ov-") as d:
            ov_model = core.read_model(_model_path(model, d))
            return core.compile_model(ov_model, "CPU", dict(config))
    return load


def _openvino_run(compiled: Any, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
    request = compiled.create_infer_request()
    result = request.infer(dict(feeds))
    return [np.array(result[out]) for out in compiled.outputs]


# ---------------------------------------------------------------------- tract
_TRACT_TYPES = {"float32": "f32", "float16": "f16", "float64": "f64", "int64": "i64", "int32": "i32",
                "int8": "i8", "uint8": "u8", "bool": "bool"}


def _tract_load(model: Any) -> Any:
    import tract

    with tempfile.TemporaryDirectory(prefix="monoquant-tract-") as d:
        return tract.onnx().load(_model_path(model, d))


def _tract_run(inference_model: Any, feeds: Mapping[str, np.ndarray]) -> Sequence[np.ndarray]:
    """Fix each input's shape and type from its feed, optimize, run (tract needs concrete input facts)."""
    arrays = []
    for i in range(inference_model.input_count()):
        a = np.ascontiguousarray(feeds[inference_model.input_name(i)])
        dims = ",".join(str(d) for d in a.shape)
        inference_model.set_input_fact(i, f"{dims},{_TRACT_TYPES[a.dtype.name]}" if dims else _TRACT_TYPES[
            a.dtype.name])
        arrays.append(a)
    runnable = inference_model.into_model().into_runnable()
    return [t.to_numpy() for t in runnable.run(arrays)]


#: Every adapter, by name (module docstring).
RUNTIMES: dict[str, Runtime] = {r.name: r for r in (
    Runtime("onnxruntime", "onnxruntime", "onnxruntime", "CPU, accuracy level 1 (float32)", _ort_loader(1), _ort_run,
            config={"session.qdq_matmulnbits_accuracy_level": "1"}),
    Runtime("onnxruntime-int8", "onnxruntime", "onnxruntime", "CPU, accuracy level 4 (int8 activations, its default)",
            _ort_loader(4), _ort_run, bound=INT8_ACTIVATIONS, config={"session.qdq_matmulnbits_accuracy_level": "4"}),
    Runtime("onnx-reference", "onnx", "onnx.reference", "onnx.reference.ReferenceEvaluator", _reference_load,
            _reference_run),
    Runtime("openvino", "openvino", "openvino", "CPU, f32, DYNAMIC_QUANTIZATION_GROUP_SIZE=0",
            _openvino_loader(OPENVINO_EXACT_CONFIG), _openvino_run, config=OPENVINO_EXACT_CONFIG),
    Runtime("openvino-dynquant", "openvino", "openvino", "CPU, f32, its default dynamic int8 activations",
            _openvino_loader({"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"}), _openvino_run,
            bound=INT8_ACTIVATIONS, config={"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": "1"}),
    Runtime("tract", "tract", "tract", "tract.onnx(), input facts from the feeds", _tract_load, _tract_run),
)}
#: The runtimes of the matrix, in column order.
DEFAULT_RUNTIMES = tuple(RUNTIMES)


def get_runtime(name: Any) -> Runtime:
    """The adapter called ``name`` (a key of :data:`RUNTIMES`), else a ``ValueError`` listing them."""
    if not isinstance(name, str) or name not in RUNTIMES:
        raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {name!r}")
    return RUNTIMES[name]


def run_model(runtime: str | Runtime, model: Any, feeds: Mapping[str, np.ndarray]) -> Outcome:
    """Load ``model`` in ``runtime`` and run it once on ``feeds``: an :class:`Outcome`, never an exception
    from the runtime (a bad ``runtime`` name or model type is still a ``ValueError``/``TypeError``)."""
    rt = runtime if isinstance(runtime, Runtime) else get_runtime(runtime)
    if not isinstance(model, (str, os.PathLike)):
        model = _model_bytes(model)  # TypeError for anything else, before the runtime sees it
    if not rt.installed:
        return Outcome(rt.name, "not installed", message=f"{rt.package} is not installed")
    try:
        handle = rt.load(model)
    except Exception as e:  # the runtime's own error, whatever its type
        return Outcome(rt.name, "load error", message=str(e) or type(e).__name__)
    try:
        outputs = tuple(np.asarray(o) for o in rt.run(handle, feeds))
    except Exception as e:
        return Outcome(rt.name, "run error", message=str(e) or type(e).__name__)
    return Outcome(rt.name, "ok", outputs)
