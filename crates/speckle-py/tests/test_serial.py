"""The serial backend from Python, against `speckle emulate` on a pseudo-terminal: the same
frames as the simulated device it serves."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import speckle
from conftest import binary_batch, float_batch, same_bits

pytestmark = [
    pytest.mark.serial,
    pytest.mark.skipif(sys.platform == "win32", reason="speckle emulate needs pseudo-terminals"),
]

SEED = 7


@pytest.fixture
def emulator(speckle_bin, tmp_path):
    """`speckle emulate --link TMP/opu --seed 7`, running until the test ends; yields the SPEC."""
    link = tmp_path / "opu"
    log = open(tmp_path / "emulate.log", "w+")
    process = subprocess.Popen(
        [str(speckle_bin), "emulate", "--link", str(link), "--seed", str(SEED)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not link.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"speckle emulate did not create {link}: {log.read()}")
            time.sleep(0.05)
        yield f"serial:{link}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def test_serial_frames_match_the_simulated_device(emulator):
    x = binary_batch(20, 64, seed=11)
    with speckle.open_device(emulator, 64, 256) as device:
        assert device.info["kind"] == "serial"
        assert (device.info["input_dim"], device.info["output_dim"]) == (64, 256)
        got = device.transform(x)
        more = device.transform(x[:3])
        assert device.counters["frames"] == 23
    want_device = speckle.open_device("sim", 64, 256, seed=SEED)
    assert same_bits(got, want_device.transform(x))
    assert same_bits(more, want_device.transform(x[:3]))
    assert device.closed


def test_a_serial_readout_window_matches_the_simulated_device(emulator):
    x = binary_batch(12, 64, seed=13)
    want_device = speckle.open_device("sim", 64, 256, seed=SEED)
    want_device.set_readout_window(100)
    with speckle.open_device(emulator, 64, 256) as device:
        device.set_readout_window(100)
        got = device.transform(x)
        device.set_readout_window(None)
        device.seek_frame(0)
        whole = device.transform(x)
    want = want_device.transform(x)
    assert same_bits(got, want)
    assert same_bits(got[:, :100].copy(), whole[:, :100].copy())
    assert not got[:, 100:].any()


def test_serial_projection_matches_the_simulated_device(emulator):
    x = float_batch(6, 16, seed=12)
    with speckle.open_projector(emulator, 16, 40, seed=SEED) as projector:
        got = projector.project(x)
    want = speckle.open_projector("sim", 16, 40, seed=SEED).project(x)
    assert same_bits(got, want)


def test_serial_refuses_config_overrides(emulator):
    with pytest.raises(speckle.InputError, match="overrides apply to simulated devices only"):
        speckle.open_device(emulator, 8, 8, overrides={"camera.bits": 10})
