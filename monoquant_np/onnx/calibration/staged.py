"""Running a model in onnxruntime stage by stage (spec section 14.5).

:class:`StagedModel` cuts a model with :func:`~monoquant_np.onnx.calibration.partition.partition`
and runs one stage at a time on a list of batches. Per batch it keeps a dict
of *carried* values: the graph inputs, and the values earlier stages
produced that a later stage reads (plus the graph outputs, with
``keep_outputs``). A stage runs as a sub-model built for the run:

* nodes: the stage's nodes, pruned to those the requested outputs depend on;
* initializers: the ones those nodes read, copied (external ones keep
  referring to their file: onnxruntime reads them from ``base_dir``; the
  non-float ones and those of at most 64 KiB are read into the copy);
  ``overrides`` turn initializers into inputs fed with the given arrays;
* inputs: graph inputs as declared, carried values with their dtype and rank;
* outputs: the requested values (graph outputs with their declared types).

The session is dropped when the stage has run, so resident memory is one
stage's weights (in onnxruntime, plus their copy in the sub-model when the
model is in memory) plus the carried values of every batch.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from ..options import DEFAULT_STAGE_BYTES
from ..runtime import ACCURACY_OPTION
from ..tensors import is_external, tensor_array, tensor_nbytes
from .partition import Stage, node_reads, partition

__all__ = ["StagedModel", "INLINE_BYTES", "EXTERNAL_FOLDER_OPTION"]

#: External tensors up to this size, and every non-float one, are read into a stage's sub-model:
#: onnxruntime's shape inference needs the values of shape-like inputs (a Reshape's shape).
INLINE_BYTES = 1 << 16

#: The session option naming the folder of external data when a model is loaded from bytes.
EXTERNAL_FOLDER_OPTION = "session.model_external_initializers_file_folder_path"

_FLOATS = (TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16)


def _ort_error(e: Exception, what: str) -> Exception:
    """onnxruntime's exceptions (not ``ValueError``) as one ``ValueError`` line; others unchanged.

    Its Python binding also raises plain ``RuntimeError`` (``Numpy_type 14
    can't be converted to MLDataType`` for a complex feed).
    """
    if not (type(e).__module__.startswith("onnxruntime") or type(e) is RuntimeError):
        return e
    return ValueError(f"{what}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")


class StagedModel:
    """A model cut into stages (:attr:`stages`) and run one stage at a time (see the module docstring).

    ``threads``: onnxruntime's intra-op threads (None: its default);
    ``accuracy_level``: ``session.qdq_matmulnbits_accuracy_level``.
    """

    def __init__(self, model: onnx.ModelProto, *, stage_bytes: int = DEFAULT_STAGE_BYTES,
                 base_dir: str | None = None, threads: int | None = None, accuracy_level: int = 1) -> None:
        self.model = model
        self.stages: list[Stage] = partition(model, stage_bytes)
        self.base_dir = base_dir
        self.threads = threads
        self.accuracy_level = accuracy_level
        g = model.graph
        self.inits = {t.name: t for t in g.initializer}
        self.declared = {vi.name: vi for vi in g.input}
        self.typed = {vi.name: vi for vi in list(g.value_info) + list(g.output)}
        self.graph_outputs = [o.name for o in g.output]
        self.produced_in: dict[str, int] = {}
        for si, s in enumerate(self.stages):
            for k in s.nodes:
                for o in g.node[k].output:
                    self.produced_in.setdefault(o, si)
        later: set[str] = set()
        self.needed_after: list[set[str]] = []
        for s in reversed(self.stages):
            self.needed_after.append(set(later))
            later |= set(s.inputs)
        self.needed_after.reverse()

    def first_stage(self, name: str) -> int:
        """The first stage in which value ``name`` exists (0 for a graph input); ``ValueError`` if none has it."""
        if name in self.declared:
            return 0
        if name not in self.produced_in:
            raise ValueError(f"value {name!r} is neither a graph input nor computed by a node of the main graph")
        return self.produced_in[name]

    def sub_model(self, si: int, outputs: Iterable[str], available: Mapping[str, np.ndarray],
                  overridable: Iterable[str] = ()) -> onnx.ModelProto:
        """Stage ``si`` as a model computing ``outputs`` from ``available`` (the carried values of one batch)."""
        g = self.model.graph
        want, keep = set(outputs), []
        for k in reversed(self.stages[si].nodes):
            if any(o in want for o in g.node[k].output):
                keep.append(k)
                want.update(node_reads(g.node[k]))
        keep.reverse()
        produced = {o for k in keep for o in g.node[k].output}
        reads = list(dict.fromkeys(r for k in keep for r in node_reads(g.node[k]) if r not in produced))
        over = set(overridable)
        inputs = []
        for r in reads:
            if r in self.inits and r not in over:
                continue
            if r in over and r in self.inits:
                t = self.inits[r]
                inputs.append(helper.make_tensor_value_info(r, t.data_type, list(t.dims)))
            elif r in self.declared:
                inputs.append(self.declared[r])
            elif r in available:
                a = np.asarray(available[r])
                inputs.append(helper.make_tensor_value_info(r, helper.np_dtype_to_tensor_dtype(a.dtype),
                                                            [None] * a.ndim))
        outs = [self.typed[o] if o in self.typed and o in self.graph_outputs else onnx.ValueInfoProto(name=o)
                for o in dict.fromkeys(outputs) if o in produced]
        graph = helper.make_graph([g.node[k] for k in keep], f"{g.name or 'graph'}_stage{si}", inputs, outs,
                                  [self._initializer(r) for r in reads if r in self.inits and r not in over],
                                  value_info=[vi for vi in g.value_info if vi.name in produced])
        m = helper.make_model(graph, opset_imports=self.model.opset_import, ir_version=self.model.ir_version)
        m.functions.extend(self.model.functions)
        return m

    def _initializer(self, name: str) -> TensorProto:
        t = self.inits[name]
        if self.base_dir is not None and is_external(t) and (t.data_type not in _FLOATS
                                                             or tensor_nbytes(t) <= INLINE_BYTES):
            return numpy_helper.from_array(tensor_array(t, self.base_dir), name)
        return t

    def session(self, sub: onnx.ModelProto) -> ort.InferenceSession:
        """An onnxruntime CPU session for a sub-model (external data read from ``base_dir``)."""
        so = ort.SessionOptions()
        so.log_severity_level = 4  # fatal only: errors come back as exceptions, reported on one line
        so.add_session_config_entry(ACCURACY_OPTION, str(self.accuracy_level))
        if self.threads is not None:
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
        if self.base_dir is not None:
            so.add_session_config_entry(EXTERNAL_FOLDER_OPTION, str(self.base_dir))
        try:
            return ort.InferenceSession(sub.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as e:
            raise _ort_error(e, f"onnxruntime cannot load {sub.graph.name!r}") from None

    def run(self, si: int, carried: list[dict[str, np.ndarray]], outputs: Iterable[str],
            overrides: Mapping[str, np.ndarray] | None = None) -> list[dict[str, np.ndarray]]:
        """Per batch, the values ``outputs`` of stage ``si`` (those already carried are taken as they are).

        ``overrides`` replace initializers of the stage (cast to their dtype); ``carried`` is not changed.
        """
        outputs = list(dict.fromkeys(outputs))
        over = {k: v for k, v in (overrides or {}).items() if k in self.inits and k in self.stages[si].weights}
        if not carried:
            return []
        sub = self.sub_model(si, [o for o in outputs if o not in carried[0]], carried[0], over)
        computed = [o.name for o in sub.graph.output]
        feeds_over = {k: np.asarray(v, dtype=helper.tensor_dtype_to_np_dtype(self.inits[k].data_type))
                      for k, v in over.items()}
        sess = self.session(sub) if computed else None
        names = {i.name for i in sess.get_inputs()} if sess is not None else set()
        results = []
        for batch in carried:
            vals = dict(zip(computed, self._run_one(si, sess, batch, names, feeds_over, computed), strict=True))
            results.append({o: vals[o] if o in vals else batch[o] for o in outputs if o in vals or o in batch})
        return results

    def _run_one(self, si, sess, batch, names, feeds_over, computed) -> list[np.ndarray]:
        if sess is None:
            return []
        feeds = {k: v for k, v in batch.items() if k in names}
        feeds.update({k: v for k, v in feeds_over.items() if k in names})
        try:
            return sess.run(computed, feeds)
        except Exception as e:
            raise _ort_error(e, f"onnxruntime failed to run stage {si + 1}/{len(self.stages)}") from None

    def step(self, si: int, carried: list[dict[str, np.ndarray]], capture: Iterable[str] = (),
             overrides: Mapping[str, np.ndarray] | None = None, keep_outputs: bool = False
             ) -> list[dict[str, np.ndarray]]:
        """Run stage ``si``, return the values ``capture`` per batch, and advance ``carried`` in place: add what
        later stages read (and the graph outputs with ``keep_outputs``), drop what no later stage reads."""
        keep = self.needed_after[si] | (set(self.graph_outputs) if keep_outputs else set())
        stage_out = [o for o in self.stages[si].outputs if o in keep]
        capture = list(capture)
        res = self.run(si, carried, stage_out + capture, overrides)
        graph_inputs = set(self.declared)
        for batch, vals in zip(carried, res, strict=True):
            batch.update({o: vals[o] for o in stage_out})
            for k in [k for k in batch if k not in keep and k not in graph_inputs]:
                del batch[k]
        return [{c: vals[c] for c in capture if c in vals} for vals in res]

    def outputs(self, feeds: Mapping[str, np.ndarray], names: Iterable[str] | None = None) -> dict[str, np.ndarray]:
        """Run every stage on one batch ``feeds``; the graph outputs ``names`` (default: all)."""
        carried = [dict(feeds)]
        for si in range(len(self.stages)):
            self.step(si, carried, keep_outputs=True)
        wanted = self.graph_outputs if names is None else list(names)
        out = {}
        for n in wanted:
            if n in carried[0]:
                out[n] = carried[0][n]
            elif n in self.inits:
                out[n] = tensor_array(self.inits[n], self.base_dir)
        return out
