"""Spec 18.6 and 19.5: MXFP4 and NVFP4 against other implementations, on PyTorch's CPU build.

* torchao (``torchao.prototype.mx_formats``): ``to_mx`` (MXFP4, scale mode
  FLOOR, OCP's rule) must equal ``quantize_mxfp4`` byte for byte, except in
  blocks whose E8M0 code is 0, where torchao divides by ``2**-126`` instead
  of the stored ``2**-127``; its ``nvfp4_quantize`` is reproduced exactly by
  its three documented steps (spec 19.5).
* NVIDIA TensorRT Model Optimizer (``modelopt``): ``NVFP4QTensor.quantize``
  (the reference recipe spec 19 follows) must equal ``quantize_nvfp4`` code
  for code, scales and tensor scale included, except that it gives a scaled
  ``-0.0`` code 0 instead of 8 (spec 19.5); its ``dequantize`` must equal
  ours value for value; its ``MXFP4QTensor`` uses another scale rule and
  tie rule (spec 18.6), shown on a hand vector.

Each library is optional (CI installs them next to the CPU torch wheel);
absent, its tests skip with the reason.
"""

import numpy as np
import pytest

from monoquant_np import dequantize, quantize_mxfp4, quantize_nvfp4
from monoquant_np.e2m1 import e2m1_codes
from monoquant_np.fp8 import e4m3_codes, e4m3_values
from monoquant_np.testing.fp4_strategies import FP4_KINDS, fp4_block

pytestmark = pytest.mark.e2e
f32 = np.float32


def _torch():
    return pytest.importorskip("torch", reason="torch (CPU) is not installed")


def _weights(seed: int, rows: int, blocks: int, block: int) -> np.ndarray:
    """``(rows, blocks * block)`` float32, blocks along the last axis, each of a kind of the strategies."""
    rng = np.random.default_rng(seed)
    cols = [fp4_block(FP4_KINDS[(b + seed) % len(FP4_KINDS)], rng, (block, rows)).T for b in range(blocks)]
    return np.ascontiguousarray(np.concatenate(cols, axis=1))


def _unpack(data: np.ndarray) -> np.ndarray:
    return np.stack([data & 15, data >> 4], axis=-1).reshape(*data.shape[:-1], -1)


# ---------------------------------------------------------------- torchao
def _torchao_mx():
    _torch()
    return pytest.importorskip("torchao.prototype.mx_formats.mx_tensor", reason="torchao is not installed")


@pytest.mark.parametrize("seed", range(4))
def test_torchao_to_mx_equals_quantize_mxfp4(seed):
    torch = _torch()
    mx = _torchao_mx()
    w = _weights(seed, 64, 21, 32)  # 64 * 21 = 1344 blocks, 43,008 elements per seed
    scale, data = mx.to_mx(torch.from_numpy(w), torch.float4_e2m1fn_x2, 32)
    qt = quantize_mxfp4(w, axis=1)
    theirs_scale = scale.view(torch.uint8).numpy()
    assert np.array_equal(theirs_scale, qt.fp_scales.codes)
    theirs, ours = _unpack(data.view(torch.uint8).numpy()), qt.codes()
    code0 = np.repeat(qt.fp_scales.codes == 0, 32, axis=1)  # elements of blocks with E8M0 code 0
    assert np.array_equal(theirs[~code0], ours[~code0])
    # in those blocks torchao divides by its float32 scale clamped to 2**-126, not by 2**-127
    assert np.array_equal(theirs[code0], e2m1_codes(w[code0] / f32(2.0**-126)))


def test_torchao_nvfp4_is_three_steps_away_from_the_recipe():
    torch = _torch()
    nv = pytest.importorskip("torchao.prototype.mx_formats.nvfp4_tensor", reason="torchao is not installed")
    w = _weights(7, 64, 16, 16)
    amax = np.abs(w).max()
    g = nv.per_tensor_amax_to_scale(torch.tensor(amax))
    scale, data = nv.nvfp4_quantize(torch.from_numpy(w), 16, g)
    # torchao: s = (a / 6) / g, clamped to [2**-6, 448] (not [2**-9, 448]); x = w * ((1 / g) / S8)
    g32 = f32(g.item())
    a = np.abs(w.reshape(64, 16, 16)).max(axis=-1)
    s = (a / f32(6)).astype(f32) / g32
    codes = e4m3_codes(np.clip(s, f32(2.0**-6), f32(448)).astype(f32))
    recip = ((f32(1) / g32) / e4m3_values(codes)).astype(f32)
    x = np.clip(w.reshape(64, 16, 16) * recip[..., None], -6, 6).astype(f32)
    assert np.array_equal(scale.view(torch.uint8).numpy(), codes)
    assert np.array_equal(_unpack(data.view(torch.uint8).numpy()), e2m1_codes(x).reshape(64, 256))
    # and the recipe's own codes differ from it on this weight
    assert not np.array_equal(quantize_nvfp4(w, axis=1).fp_scales.codes, codes)


# ---------------------------------------------------------------- NVIDIA ModelOpt
def _modelopt(name: str):
    _torch()
    return pytest.importorskip(f"modelopt.torch.quantization.qtensor.{name}",
                               reason="nvidia-modelopt is not installed")


@pytest.mark.parametrize("seed", range(4))
def test_modelopt_nvfp4_equals_quantize_nvfp4(seed):
    torch = _torch()
    mod = _modelopt("nvfp4_tensor")
    w = _weights(seed, 64, 24, 16)  # 1536 blocks, 24,576 elements per seed
    q, scale, g = mod.NVFP4QTensor.quantize(torch.from_numpy(w.copy()), 16)
    qt = quantize_nvfp4(w, axis=1)
    assert g.item() == qt.fp_scales.tensor_scale
    assert np.array_equal(scale.view(torch.uint8).numpy(), qt.fp_scales.codes)
    # modelopt's sign bit is (x < 0), so a scaled value of -0.0 (a -0.0 weight, or a negative one whose
    # w / S underflows) takes code 0 there and code 8 (-0) here, as ml_dtypes and torchao give
    x = (w.reshape(64, 24, 16) / qt.scale[..., None]).astype(f32).reshape(64, 384)
    negzero = (x == 0) & np.signbit(x)
    theirs, ours = _unpack(q._quantized_data.numpy()), qt.codes()
    assert np.array_equal(theirs, np.where(negzero, 0, ours))
    back = q.dequantize(dtype=torch.float32, scale=scale, double_scale=g, block_sizes={-1: 16}).numpy()
    mine = dequantize(qt)
    assert np.array_equal(back, mine)  # equal values; bits differ only in the sign of zeros:
    plus = ours != 8  # modelopt's table decodes code 8 as +0.0, E2M1 (and ml_dtypes) as -0.0
    assert back[plus].view(np.uint32).tolist() == mine[plus].view(np.uint32).tolist()


def test_modelopt_mxfp4_uses_another_scale_and_tie_rule():
    torch = _torch()
    mod = _modelopt("mxfp4_tensor")
    # amax 7: OCP e = floor(log2 7) - 2 = 0; modelopt e = ceil(log2(7 / 6)) = 1.
    # amax 6 (second block): both e = 0, but 0.75 ties to 0.5 in modelopt (to 1.0 here) and 0.0 gets code 8 there
    w = np.array([[7.0] + [0.0] * 31, [6.0, 0.75, 0.0] + [1.0] * 29], f32)
    q, e = mod.MXFP4QTensor.quantize(torch.from_numpy(w.copy()), 32)
    ours = quantize_mxfp4(w, axis=1)
    assert e.numpy().ravel().tolist() == [128, 127] and ours.fp_scales.codes.ravel().tolist() == [127, 127]
    theirs = _unpack(q._quantized_data.numpy())
    assert theirs[1, :3].tolist() == [7, 1, 8] and ours.codes()[1, :3].tolist() == [7, 2, 0]
