"""Shared fixtures: the repository root, the `speckle` command line and its runner.

The CLI comparisons need the `speckle` binary of this checkout. It is the file named by the
SPECKLE_BIN environment variable when set (.ci/run sets it to the binary `cargo test` has just
built); otherwise `cargo build --bin speckle` builds it (a no-op when it is up to date) and the
path is read from cargo's JSON messages, so CARGO_TARGET_DIR and profiles are respected.
"""

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="session")
def speckle_bin() -> Path:
    given = os.environ.get("SPECKLE_BIN")
    if given:
        path = Path(given)
        if not path.is_file():
            pytest.fail(f"SPECKLE_BIN={given} is not a file")
        return path
    cargo = shutil.which("cargo")
    if cargo is None:
        pytest.fail("the CLI comparisons need cargo (to build the speckle binary) or SPECKLE_BIN")
    result = subprocess.run(
        [cargo, "build", "--quiet", "--bin", "speckle", "--message-format=json"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"cargo build --bin speckle failed:\n{result.stderr[-4000:]}")
    executable = None
    for line in result.stdout.splitlines():
        message = json.loads(line)
        if message.get("reason") == "compiler-artifact" and message["target"]["name"] == "speckle":
            executable = message.get("executable") or executable
    if executable is None:
        pytest.fail("cargo build --bin speckle named no executable")
    return Path(executable)


class Cli:
    """Runs `speckle` subcommands."""

    def __init__(self, binary: Path, tmp: Path):
        self.binary = binary
        self.tmp = tmp

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run(
            [str(self.binary), *args], capture_output=True, text=True, timeout=300
        )
        if ok and result.returncode != 0:
            raise AssertionError(f"speckle {' '.join(args)} failed: {result.stderr}")
        return result

    def error(self, *args: str) -> str:
        """The one-line message of a failing command, without its `error: ` prefix."""
        result = self.run(*args, ok=False)
        assert result.returncode == 1, result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        return lines[0][len("error: "):]

    def transform(self, x: np.ndarray, *args: str) -> np.ndarray:
        """`speckle transform ARGS` on x, through .npy files."""
        src = self.tmp / "cli-x.npy"
        dst = self.tmp / "cli-y.npy"
        np.save(src, x)
        self.run("transform", "--input", str(src), "--output", str(dst), *args)
        return np.load(dst)


@pytest.fixture
def cli(speckle_bin: Path, tmp_path: Path) -> Cli:
    return Cli(speckle_bin, tmp_path)


def binary_batch(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((rows, cols)) < 0.5).astype(np.uint8)


def float_batch(rows: int, cols: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and bytes (NaN-safe, -0.0 != 0.0)."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
