"""Throughput of `Device.transform` from Python against `speckle bench`, measured in one run.

    python crates/speckle-py/bench/transform_bench.py [--speckle PATH] [--seconds T] [--rounds R]

Measures on the device `sim`, the two sides one after the other in each of R rounds:

1. raw transform 1024 → 8192, batch 256: vectors/s from Python (random 0/1 uint8 input,
   uint8 frames out) and from `speckle bench --device sim --in 1024 --out 8192 --batch 256`,
   and their ratio;
2. the per-call overhead at batch 1: Python's time per call minus `speckle bench --batch 1`'s,
   at 1024 → 8192 and on a tiny 16 → 16 device where the device's own work is negligible.

Each figure is given twice: the median over rounds of the round's ratio (or difference), which
pairs measurements taken seconds apart, and the best of each side over all rounds, which is what
each side does when the machine leaves it alone. On a machine shared with other work the rounds
scatter; the spread is printed.

The `speckle` binary is PATH, else $SPECKLE_BIN, else `cargo build --release --bin speckle`.
Build the Python module in release mode too (`pip install ./crates/speckle-py`).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

import speckle

REPO = Path(__file__).resolve().parents[3]


def speckle_binary(given):
    if given:
        return given
    if os.environ.get("SPECKLE_BIN"):
        return os.environ["SPECKLE_BIN"]
    out = subprocess.run(
        ["cargo", "build", "--release", "--quiet", "--bin", "speckle", "--message-format=json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg["target"]["name"] == "speckle" and msg.get("executable"):
            return msg["executable"]
    sys.exit("cargo named no speckle executable")


def cli_vectors_per_s(binary, n_in, n_out, batch, seconds):
    out = subprocess.run(
        [binary, "bench", "--device", "sim", "--in", str(n_in), "--out", str(n_out),
         "--batch", str(batch), "--seconds", str(seconds), "--json"],
        capture_output=True, text=True, check=True,
    ).stdout
    return json.loads(out)["vectors_per_s"]


def python_vectors_per_s(device, x, seconds):
    device.transform(x)  # warm-up, as speckle bench makes one untimed call
    calls = 0
    start = time.perf_counter()
    while True:
        device.transform(x)
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * x.shape[0] / elapsed


def cpu_model():
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--speckle", help="path of the speckle binary (release build)")
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="rounds, each measuring both sides")
    args = parser.parse_args()
    binary = speckle_binary(args.speckle)
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()[0]

    cases = {
        "1024->8192 batch 256": (1024, 8192, 256),
        "1024->8192 batch 1": (1024, 8192, 1),
        "16->16 batch 1": (16, 16, 1),
    }
    results = {name: {"python": [], "cli": []} for name in cases}
    devices = {
        name: (speckle.open_device("sim", n_in, n_out, seed=0),
               (rng.random((batch, n_in)) < 0.5).astype(np.uint8))
        for name, (n_in, n_out, batch) in cases.items()
    }
    for _ in range(args.rounds):
        for name, (n_in, n_out, batch) in cases.items():
            results[name]["cli"].append(cli_vectors_per_s(binary, n_in, n_out, batch, args.seconds))
            device, x = devices[name]
            results[name]["python"].append(python_vectors_per_s(device, x, args.seconds))

    print(
        f"machine: {cpu_model()}, {os.cpu_count()} CPUs, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after; Python {platform.python_version()}, numpy {np.__version__}"
    )
    print(f"speckle binary: {binary}; {args.rounds} rounds of {args.seconds:g} s per side")
    r = results["1024->8192 batch 256"]
    ratios = [p / c for p, c in zip(r["python"], r["cli"])]
    best = max(r["python"]) / max(r["cli"])
    print(
        f"transform 1024 -> 8192, batch 256: Python {statistics.median(r['python']):.1f} vectors/s, "
        f"speckle bench {statistics.median(r['cli']):.1f} vectors/s (medians); ratio: median of rounds "
        f"{statistics.median(ratios):.3f} (rounds {min(ratios):.3f}..{max(ratios):.3f}), best vs best {best:.3f}"
    )
    for name in ("1024->8192 batch 1", "16->16 batch 1"):
        r = results[name]
        py_us = [1e6 / v for v in r["python"]]
        cli_us = [1e6 / v for v in r["cli"]]
        diffs = [p - c for p, c in zip(py_us, cli_us)]
        print(
            f"per call, {name}: Python {statistics.median(py_us):.1f} µs, speckle bench "
            f"{statistics.median(cli_us):.1f} µs (medians); overhead: median of rounds "
            f"{statistics.median(diffs):.1f} µs (rounds {min(diffs):.1f}..{max(diffs):.1f}), "
            f"best vs best {min(py_us) - min(cli_us):.1f} µs"
        )

if __name__ == "__main__":
    main()
