"""lightonml-style code running on speckle: optical random features for classification.

The code below is written against lightonml's OPU; the only change for speckle is the import.
It runs on speckle's simulated OPU (8-bit camera with shot and read noise) by default, or on any
device SPEC given by --device or the SPECKLE_DEVICE environment variable, e.g. hardware or
`speckle emulate` behind a serial port:

    python examples/python/lightonml_migration.py
    SPECKLE_DEVICE=serial:/dev/ttyACM0 python examples/python/lightonml_migration.py

Task: random binary vectors whose label is the XOR of their first two bits (the other bits are
noise). No linear classifier of the bits beats chance; the OPU's random features |Rx|² hold the
products x_i·x_j, so a ridge-regression classifier on them solves it, as in lightonml's kernel
examples. All data is made here.
"""

import argparse
import os

import numpy as np

# from lightonml import OPU           # lightonml
from speckle.lightonml import OPU  # speckle: the only change


def make_data(n_samples: int, n_features: int, rng: np.random.Generator):
    X = (rng.random((n_samples, n_features)) < 0.5).astype(np.uint8)
    y = X[:, 0] ^ X[:, 1]
    return X, y


def ridge_accuracy(train, y_train, test, y_test, alpha=1e-1):
    """Accuracy of ridge regression on ±1 targets, features standardised on the train set."""
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-6
    a, b = (train - mean) / std, (test - mean) / std
    a = np.hstack([a, np.ones((len(a), 1))])
    b = np.hstack([b, np.ones((len(b), 1))])
    w = np.linalg.solve(a.T @ a + alpha * np.eye(a.shape[1]), a.T @ (2.0 * y_train - 1))
    return float(((b @ w > 0) == y_test).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--features", type=int, default=32)
    parser.add_argument("--components", type=int, default=1024)
    parser.add_argument("--device", default=os.environ.get("SPECKLE_DEVICE", "sim"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    X, y = make_data(args.samples, args.features, rng)
    split = args.samples * 3 // 4

    # lightonml code: an OPU as a context manager, fit1d on the batch, then transform.
    with OPU(n_components=args.components, max_n_features=args.features, device=args.device) as opu:
        opu.fit1d(X[:split])
        train_features = opu.transform(X[:split])
        test_features = opu.transform(X[split:])
        # Single vectors and any leading batch shape work as in lightonml.
        one = opu.transform(X[0])
        grid = opu.transform(X[:6].reshape(2, 3, -1))
        linear = opu.linear_transform(X[:4].astype(np.float32))
        print(f"device {opu.spec}: {opu.device.info['description']}")
        print(
            f"transform: {X[:split].shape} {X.dtype} -> {train_features.shape} {train_features.dtype}; "
            f"one vector -> {one.shape}; batch {X[:6].reshape(2, 3, -1).shape} -> {grid.shape}; "
            f"linear_transform -> {linear.shape} {linear.dtype}"
        )

    raw = ridge_accuracy(X[:split].astype(float), y[:split], X[split:].astype(float), y[split:])
    optical = ridge_accuracy(
        train_features.astype(float), y[:split], test_features.astype(float), y[split:]
    )
    print(f"test accuracy (XOR of two bits): raw bits {raw:.3f}, optical random features {optical:.3f}")


if __name__ == "__main__":
    main()
