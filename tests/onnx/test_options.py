"""The option table (spec 9.4, 13.3, 13.9): the command line and the API offer the same choices and defaults."""

from __future__ import annotations

import argparse
import inspect

import pytest

from monoquant_np.cli import build_parser
from monoquant_np.onnx import options
from monoquant_np.onnx.quantizer.pipeline import quantize_model_with_report
from monoquant_np.onnx.quantizer.registry import get_algorithm


def _actions(command: str) -> dict[str, argparse.Action]:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def test_the_command_line_offers_the_tables_choices_and_defaults():
    q = _actions("quantize")
    assert tuple(q["scheme"].choices) == options.SCHEMES == ("int4", "uint4", "nf4", "mxfp4", "nvfp4")
    assert tuple(q["scale_dtype"].choices) == options.SCALE_DTYPES and q["scale_dtype"].default == "auto"
    assert tuple(q["format"].choices) == options.FORMATS and q["format"].default == options.DEFAULT_FORMAT == "qdq"
    assert tuple(q["algorithm"].choices) == tuple(options.ALGORITHMS) == ("rtn", "mse", "gptq", "awq")
    assert tuple(q["gather_op"].choices) == options.GATHER_OPS and q["gather_op"].default == "GatherBlockQuantized"
    assert tuple(q["accuracy_level"].choices) == (0, 1, 2, 3, 4)
    assert q["group_size"].default == options.DEFAULT_GROUP_SIZE == 128
    assert q["ops"].default == ",".join(options.DEFAULT_OPS) == "MatMul,Gemm"
    assert tuple(_actions("verify")["accuracy_level"].choices) == tuple(options.ACCURACY_LEVELS)


def test_the_api_defaults_are_the_tables():
    p = inspect.signature(quantize_model_with_report).parameters
    assert p["group_size"].default == options.DEFAULT_GROUP_SIZE
    assert p["scale_dtype"].default == options.DEFAULT_SCALE_DTYPE
    assert p["format"].default == options.DEFAULT_FORMAT
    assert tuple(p["ops"].default) == options.DEFAULT_OPS
    assert p["algorithm"].default == options.DEFAULT_ALGORITHM
    assert p["gather_op"].default == options.DEFAULT_GATHER_OP


@pytest.mark.parametrize("name, needs_calibration", sorted(options.ALGORITHMS.items()))
def test_every_algorithm_name_is_in_the_algorithm_table(name, needs_calibration):
    alg = get_algorithm(name)
    assert alg.name == name and alg.needs_calibration is needs_calibration


@pytest.mark.parametrize("level", [-1, 5, 1.0, True, "1", None])
def test_bad_accuracy_levels_are_value_errors_that_name_the_argument(level):
    with pytest.raises(ValueError, match=r"accuracy_level must be one of \[0, 1, 2, 3, 4\], got"):
        options.check_accuracy_level(level)
