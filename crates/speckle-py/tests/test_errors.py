"""Bad input raises the right exception with the command line's one-line message; nothing aborts
the interpreter."""

import numpy as np
import pytest

import speckle
from conftest import binary_batch, float_batch


@pytest.fixture(scope="module")
def device():
    return speckle.open_device("sim", 16, 32, seed=0)


@pytest.fixture(scope="module")
def projector():
    return speckle.open_projector("sim", 16, 32, seed=0)


def test_exception_classes():
    assert issubclass(speckle.InputError, speckle.SpeckleError)
    assert issubclass(speckle.InputError, ValueError)
    assert issubclass(speckle.UnsupportedError, ValueError)
    assert issubclass(speckle.LinkError, OSError)
    assert issubclass(speckle.LinkTimeoutError, speckle.LinkError)
    assert issubclass(speckle.LinkTimeoutError, TimeoutError)
    assert not issubclass(speckle.DeviceError, ValueError)
    assert speckle.InputError.__module__ == "speckle"
    assert speckle.InputError("by hand").kind == "invalid input"


def test_non_binary_input_matches_the_cli(cli, device):
    x = binary_batch(3, 16)
    x[1, 3] = 2
    with pytest.raises(speckle.InputError) as e:
        device.transform(x)
    assert str(e.value) == "input is not binary: value 2 at row 1, column 3"
    assert e.value.kind == "invalid input"
    path = cli.tmp / "x.npy"
    np.save(path, x)
    assert cli.error("transform", "--input", str(path), "--output", str(cli.tmp / "y.npy")) == f"{path}: {e.value}"


def test_a_bool_array_with_a_byte_other_than_0_or_1_is_not_binary(device):
    x = binary_batch(2, 16)
    x[0, 5] = 7
    with pytest.raises(speckle.InputError, match=r"^input is not binary: value 7 at row 0, column 5$"):
        device.transform(x.view(np.bool_))


def test_nan_matches_the_cli(cli, projector):
    x = float_batch(2, 16)
    x[1, 4] = np.nan
    with pytest.raises(ValueError) as e:
        projector.project(x)
    assert str(e.value) == "input is not finite: NaN at row 1, column 4"
    path = cli.tmp / "x.npy"
    np.save(path, x)
    message = cli.error("transform", "--linear", "--input", str(path), "--output", str(cli.tmp / "y.npy"))
    assert message == f"{path}: {e.value}"
    x[1, 4] = -np.inf
    with pytest.raises(speckle.InputError, match=r"^input is not finite: -inf at row 1, column 4$"):
        projector.project(x)


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 16), np.float32), "x has dtype float32; transform needs uint8 or bool values 0/1 (float32 input goes through a projector: speckle.open_projector)"),
        (np.zeros((2, 16), np.int64), "x has dtype int64; transform needs uint8 or bool values 0/1 (float32 input goes through a projector: speckle.open_projector)"),
        (np.zeros(16, np.uint8), "x has 1 dimension(s) (shape [16]); expected a 2-D array (batch × features)"),
        (np.zeros((2, 2, 16), np.uint8), "x has 3 dimension(s) (shape [2, 2, 16]); expected a 2-D array (batch × features)"),
        (np.zeros((2, 15), np.uint8), "x has 15 features (shape [2, 15]) but the device was opened with input_dim 16"),
        ([[0, 1] * 8], "x must be a 2-D numpy array (numpy.uint8 or bool), got list"),
    ],
)
def test_bad_raw_arrays(device, x, message):
    with pytest.raises(speckle.InputError) as e:
        device.transform(x)
    assert str(e.value) == message


@pytest.mark.parametrize(
    "x, message",
    [
        (np.zeros((2, 16), np.float64), "x has dtype float64; project needs float32 values (convert explicitly, e.g. x.astype(numpy.float32))"),
        (np.zeros((2, 16), ">f4"), "x has dtype >f4; project needs float32 values (convert explicitly, e.g. x.astype(numpy.float32))"),
        (np.zeros((2, 16), np.uint8), "x has dtype uint8; project needs float32 values (convert explicitly, e.g. x.astype(numpy.float32))"),
        (np.zeros((3,), np.float32), "x has 1 dimension(s) (shape [3]); expected a 2-D array (batch × features)"),
        ("x", "x must be a 2-D numpy array (numpy.float32), got str"),
    ],
)
def test_bad_float_arrays(projector, x, message):
    with pytest.raises(ValueError) as e:
        projector.project(x)
    assert str(e.value) == message


def test_a_dtype_mismatch_matches_the_cli(cli, device):
    x = np.zeros((2, 16), np.float32)
    path = cli.tmp / "x.npy"
    np.save(path, x)
    message = cli.error("transform", "--input", str(path), "--output", str(cli.tmp / "y.npy"))
    assert message.startswith(f"{path} has dtype float32; raw mode needs uint8 or bool values 0/1")


def test_a_missing_serial_port_is_a_link_error(cli):
    with pytest.raises(speckle.LinkError) as e:
        speckle.open_device("serial:/nonexistent/speckle-port", 16, 32)
    assert isinstance(e.value, OSError)
    message = str(e.value)
    assert message.startswith(
        "cannot open device serial:/nonexistent/speckle-port: cannot open serial port /nonexistent/speckle-port: "
    )
    assert "\n" not in message
    x = cli.tmp / "x.npy"
    np.save(x, binary_batch(1, 16))
    # The CLI prints the same line (and repeats the operating system's cause once more).
    cli_message = cli.error("transform", "--device", "serial:/nonexistent/speckle-port", "--input", str(x), "--output", str(cli.tmp / "y.npy"))
    assert cli_message.startswith(message)
    with pytest.raises(speckle.LinkError):
        speckle.open_projector("serial:/nonexistent/speckle-port", 16, 32)


def test_config_errors_match_the_cli(cli):
    x = cli.tmp / "x.npy"
    np.save(x, binary_batch(1, 16))
    out = str(cli.tmp / "y.npy")
    for args, kwargs in [
        (["--set", "camera.bitz=3"], {"overrides": {"camera.bitz": 3}}),
        (["--set", "camera.bitz=3"], {"overrides": ["camera.bitz=3"]}),
        (["--set", "camera.bits=40"], {"overrides": {"camera.bits": 40}}),
        (["--device", "sim:nope"], {"spec": "sim:nope"}),
        (["--device", "sim:/nonexistent/dev.toml"], {"spec": "sim:/nonexistent/dev.toml"}),
    ]:
        want = cli.error("transform", "--input", str(x), "--output", out, *args)
        with pytest.raises(speckle.SpeckleError) as e:
            speckle.open_device(kwargs.get("spec", "sim"), 16, 16, overrides=kwargs.get("overrides"))
        assert str(e.value) == want


def test_spec_and_encoding_errors_match_the_cli(cli):
    x = cli.tmp / "x.npy"
    np.save(x, float_batch(1, 16))
    out = str(cli.tmp / "y.npy")
    want = cli.run("transform", "--device", "sims", "--input", str(x), "--output", out, ok=False).stderr
    with pytest.raises(speckle.InputError) as e:
        speckle.open_device("sims", 16, 16)
    assert str(e.value) == "invalid value 'sims' for spec: unknown device spec 'sims': expected sim, sim:PRESET, sim:PATH, digital or serial:PATH[@BAUD]"
    assert str(e.value).split(": ", 1)[1] in want
    want = cli.run("transform", "--linear", "--encoding", "bitplane:0", "--input", str(x), "--output", out, ok=False).stderr
    with pytest.raises(speckle.InputError) as e:
        speckle.open_projector("sim", 16, 16, encoding="bitplane:0")
    assert str(e.value).split(": ", 1)[1] in want


def test_digital_is_linear_only():
    with pytest.raises(speckle.UnsupportedError, match="digital is a linear-only projector"):
        speckle.open_device("digital", 16, 16)
    with pytest.raises(speckle.InputError, match="has no config keys to override"):
        speckle.open_projector("digital", 16, 16, overrides={"camera.bits": 10})


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"input_dim": 0}, "input_dim must be at least 1, got 0"),
        ({"input_dim": -3}, "input_dim must be at least 1, got -3"),
        ({"output_dim": 2.0}, "output_dim must be an integer, got float"),
        ({"output_dim": True}, "output_dim must be an integer, got bool"),
        ({"input_dim": "16"}, "input_dim must be an integer, got str"),
        ({"seed": -1}, "seed must be an integer in 0..=2^64-1, got -1"),
        ({"seed": 2**64}, "seed must be an integer in 0..=2^64-1, got 18446744073709551616"),
        ({"seed": 2**200}, None),
        ({"spec": 3}, "spec must be a str, got int"),
        ({"overrides": "camera.bits=10"}, "overrides must be a dict of 'section.key' to values or a list of 'section.key=value' strings, got str"),
        ({"overrides": {"camera.bits": object()}}, "override camera.bits: a value of type object is not a config value (bool, int, float, str, list or dict)"),
        ({"overrides": ["camera.bits"]}, "--set camera.bits: expected section.key=value"),
    ],
)
def test_bad_arguments(kwargs, message):
    args = {"spec": "sim", "input_dim": 16, "output_dim": 16, **kwargs}
    with pytest.raises(speckle.InputError) as e:
        speckle.open_device(**args)
    if message is not None:
        assert str(e.value) == message
    assert "\n" not in str(e.value)


def test_numpy_integers_are_dimensions():
    device = speckle.open_device("sim", np.int64(16), np.uint16(8), seed=np.int32(3))
    assert (device.input_dim, device.output_dim, device.info["seed"]) == (16, 8, 3)


def test_a_string_override_stays_a_string():
    # "10" is not silently read as the number 10: the config rejects a string bit depth.
    with pytest.raises(speckle.InputError, match="bits"):
        speckle.open_device("sim", 16, 16, overrides={"camera.bits": "10"})
    assert speckle.open_device("sim", 16, 16, overrides={"camera": {"bits": 10}}).dtype == "uint16"


def test_closed_objects_refuse_work():
    device = speckle.open_device("sim", 16, 16)
    with device as d:
        assert d is device and not d.closed
    assert device.closed
    with pytest.raises(speckle.InputError, match="^the device is closed$"):
        device.transform(binary_batch(1, 16))
    with pytest.raises(speckle.InputError, match="^the device is closed$"):
        device.counters
    device.close()  # closing twice is fine
    projector = speckle.open_projector("digital", 4, 4)
    projector.close()
    with pytest.raises(speckle.InputError, match="^the projector is closed$"):
        projector.project(float_batch(1, 4))
