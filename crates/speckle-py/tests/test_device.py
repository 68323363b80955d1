"""speckle.Device and speckle.Projector from Python: shapes, dtypes, counters, the GIL."""

import threading
import time

import numpy as np
import pytest

import speckle
from conftest import binary_batch, float_batch, same_bits


def test_transform_shapes_dtypes_and_counters():
    device = speckle.open_device("sim", 32, 48, seed=1)
    info = device.info
    assert (device.input_dim, device.output_dim) == (32, 48)
    assert device.counters == {"frames": 0, "device_time_s": 0.0}
    y = device.transform(binary_batch(5, 32))
    assert y.shape == (5, 48) and y.dtype == np.uint8 and y.flags.c_contiguous and y.flags.writeable
    assert y.max() > 0
    y = device.transform(binary_batch(3, 32, seed=1))
    counters = device.counters
    assert counters["frames"] == 8
    assert counters["device_time_s"] == pytest.approx(8 * info["frame_time_us"] * 1e-6)
    empty = device.transform(np.zeros((0, 32), np.uint8))
    assert empty.shape == (0, 48) and empty.dtype == np.uint8
    assert device.counters["frames"] == 8
    assert "sim" in repr(device)


def test_same_seed_same_frames_and_another_seed_differs():
    x = binary_batch(4, 32)
    a = speckle.open_device("sim", 32, 64, seed=3).transform(x)
    b = speckle.open_device("sim", 32, 64, seed=3).transform(x)
    c = speckle.open_device("sim", 32, 64, seed=4).transform(x)
    assert same_bits(a, b)
    assert not np.array_equal(a, c)


def test_seek_frame_replays_the_same_noise():
    x = binary_batch(6, 32, seed=2)
    device = speckle.open_device("sim", 32, 64, seed=3)
    first = device.transform(x)
    later = device.transform(x)
    assert not np.array_equal(first, later), "the camera's noise follows the frame index"
    device.seek_frame(0)
    assert same_bits(device.transform(x), first)
    device.seek_frame(6)
    assert same_bits(device.transform(x), later)
    assert device.counters["frames"] == 24
    for bad in (-1, 2**64, True, 1.0, "0"):
        with pytest.raises(speckle.InputError, match="index"):
            device.seek_frame(bad)


@pytest.mark.parametrize("spec", ["sim", "sim:ideal"])
def test_a_readout_window_reads_its_pixels_and_zeros_past_it(spec):
    x = binary_batch(9, 32, seed=4)
    device = speckle.open_device(spec, 32, 300, seed=5)
    whole = device.transform(x)
    device.set_readout_window(200)
    device.seek_frame(0)
    windowed = device.transform(x)
    assert windowed.shape == whole.shape and windowed.dtype == whole.dtype
    assert same_bits(windowed[:, :200].copy(), whole[:, :200].copy())
    assert not windowed[:, 200:].any()
    device.set_readout_window(None)
    device.seek_frame(0)
    assert same_bits(device.transform(x), whole)
    for bad in (0, 301, -2, 2.5, True):
        with pytest.raises(speckle.InputError, match="pixels"):
            device.set_readout_window(bad)


def test_the_ideal_camera_gives_intensities_and_dark_frames_are_dark():
    device = speckle.open_device("sim:ideal", 16, 24)
    y = device.transform(np.vstack([np.zeros((1, 16), np.uint8), binary_batch(2, 16)]))
    assert y.dtype == np.float32
    assert np.all(y[0] == 0) and np.all(y[1:] >= 0) and y[1:].sum() > 0


def test_project_shapes_and_info():
    projector = speckle.open_projector("sim", 20, 30, seed=2, encoding="bitplane:3")
    info = projector.info
    assert info["input_dim"] == 20 and info["output_dim"] == 30
    assert info["encoding"] == "bitplane:3" and info["seed"] == 2 and info["spec"] == "sim"
    assert info["entry_variance"] > 0 and info["frames_per_vector"] == 4 * 3
    calibration = projector.counters["frames"]  # frames shown to calibrate, on opening
    y = projector.project(float_batch(7, 20))
    assert y.shape == (7, 30) and y.dtype == np.float32 and np.isfinite(y).all()
    assert projector.counters["frames"] - calibration == 7 * info["frames_per_vector"]
    assert projector.project(np.zeros((0, 20), np.float32)).shape == (0, 30)


def test_the_digital_projector_is_linear_and_costs_no_frames():
    projector = speckle.open_projector("digital", 12, 9, seed=5)
    x = float_batch(4, 12)
    y = projector.project(x)
    y2 = projector.project(2 * x)
    np.testing.assert_allclose(y2, 2 * y, rtol=1e-5, atol=1e-5)
    assert projector.info["encoding"] is None and projector.info["frames_per_vector"] == 0
    assert projector.counters == {"frames": 0, "device_time_s": 0.0}
    # A strided view is read as what it shows.
    wide = np.repeat(x, 2, axis=1)
    assert same_bits(projector.project(wide[:, ::2]), projector.project(x))


def test_the_optical_projection_approximates_a_linear_map():
    """With fine bit planes on the noise-free camera, project(x1 + x2) ≈ project(x1) + project(x2)
    (ternary encoding quantizes each vector to three levels, which this check would mistake for
    non-linearity)."""
    projector = speckle.open_projector("sim:ideal", 32, 256, seed=1, encoding="bitplane:8")
    x = float_batch(2, 32, seed=7)
    y = projector.project(np.vstack([x, x.sum(axis=0, keepdims=True)]))
    err = np.linalg.norm(y[2] - (y[0] + y[1])) / np.linalg.norm(y[2])
    assert err < 0.02


def _gil_free_iterations(work) -> int:
    """Iterations of a pure-Python loop in this thread while `work` runs in another."""
    started, done = threading.Event(), threading.Event()

    def run():
        started.set()
        work()
        done.set()

    thread = threading.Thread(target=run)
    thread.start()
    started.wait()
    time.sleep(0.005)  # let the worker enter the native call
    count = 0
    while not done.is_set():
        count += 1
    thread.join()
    return count


def test_the_gil_is_released_while_the_device_works():
    device = speckle.open_device("sim", 1024, 8192, seed=0)
    x = binary_batch(64, 1024)
    t0 = time.perf_counter()
    device.transform(x)
    call_s = time.perf_counter() - t0
    assert call_s > 0.01, "the call is too short to tell"
    count = _gil_free_iterations(lambda: device.transform(x))
    # With the GIL held for the whole call, this thread could not run at all meanwhile.
    assert count > 1000, count


def test_calls_from_several_threads_are_serialised():
    device = speckle.open_device("sim", 64, 128, seed=0)
    x = binary_batch(16, 64)
    errors = []

    def work():
        try:
            for _ in range(5):
                assert device.transform(x).shape == (16, 128)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert device.counters["frames"] == 4 * 5 * 16
