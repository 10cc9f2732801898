"""Progress on stderr (spec 13.9): a rewritten line on a terminal with phase, bytes, rate and ETA, one summary
line at the end; nothing when stderr is not a terminal; one line per weight with --progress."""

from __future__ import annotations

import io

import pytest

from monoquant_np.onnx.progress import Progress, format_bytes, format_seconds

pytest.importorskip("onnxruntime")

from monoquant_np.cli import main  # noqa: E402


class _Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_formats():
    assert format_bytes(1.23e9) == "1.23 GB" and format_bytes(512) == "512 B" and format_bytes(2500) == "2.50 kB"
    assert format_seconds(75) == "1:15" and format_seconds(3675) == "1:01:15" and format_seconds(-3) == "0:00"


def test_terminal_line_has_phase_bytes_rate_and_eta():
    out, clock = io.StringIO(), _Clock()
    p = Progress(out, tty=True, clock=clock, interval=0.0)
    p.phase("quantize", total=4_000_000_000, items=4)
    clock.t += 10.0
    p.advance(1_000_000_000, "model.layers.0.mlp.up_proj.weight")
    # 1 GB in 10 s: 100 MB/s; 3 GB left: 30 s
    assert p.status("w") == "quantize 1/4  1.00 GB of 4.00 GB  100.00 MB/s  ETA 0:30  w"
    assert out.getvalue().endswith("\r\033[Kquantize 1/4  1.00 GB of 4.00 GB  100.00 MB/s  ETA 0:30  "
                                   "model.layers.0.mlp.up_proj.weight")
    p.stage(2, 5)
    assert p.status() == "calibrate stage 2/5"
    p.finish("quantized 4 weights")
    assert out.getvalue().endswith("\r\033[Kquantized 4 weights\n")
    assert out.getvalue().count("\n") == 1  # the summary is the only finished line


def test_terminal_redraws_at_most_every_interval():
    out, clock = io.StringIO(), _Clock()
    p = Progress(out, tty=True, clock=clock, interval=1.0)
    p.phase("save", total=100)
    n = out.getvalue().count("\r")
    for _ in range(5):
        clock.t += 0.1
        p.advance(10)
    assert out.getvalue().count("\r") == n  # 0.5 s: no redraw
    clock.t += 1.0
    p.advance(10)
    assert out.getvalue().count("\r") == n + 1 and "60 B of 100 B" in out.getvalue()


def test_nothing_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(out, tty=False)
    p.phase("quantize", total=10, items=1)
    p.advance(10, "w")
    p.finish("done")
    assert out.getvalue() == "" and not p.enabled


def _tiny(gen_llm, tmp_path):
    return gen_llm.generate(tmp_path / "m.onnx", gen_llm.config("tiny", layers=1))


def test_cli_prints_nothing_on_stderr_when_not_a_terminal(gen_llm, tmp_path, capsys):
    assert main(["quantize", str(_tiny(gen_llm, tmp_path)), str(tmp_path / "q.onnx")]) == 0
    assert capsys.readouterr().err == ""


def test_cli_progress_lines_when_asked(gen_llm, tmp_path, capsys):
    assert main(["quantize", str(_tiny(gen_llm, tmp_path)), str(tmp_path / "q.onnx"), "--progress"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "quantize 1/8 model.layers.0.self_attn.q_proj.weight" and len(err) == 9
    assert "\r" not in "".join(err) and err[-1].startswith("quantized 8 weights, ")


def test_cli_on_a_terminal(gen_llm, tmp_path, capsys, monkeypatch):
    src = _tiny(gen_llm, tmp_path)
    term = _Terminal()
    monkeypatch.setattr("sys.stderr", term)
    assert main(["quantize", str(src), str(tmp_path / "q.onnx")]) == 0
    text = term.getvalue()
    assert "\r\033[Kload" in text and "\r\033[Kquantize 0/8" in text and "\r\033[Ksave" in text
    last = text.split("\r\033[K")[-1]
    assert last.startswith("quantized 8 weights, 1.05 MB -> 139.26 kB in ") and "peak memory" in last
    assert last.endswith("\n") and text.count("\n") == 1
