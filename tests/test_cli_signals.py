"""Signals (spec 13.9): SIGINT, SIGTERM and SIGHUP at any moment give one stderr line, exit 130, 143 or 129,
and leave nothing new in the folder (no output, no ``.mq-*.tmp``).

Each case runs the command line in a subprocess whose hook sends the signal to the process itself at one
reproducible moment (no timing): while NumPy is first imported (after ``import monoquant_np``, which does
not import it), while ``onnx`` is imported by the parser, before the first weight is read,
after the data file is written, between the renames of the commit, and after the commit while the table
is printed. The hook records what it saw in a file outside the model's folder.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

HOOK = textwrap.dedent("""
    import os, signal, sys, threading
    moment, sig, mark = sys.argv[1], getattr(signal, sys.argv[2]), sys.argv[3]
    once = threading.Lock()  # weights are read on several threads: only the first reader signals

    def hit(note=""):
        if not once.acquire(blocking=False):
            return
        with open(mark, "w") as f:
            f.write(note or moment)
        os.kill(os.getpid(), sig)

    if moment in ("import", "numpy_import"):
        class Finder:
            def find_spec(self, name, path=None, target=None):
                if name == ("onnx" if moment == "import" else "numpy"):
                    sys.meta_path.remove(self)
                    hit()
                return None
        sys.meta_path.insert(0, Finder())
    elif moment == "first_weight":
        import monoquant_np.onnx.quantizer.pipeline as p
        real = p.tensor_array
        p.tensor_array = lambda *a, **k: (hit(), real(*a, **k))[1]
    elif moment == "data_written":
        from monoquant_np.onnx.streaming import DataFile
        real = DataFile.externalize
        def after(self, *a, **k):
            r = real(self, *a, **k)
            self.f.flush()
            hit(f"{os.path.getsize(self.path)}")
            return r
        DataFile.externalize = after
    elif moment == "between_renames":
        real = os.replace
        def replace(a, b):
            real(a, b)
            hit(f"published {os.path.basename(b)}")
        os.replace = replace
    elif moment == "after_commit":
        from monoquant_np.onnx.quantizer.report import QuantReport
        real = QuantReport.format
        QuantReport.format = lambda self: (hit(" ".join(sorted(os.listdir(os.path.dirname(mark) + "/m")))),
                                           real(self))[1]
    from monoquant_np.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def _model(folder):
    rng = np.random.default_rng(0)
    g = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("MatMul", ["h", "V"], ["y"])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["b", 128])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["b", 64])],
        [numpy_helper.from_array(rng.standard_normal((128, 128)).astype(np.float32), "W"),
         numpy_helper.from_array(rng.standard_normal((128, 64)).astype(np.float32), "V")])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, str(folder / "f.onnx"))


CASES = [  # (moment, signal, extra arguments, what the hook must have seen)
    ("numpy_import", "SIGINT", [], "numpy_import"),  # importing the package does not import NumPy
    ("import", "SIGINT", [], "import"),
    ("first_weight", "SIGINT", [], "first_weight"),
    ("data_written", "SIGTERM", ["--external-data"], "12288"),
    ("between_renames", "SIGHUP", ["--external-data"], "published q.onnx.data"),
    ("after_commit", "SIGTERM", ["--external-data"], "f.onnx q.onnx q.onnx.data r.json"),
]


@pytest.mark.parametrize(("moment", "sig", "extra", "seen"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_signal_leaves_nothing_and_one_line(tmp_path, moment, sig, extra, seen):
    folder = tmp_path / "m"
    folder.mkdir()
    _model(folder)
    before = (folder / "f.onnx").read_bytes()
    mark = tmp_path / "mark"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run([sys.executable, "-c", HOOK, moment, sig, str(mark), "quantize", str(folder / "f.onnx"),
                        str(folder / "q.onnx"), "--report", str(folder / "r.json"), "--progress", *extra],
                       capture_output=True, text=True, timeout=120, env=env)
    assert mark.read_text().startswith(seen)  # the signal came at that moment
    signum = getattr(signal, sig)
    assert r.returncode == 128 + signum, (r.returncode, r.stderr)
    words = {"SIGINT": "interrupted", "SIGTERM": "terminated", "SIGHUP": "hung up"}[sig]
    err = [line for line in r.stderr.splitlines() if not line.startswith("quantiz")]  # --progress lines aside
    assert err == [f"monoquant-np: {words} ({sig}); no output written"], r.stderr
    assert sorted(os.listdir(folder)) == ["f.onnx"]
    assert (folder / "f.onnx").read_bytes() == before


def test_an_ignored_signal_stays_ignored(tmp_path):
    """Under ``nohup`` (SIGHUP ignored) a hang-up does not stop the run: the output is written, exit 0."""
    folder = tmp_path / "m"
    folder.mkdir()
    _model(folder)
    mark = tmp_path / "mark"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    r = subprocess.run([sys.executable, "-c", HOOK, "first_weight", "SIGHUP", str(mark), "quantize",
                        str(folder / "f.onnx"), str(folder / "q.onnx")],
                       capture_output=True, text=True, timeout=120, env=env,
                       preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    assert mark.read_text() == "first_weight"
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert sorted(os.listdir(folder)) == ["f.onnx", "q.onnx"]
