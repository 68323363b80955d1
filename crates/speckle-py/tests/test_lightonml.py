"""speckle.lightonml.OPU: lightonml's surface, shapes and dtypes, on speckle's devices."""

import re
import subprocess
import sys

import numpy as np
import pytest

import speckle
from speckle.lightonml import OPU, OutputRescaling
from conftest import REPO, binary_batch, float_batch, same_bits

N_FEATURES = 40
N_COMPONENTS = 24


def opu(**kwargs):
    kwargs.setdefault("n_components", N_COMPONENTS)
    kwargs.setdefault("max_n_features", N_FEATURES)
    return OPU(**kwargs)


def test_transform_is_the_device_transform_padded_to_max_n_features():
    x = binary_batch(6, 30)
    with opu(seed=3) as o:
        o.fit1d(x)
        y = o.transform(x)
    padded = np.zeros((6, N_FEATURES), np.uint8)
    padded[:, :30] = x
    want = speckle.open_device("sim", N_FEATURES, N_COMPONENTS, seed=3).transform(padded)
    assert same_bits(y, want)


@pytest.mark.parametrize(
    "shape, out",
    [
        ((N_FEATURES,), (N_COMPONENTS,)),
        ((1, N_FEATURES), (1, N_COMPONENTS)),
        ((7, N_FEATURES), (7, N_COMPONENTS)),
        ((30, 10, N_FEATURES), (30, 10, N_COMPONENTS)),
        ((2, 3, 4, N_FEATURES), (2, 3, 4, N_COMPONENTS)),
        ((0, N_FEATURES), (0, N_COMPONENTS)),
    ],
)
def test_1d_shapes(shape, out):
    x = (np.arange(np.prod(shape)).reshape(shape) % 3 == 0).astype(np.uint8)
    with opu() as o:
        o.fit1d(n_features=N_FEATURES)
        y = o.transform(x)
        assert y.shape == out and y.dtype == np.uint8
        z = o.fit_transform1d(x)
        assert z.shape == out and z.dtype == np.uint8


def test_a_large_leading_batch():
    x = np.zeros((300, 100, 16), np.uint8)
    x[..., ::3] = 1
    with OPU(n_components=8, max_n_features=16) as o:
        y = o.fit_transform1d(x)
    assert y.shape == (300, 100, 8) and y.dtype == np.uint8


def test_leading_shape_does_not_change_values():
    x = binary_batch(12, N_FEATURES, seed=4)
    with opu(seed=1) as a, opu(seed=1) as b:
        a.fit1d(x)
        b.fit1d(x)
        assert same_bits(a.transform(x.reshape(3, 4, N_FEATURES)).reshape(12, -1), b.transform(x))


def test_2d_features():
    images = binary_batch(5 * 6, 6, seed=2).reshape(5, 6, 6)  # five 6 × 6 images
    with opu(seed=2) as a, opu(seed=2) as b:
        a.fit2d(images)
        y = a.transform(images)
        assert y.shape == (5, N_COMPONENTS)
        b.fit1d(n_features=36)
        assert same_bits(y, b.transform(images.reshape(5, 36)))  # flattened row by row
        assert a.transform(images[0]).shape == (N_COMPONENTS,)
        assert a.transform(images.reshape(1, 5, 6, 6)).shape == (1, 5, N_COMPONENTS)
        assert a.fit_transform2d(images).shape == (5, N_COMPONENTS)
        a.fit2d(n_features=(4, 9))
        assert a.transform(np.zeros((2, 4, 9), np.uint8)).shape == (2, N_COMPONENTS)


def test_bit_packed_input_equals_unpacked_input():
    x = binary_batch(9, 36, seed=5)
    packed = np.packbits(x, axis=-1)  # lightonml's convention: most significant bit first
    assert packed.shape == (9, 5)
    with opu(seed=6) as a, opu(seed=6) as b, opu(seed=6) as c:
        a.fit1d(x)
        b.fit1d(packed, n_features=36, packed=True)
        want = a.transform(x)
        assert same_bits(b.transform(packed), want)
        # 2-D features, packed: n_2d_features gives each vector's shape.
        assert same_bits(c.fit_transform2d(packed, packed=True, n_2d_features=(6, 6)), want)
    with opu() as o:
        o.fit1d(np.packbits(binary_batch(2, 32), axis=-1), packed=True)
        assert o.transform(np.packbits(binary_batch(2, 32), axis=-1)).shape == (2, N_COMPONENTS)
        with pytest.raises(speckle.InputError, match="bit-packed input must be uint8"):
            o.transform(np.zeros((2, 4), np.int64))
        with pytest.raises(speckle.InputError, match="n_features"):
            o.fit2d(np.zeros((2, 5), np.uint8), packed=True)


def test_binary_values_of_any_dtype_are_accepted_and_others_rejected():
    x = binary_batch(4, N_FEATURES, seed=8)
    with opu(seed=1) as a, opu(seed=1) as b, opu(seed=1) as c:
        for o in (a, b, c):
            o.fit1d(n_features=N_FEATURES)
        want = a.transform(x)
        assert same_bits(b.transform(x.astype(np.int64)), want)
        assert same_bits(c.transform(x.astype(np.float64)), want)
    with opu() as o:
        o.fit1d(n_features=N_FEATURES)
        bad = x.astype(np.float64).reshape(2, 2, N_FEATURES)
        bad[1, 0, 3] = 0.5
        with pytest.raises(speckle.InputError, match=r"^input is not binary: value 0.5 at index \(1, 0, 3\)$"):
            o.transform(bad)
        bad = x.reshape(2, 2, N_FEATURES).copy()
        bad[0, 1, 7] = 255
        with pytest.raises(ValueError, match=r"^input is not binary: value 255 at index \(0, 1, 7\)$"):
            o.transform(bad)
        with pytest.raises(speckle.InputError, match="each vector must have shape"):
            o.transform(np.zeros((3, N_FEATURES - 1), np.uint8))
        assert o.transform([[0, 1] * (N_FEATURES // 2)]).shape == (1, N_COMPONENTS)


def test_linear_transform_is_the_rescaled_projection():
    x = float_batch(5, 30, seed=9)
    with opu(seed=4) as o:
        o.fit1d(n_features=30)
        y = o.linear_transform(x)
        assert y.dtype == np.float32 and y.shape == (5, N_COMPONENTS)
        assert o.linear_transform(x[0]).shape == (N_COMPONENTS,)
    padded = np.zeros((5, N_FEATURES), np.float32)
    padded[:, :30] = x
    projector = speckle.open_projector("sim", N_FEATURES, N_COMPONENTS, seed=4)
    raw = projector.project(padded)
    scale = np.float32(np.sqrt(projector.info["entry_variance"] * 30))
    assert same_bits(y, raw / scale)


def test_linear_transform_rescaling_and_exact_conversion():
    x = float_batch(3, N_FEATURES, seed=10)
    results = {}
    for rescale in ("variance", "norm", "none", OutputRescaling.none):
        with opu(seed=2, device="digital", rescale=rescale) as o:
            o.fit1d(n_features=N_FEATURES)
            results[rescale] = o.linear_transform(x)
    np.testing.assert_allclose(results["variance"] * np.sqrt(N_FEATURES), results["none"], rtol=1e-5)
    np.testing.assert_allclose(results["norm"] * np.sqrt(N_COMPONENTS), results["none"], rtol=1e-5)
    assert same_bits(results["none"], results[OutputRescaling.none])
    with opu(device="digital") as o:
        o.fit1d(n_features=N_FEATURES)
        halves = np.full((2, N_FEATURES), 0.5)  # float64 values that float32 holds exactly
        assert same_bits(o.linear_transform(halves), o.linear_transform(halves.astype(np.float32)))
        with pytest.raises(speckle.InputError, match="float32 cannot hold exactly"):
            o.linear_transform(np.full((2, N_FEATURES), 0.1))
        with pytest.raises(speckle.InputError, match="input is not finite"):
            o.linear_transform(np.full((2, N_FEATURES), np.nan))
        with pytest.raises(speckle.InputError, match="rescale"):
            o.rescale = "loud"


def test_settings_and_device_properties():
    o = opu(open_at_init=False)
    assert o.n_components == N_COMPONENTS and o.max_n_features == N_FEATURES
    assert o.device.input_shape == (1140, 912)  # the simulated DMD's mirror grid, as lightonml
    assert not o.device.active
    with pytest.raises(speckle.InputError, match="closed"):
        o.fit1d(n_features=N_FEATURES)
        o.transform(np.zeros(N_FEATURES, np.uint8))
    with o:
        assert o.device.active
        o.fit1d(n_features=N_FEATURES)
        o.n_components = 10
        assert o.transform(np.zeros(N_FEATURES, np.uint8)).shape == (10,)
        assert o.device.info["output_dim"] == 10
        with pytest.raises(speckle.InputError, match="max_n_features"):
            o.fit1d(n_features=N_FEATURES + 1)
        o.max_n_features = 64
        o.fit1d(n_features=N_FEATURES + 1)
    assert not o.device.active  # opened by `with`, so closed by it
    with pytest.raises(speckle.InputError, match="closed"):
        o.transform(np.zeros(N_FEATURES + 1, np.uint8))
    assert "speckle version" in o.version()


def test_the_device_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("SPECKLE_DEVICE", "sim:ideal")
    monkeypatch.setenv("SPECKLE_SEED", "5")
    with opu() as o:
        y = o.fit_transform1d(binary_batch(2, N_FEATURES))
        assert y.dtype == np.float32 and o.spec == "sim:ideal"
    with opu(device="sim", seed=5) as o:  # arguments win over the environment
        assert o.fit_transform1d(binary_batch(2, N_FEATURES)).dtype == np.uint8
    monkeypatch.setenv("SPECKLE_SEED", "five")
    with pytest.raises(speckle.InputError, match="SPECKLE_SEED"):
        opu()


def test_unsupported_lightonml_options_are_refused():
    with pytest.raises(speckle.UnsupportedError, match="opu_device"):
        opu(opu_device=object())
    with pytest.raises(speckle.UnsupportedError, match="config"):
        opu(config_override={"a": 1})
    with pytest.raises(speckle.UnsupportedError, match="input_roi_strategy"):
        opu(input_roi_strategy="auto")
    with pytest.raises(speckle.InputError, match="unknown device spec"):
        opu(device="opu0")
    with opu() as o:
        with pytest.raises(speckle.UnsupportedError, match="overrides"):
            o.fit1d(n_features=8, input_roi=(0, 0))
        with pytest.raises(speckle.InputError, match="fit1d or fit2d"):
            o.transform(np.zeros(8, np.uint8))
    with opu(device="digital") as o:
        o.fit1d(n_features=8)
        with pytest.raises(speckle.UnsupportedError, match="linear-only"):
            o.transform(np.zeros(8, np.uint8))


class _Repeat:
    """A lightonml-style encoder/decoder pair: the encoder repeats each feature twice, the decoder
    halves the output."""

    def transform(self, x):
        return np.repeat(x, 2, axis=-1)


class _Halve:
    def transform(self, y):
        return y / 2


def test_encoder_and_decoder_classes():
    x = binary_batch(3, 20, seed=3)
    with opu(seed=7) as a, opu(seed=7) as b:
        a.fit1d(n_features=N_FEATURES)
        b.fit1d(n_features=N_FEATURES)
        got = a.transform(x, encoder_cls=_Repeat, decoder_cls=_Halve)
        want = b.transform(np.repeat(x, 2, axis=-1)) / 2
        np.testing.assert_array_equal(got, want)


@pytest.mark.torch
def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    x = binary_batch(4, N_FEATURES, seed=2)
    with opu(seed=3) as a, opu(seed=3) as b:
        a.fit1d(n_features=N_FEATURES)
        b.fit1d(n_features=N_FEATURES)
        y = a.transform(torch.from_numpy(x).reshape(2, 2, N_FEATURES))
        assert isinstance(y, torch.Tensor) and y.dtype == torch.uint8 and tuple(y.shape) == (2, 2, N_COMPONENTS)
        assert np.array_equal(y.reshape(4, -1).numpy(), b.transform(x))
        z = a.linear_transform(torch.randn(3, N_FEATURES, generator=torch.Generator().manual_seed(0)))
        assert isinstance(z, torch.Tensor) and z.dtype == torch.float32 and tuple(z.shape) == (3, N_COMPONENTS)
        with pytest.raises(speckle.InputError, match="not binary"):
            a.transform(torch.full((1, N_FEATURES), 3, dtype=torch.int64))


def test_the_migration_example_runs_and_its_optical_features_solve_xor():
    script = REPO / "examples" / "python" / "lightonml_migration.py"
    result = subprocess.run(
        [sys.executable, str(script), "--samples", "1200", "--components", "512", "--device", "sim"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    raw, optical = map(float, re.search(r"raw bits ([\d.]+), optical random features ([\d.]+)", result.stdout).groups())
    assert raw < 0.65 < 0.9 < optical, result.stdout
