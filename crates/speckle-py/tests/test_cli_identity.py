"""The same SPEC, seed and overrides give bit-identical output from Python and from
`speckle transform`, and the same fields as `speckle info --json`."""

import json

import numpy as np
import pytest

import speckle
from conftest import binary_batch, float_batch, same_bits


@pytest.mark.parametrize(
    "spec, overrides, dtype",
    [
        ("sim", [], np.uint8),
        ("sim", ["camera.bits=12"], np.uint16),
        ("sim:ideal", [], np.float32),
    ],
)
def test_raw_frames_match_the_cli(cli, spec, overrides, dtype):
    x = binary_batch(40, 48, seed=1)
    sets = [a for o in overrides for a in ("--set", o)]
    want = cli.transform(x, "--device", spec, "--seed", "5", "--out-dim", "96", *sets)
    device = speckle.open_device(spec, 48, 96, seed=5, overrides=overrides)
    got = device.transform(x)
    assert want.dtype == dtype
    assert same_bits(got, want)
    assert device.dtype == np.dtype(dtype).name


def test_bool_and_strided_input_match_the_cli(cli):
    x = binary_batch(12, 40, seed=2)
    want = cli.transform(x, "--device", "sim", "--seed", "9", "--out-dim", "64")
    assert same_bits(speckle.open_device("sim", 40, 64, seed=9).transform(x.astype(bool)), want)
    fortran = np.asfortranarray(x)
    assert not fortran.flags.c_contiguous
    assert same_bits(speckle.open_device("sim", 40, 64, seed=9).transform(fortran), want)
    wide = np.zeros((12, 80), dtype=np.uint8)
    wide[:, ::2] = x
    strided = wide[:, ::2]
    assert not strided.flags.c_contiguous
    assert same_bits(speckle.open_device("sim", 40, 64, seed=9).transform(strided), want)


@pytest.mark.parametrize(
    "spec, encoding",
    [("sim", "ternary"), ("sim", "bitplane:2"), ("sim:ideal", "ternary:0.1"), ("digital", None)],
)
def test_linear_projections_match_the_cli(cli, spec, encoding):
    # More rows than one projector call takes (LINEAR_CHUNK_ROWS), as the CLI splits them.
    rows = speckle.LINEAR_CHUNK_ROWS + 20
    x = float_batch(rows, 24, seed=3)
    args = ["--linear", "--device", spec, "--seed", "2", "--out-dim", "40"]
    if encoding:
        args += ["--encoding", encoding]
    want = cli.transform(x, *args)
    projector = speckle.open_projector(spec, 24, 40, seed=2, encoding=encoding)
    got = projector.project(x)
    assert same_bits(got, want)
    assert projector.info["encoding"] == (None if spec == "digital" else encoding)


@pytest.mark.parametrize(
    "spec, overrides", [("sim", {}), ("sim:ideal", {}), ("sim", {"camera.bits": 10})]
)
def test_info_has_the_fields_of_speckle_info_json(cli, spec, overrides):
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    want = json.loads(
        cli.run("info", "--json", "--device", spec, "--in", "64", "--out", "128", "--seed", "4", *sets).stdout
    )
    got = speckle.open_device(spec, 64, 128, seed=4, overrides=overrides).info
    assert got == want
