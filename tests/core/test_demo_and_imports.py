"""The NumPy demo, the CLI's error contract, and the core's NumPy-only imports."""

import subprocess
import sys

import numpy as np

from monoquant_np.cli import main
from monoquant_np.demo import run_demo_numpy


def test_demo_report_values():
    rows, totals = run_demo_numpy()
    assert [r["scheme"] for r in rows] == ["int4", "int4", "int4", "int8"]
    assert rows[0]["bytes_float"] == 512 * 1024 * 4
    assert rows[0]["bits_per_weight"] == 4.25
    # int4 absmax/7 on N(0, 1/K) weights: relative weight error ~ 0.11-0.12
    assert all(0.09 < r["rel_err"] < 0.14 for r in rows[:3])
    assert rows[3]["rel_err"] < 0.01
    assert 7 < totals["bytes_float"] / totals["bytes_quant"] < 8
    assert 0 < totals["output_rel_err"] < 0.4


def test_demo_cli_prints_table(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "fc0" in out and "512x1024" in out and "bits/weight" in out and "int8" in out


def test_cli_bad_option_is_one_line(capsys):
    assert main(["demo", "--group-size", "0"]) != 0
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "group_size must be a positive int, got 0" in err
    assert "Traceback" not in err
    assert main(["no-such-command"]) != 0
    assert "Traceback" not in capsys.readouterr().err


def test_core_imports_without_onnx_or_hypothesis():
    code = (
        "import sys\n"
        "for m in ('onnx', 'onnxruntime', 'hypothesis'): sys.modules[m] = None\n"
        "import numpy as np, monoquant_np as m\n"
        "qt = m.quantize(np.ones((256, 4), np.float32))\n"
        "print(m.dequant_matmul(np.ones((1, 256), np.float32), qt)[0, 0])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert float(r.stdout) == 256.0


def test_python_dash_m_runs():
    r = subprocess.run([sys.executable, "-m", "monoquant_np", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("monoquant-np ")
    assert np is not None
