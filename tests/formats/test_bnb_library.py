"""Our bitsandbytes NF4 dialect against the real library, byte for byte (spec 12.3).

``tests/formats/test_bnb.py`` checks the layout against a transcription of
bitsandbytes' packing; this module runs bitsandbytes itself:
``quantize_4bit(A, blocksize, quant_type="nf4")`` must give the bytes and
absmax of ``bnb_nf4_pack(quantize_nf4(A))``, and ``dequantize_4bit`` the values
of ``dequantize(bnb_nf4_unpack(...))``. Needs torch and bitsandbytes (CPU
builds; ``.ci/run`` installs them), skipped with the install hint otherwise.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monoquant_np import dequantize
from monoquant_np.formats import bnb_nf4_pack, bnb_nf4_unpack, transpose
from monoquant_np.nf4 import NF4_MIDPOINTS, quantize_nf4

pytestmark = pytest.mark.e2e
HINT = "the real bitsandbytes is not installed (pip install torch==2.13.0 bitsandbytes==0.50.2, CPU builds)"


@functools.cache
def _library() -> tuple[Any, Any]:
    """``(torch, bitsandbytes.functional)``, imported when a test first runs (not at collection: torch takes
    seconds to import, and a run that deselects these tests should not pay for it)."""
    return pytest.importorskip("torch", reason=HINT), pytest.importorskip("bitsandbytes.functional", reason=HINT)


def _theirs(w: np.ndarray, blocksize: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """bitsandbytes' ``(packed, absmax, dequantized)`` of ``w``."""
    torch, F = _library()
    q, state = F.quantize_4bit(torch.from_numpy(np.ascontiguousarray(w)), blocksize=blocksize, quant_type="nf4")
    return q.numpy(), state.absmax.numpy(), F.dequantize_4bit(q, state).float().numpy()


def _check(w: np.ndarray, blocksize: int) -> None:
    packed, absmax, deq = _theirs(w, blocksize)
    ours_packed, ours_absmax = bnb_nf4_pack(quantize_nf4(w, block_size=blocksize, axis=w.ndim - 1))
    assert packed.shape == ours_packed.shape and absmax.dtype == ours_absmax.dtype == np.float32
    diff = np.nonzero(packed.ravel() != ours_packed.ravel())[0]
    assert diff.size == 0, f"bytes differ at {diff[:5]}: bitsandbytes {packed.ravel()[diff[:5]]}, " \
                           f"ours {ours_packed.ravel()[diff[:5]]}"
    assert absmax.tobytes() == ours_absmax.tobytes()
    back = dequantize(bnb_nf4_unpack(packed, absmax, w.shape, blocksize=blocksize))
    assert back.tobytes() == deq.reshape(w.shape).tobytes()


@pytest.mark.parametrize("shape, blocksize", [((128, 64), 64), ((64, 256), 64), ((32, 512), 128), ((3, 256), 256),
                                              ((7, 64), 64), ((1000,), 64), ((999,), 64), ((5,), 64)])
def test_quantize_4bit_matches(shape, blocksize):
    w = np.random.default_rng(0).standard_normal(shape).astype(np.float32) * np.float32(0.05)
    _check(w, blocksize)


def test_ties_zero_block_and_float16_input():
    mids = NF4_MIDPOINTS.astype(np.float32)  # exactly on the midpoints (absmax 1): the lower code, both sides
    ties = np.concatenate([[1.0], mids, -mids, np.zeros(64 - 1 - 2 * mids.size)]).astype(np.float32)
    _check(ties, 64)
    zero_block = np.concatenate([np.zeros(64), np.random.default_rng(1).standard_normal(64)]).astype(np.float32)
    _check(zero_block, 64)  # an all-zero block: absmax 0, code 7 (bitsandbytes' CPU build agrees)
    w16 = np.random.default_rng(2).standard_normal((16, 64)).astype(np.float16)
    packed, absmax, _ = _theirs(w16, 64)
    ours_packed, ours_absmax = bnb_nf4_pack(quantize_nf4(w16, block_size=64, axis=1))
    assert packed.tobytes() == ours_packed.tobytes() and absmax.tobytes() == ours_absmax.tobytes()


def test_linear_weight_is_the_transposed_matmul_weight():
    # torch's Linear.weight (N, K) blocked along K == ONNX MatMul B (K, N) quantized along axis 0, transposed
    w_kn = np.random.default_rng(3).standard_normal((256, 48)).astype(np.float32)
    packed, absmax, _ = _theirs(np.ascontiguousarray(w_kn.T), 64)
    ours_packed, ours_absmax = bnb_nf4_pack(transpose(quantize_nf4(w_kn, block_size=64, axis=0)))
    assert packed.tobytes() == ours_packed.tobytes() and absmax.tobytes() == ours_absmax.tobytes()


@given(st.integers(1, 6), st.integers(1, 4), st.sampled_from([64, 128, 256]), st.integers(0, 2**16))
@settings(max_examples=25, deadline=None)
def test_random_shapes_match(rows, blocks, blocksize, seed):
    rng = np.random.default_rng(seed)
    scale = np.exp(rng.normal(0, 2, (rows, 1))).astype(np.float32)  # rows of very different magnitudes
    _check((rng.standard_normal((rows, blocks * blocksize)) * scale).astype(np.float32), blocksize)


def test_subnormal_absmax_differs_only_as_the_spec_notes():
    # spec 10.2 note: bitsandbytes' CPU path clamps 1 / max(a, 1e-38); the spec lifts a subnormal block by 2^24.
    # A normal absmax agrees bit for bit; [2^-127, 2^-128] gets bitsandbytes codes [13, 11], the spec's [15, 12].
    w = np.zeros(64, np.float32)
    w[:2] = [2.0**-126, 2.0**-127]
    packed, _, _ = _theirs(w, 64)
    assert np.array_equal(packed.ravel(), bnb_nf4_pack(quantize_nf4(w, block_size=64))[0].ravel())
    w[:2] = [2.0**-127, 2.0**-128]
    packed, _, _ = _theirs(w, 64)
    assert packed.ravel()[0] == 0xDB  # high nibble first: codes 13, 11
    assert quantize_nf4(w, block_size=64).codes()[:2].tolist() == [15, 12]
    w[:4] = np.array([57, 10, -3, 0], np.float32) * np.float32(2.0**-149)
    w[4:] = 0
    packed, _, deq = _theirs(w, 64)
    assert (packed.ravel() == 0x77).all() and (deq == 0).all()  # every code 7: the block vanishes
    assert quantize_nf4(w, block_size=64).codes()[:4].tolist() == [15, 9, 6, 7]
