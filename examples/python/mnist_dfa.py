#!/usr/bin/env python3
"""DFA on MNIST with speckle.torch: 784-800-800-800-10 tanh, the seed paper's rule, Adam lr 5e-4
with cosine decay, batch 128, standardized inputs, feedback B·e computed by a speckle projector
(default ``sim``: the simulated 8-bit OPU, ternary error encoding), i.e. what ``speckle train``
runs with no ``--config``.

    python examples/python/mnist_dfa.py --epochs 30                  # the full run, through sim
    python examples/python/mnist_dfa.py --projector torch --epochs 1 --train-subset 2000
    python examples/python/mnist_dfa.py --bench 3 --projector torch  # speckle.torch vs plain DFA

``--projector`` takes a speckle device SPEC (``sim``, ``sim:ideal``, ``digital``,
``serial:PATH``, ...; needs the native module) or ``torch`` (speckle.torch.DigitalProjector, a
Gaussian matrix in PyTorch, no native module). ``--json`` prints one JSON object (final accuracy,
per-layer alignment, per-epoch history) on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from speckle.torch import DFA, DFALayer, DigitalProjector, alignment, open_projector

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA = REPO / "data" / "mnist"


# -- data -------------------------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An IDX file (optionally gzipped) as a numpy array of its declared shape."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an IDX file")
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if raw[2] not in dtypes:
        raise ValueError(f"{path}: unknown IDX type 0x{raw[2]:02x}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=dtypes[raw[2]], offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        raise ValueError(f"{path}: {data.size} values, the header declares {dims}")
    return data.reshape(dims)


def find_file(data_dir: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (data_dir / name).exists():
            return data_dir / name
    raise FileNotFoundError(f"{data_dir}: no {stem}[.gz] (MNIST in IDX format)")


def load_mnist(data_dir: Path, train_subset: Optional[int] = None,
               test_subset: Optional[int] = None, standardize: bool = True
               ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """MNIST as ``speckle train`` prepares it: pixels / 255, the first N images of each split,
    then (x − mean) / std with the mean and std over all pixels of the training images used.
    Images are (n, 784) float32, labels int64."""
    data_dir = Path(data_dir)
    xs, ys = [], []
    for prefix, subset in (("train", train_subset), ("t10k", test_subset)):
        x = read_idx(find_file(data_dir, f"{prefix}-images-idx3-ubyte"))
        y = read_idx(find_file(data_dir, f"{prefix}-labels-idx1-ubyte"))
        if subset is not None:
            x, y = x[:subset], y[:subset]
        xs.append(x.reshape(len(x), -1).astype(np.float32) / np.float32(255.0))
        ys.append(y.astype(np.int64))
    if standardize:
        mean = float(xs[0].astype(np.float64).mean())
        std = max(float(xs[0].astype(np.float64).std()), 1e-12)
        xs = [((x - np.float32(mean)) / np.float32(std)).astype(np.float32) for x in xs]
    return (torch.from_numpy(xs[0]), torch.from_numpy(ys[0]), torch.from_numpy(xs[1]),
            torch.from_numpy(ys[1]))


# -- model ------------------------------------------------------------------------------------
class MLP(nn.Module):
    """Linear → tanh → DFALayer per hidden block, then Linear → DFA. PyTorch's default Linear
    initialization, U(±1/sqrt(fan_in)) for weights and biases (``init = "pytorch"``)."""

    def __init__(self, sizes: Sequence[int], projector, *, seed: int = 0,
                 encoding: str = "ternary", overrides=None, no_training: bool = False):
        super().__init__()
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-2], sizes[1:-1]))
        self.points = nn.ModuleList(DFALayer(f"layer{i + 1}") for i in range(len(sizes) - 2))
        self.out = nn.Linear(sizes[-2], sizes[-1])
        self.dfa = DFA(list(self.points), projector, seed=seed, encoding=encoding,
                       overrides=overrides, no_training=no_training)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for lin, point in zip(self.hidden, self.points):
            x = point(torch.tanh(lin(x)))
        return self.dfa(self.out(x))


def make_projector(spec: str, classes: int, width: int, seed: int, encoding: str,
                   overrides: Optional[List[str]]):
    """The projector object for ``spec`` (opened now, so that its errors show before training)."""
    return open_projector(spec, classes, width, seed=seed, encoding=encoding,
                          overrides=overrides or None)


def cosine_lambda(total_steps: int):
    """speckle's cosine schedule: lr · (1 + cos(π·t/T)) / 2 for step t of T (no warm-up)."""
    total = max(total_steps, 1)
    return lambda t: 0.5 * (1.0 + math.cos(math.pi * min(t, total - 1) / total))


def make_optimizer(model, lr: float, total_steps: int):
    """Adam (speckle's defaults) with the cosine schedule stepped every batch; ``model`` is a
    module or an iterable of parameters."""
    params = model.parameters() if isinstance(model, nn.Module) else model
    opt = torch.optim.Adam(params, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, cosine_lambda(total_steps))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


def train_epoch(model: nn.Module, opt, sched, x: torch.Tensor, y: torch.Tensor, batch: int,
                order: torch.Tensor, step_times: Optional[List[float]] = None
                ) -> Tuple[float, float]:
    """One pass in ``order``; returns (mean loss, accuracy) measured in the forward passes.
    ``step_times`` collects each step's wall time."""
    model.train()
    loss_sum, correct = 0.0, 0
    t = time.perf_counter()
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        xb, yb = x[idx], y[idx]
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += loss.item() * len(idx)
        correct += int((logits.argmax(1) == yb).sum())
        if step_times is not None:
            now = time.perf_counter()
            step_times.append(now - t)
            t = now
    return loss_sum / len(order), correct / len(order)


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, chunk: int = 1024
             ) -> Tuple[float, float]:
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), chunk):
        logits = model(x[start:start + chunk])
        yb = y[start:start + chunk]
        loss_sum += float(F.cross_entropy(logits, yb, reduction="sum"))
        correct += int((logits.argmax(1) == yb).sum())
    return loss_sum / len(x), correct / len(x)


def fmt_alignment(al) -> str:
    return " / ".join(f"{a.cosine_mean:.3f} ± {a.cosine_std:.3f}" for a in al)


def projector_description(p) -> Optional[Dict]:
    info = getattr(p, "info", None)
    if callable(info):
        info = info()
    if info is None:
        return None
    if isinstance(info, dict):
        return {k: v for k, v in info.items() if isinstance(v, (str, int, float, bool, type(None)))}
    out = {}
    for k in dir(info):
        if not k.startswith("_"):
            v = getattr(info, k, None)
            if isinstance(v, (str, int, float, bool, type(None))):
                out[k] = v
    return out or {"repr": repr(info)}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model}, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


# -- the plain DFA reference for --bench ------------------------------------------------------
class PlainDFA:
    """A straightforward PyTorch DFA step with the same rule and no speckle.torch: block inputs
    detached, e = softmax − onehot, B·e with one matrix product, the signals injected with
    ``torch.autograd.backward``."""

    def __init__(self, model: MLP, matrix: torch.Tensor):
        self.model = model
        self.matrix = matrix

    def step(self, xb: torch.Tensor, yb: torch.Tensor, opt) -> Tuple[torch.Tensor, torch.Tensor]:
        m = self.model
        h, hs = xb, []
        for lin in m.hidden:
            h = torch.tanh(lin(h.detach()))
            hs.append(h)
        logits = m.out(h.detach())
        loss = F.cross_entropy(logits, yb)
        with torch.no_grad():
            e = torch.softmax(logits, 1)
            e[torch.arange(len(yb)), yb] -= 1.0
            proj = e @ self.matrix
            c = logits.shape[1]
            sig = [proj[:, :hh.shape[1]] * (1.0 / math.sqrt(c * hh.shape[1])) for hh in hs]
        opt.zero_grad(set_to_none=True)
        torch.autograd.backward([loss] + hs, [None] + sig)
        opt.step()
        return logits, loss


class NumpyOnly:
    """Hides ``project_torch``: the projector is reached through ``project(numpy)``, as a native
    speckle projector is."""

    def __init__(self, inner):
        self.inner = inner

    @property
    def info(self):
        return self.inner.info

    def project(self, e: np.ndarray) -> np.ndarray:
        return self.inner.project(e)


def bench(args, x: torch.Tensor, y: torch.Tensor) -> Dict:
    """Median epoch time (wall and process CPU) and median step time of speckle.torch (the
    given projector, and with ``--projector torch`` the same projector through its numpy
    interface) against the plain PyTorch DFA step, from the same initial weights, on the same
    batches; the variants' epochs are interleaved, in an order rotated every epoch."""
    sizes = [x.shape[1]] + args.hidden + [10]
    width = max(args.hidden)
    steps = args.bench * math.ceil(len(x) / args.batch_size)
    variants = {}
    torch.manual_seed(args.seed)
    proj = make_projector(args.projector, 10, width, args.feedback_seed, args.encoding, args.set)
    variants[f"speckle.torch, projector {args.projector}"] = MLP(sizes, proj)
    if args.projector == "torch":
        torch.manual_seed(args.seed)
        variants["speckle.torch, projector torch via project(numpy)"] = MLP(
            sizes, NumpyOnly(DigitalProjector(10, width, seed=args.feedback_seed)))
    torch.manual_seed(args.seed)
    plain_model = MLP(sizes, "torch")
    plain = PlainDFA(plain_model, DigitalProjector(10, width, seed=args.feedback_seed).matrix)
    opts = {k: make_optimizer(m, args.lr, steps) for k, m in variants.items()}
    plain_opt, plain_sched = make_optimizer(plain_model, args.lr, steps)
    names = list(variants) + ["plain PyTorch DFA"]
    times: Dict[str, List[float]] = {k: [] for k in names}
    cpu: Dict[str, List[float]] = {k: [] for k in names}

    steps_s: Dict[str, List[float]] = {k: [] for k in names}

    def plain_epoch(order, step_times):
        plain_model.train()
        loss_sum, correct = 0.0, 0
        t = time.perf_counter()
        for start in range(0, len(order), args.batch_size):
            idx = order[start:start + args.batch_size]
            xb, yb = x[idx], y[idx]
            logits, loss = plain.step(xb, yb, plain_opt)
            plain_sched.step()
            loss_sum += loss.item() * len(idx)  # the same bookkeeping as train_epoch
            correct += int((logits.argmax(1) == yb).sum())
            now = time.perf_counter()
            step_times.append(now - t)
            t = now

    for epoch in range(args.bench):
        order = epoch_order(len(x), args.seed, epoch)
        k = epoch % len(names)  # rotate the order so that no variant always runs first
        for name in names[k:] + names[:k]:
            t0, c0 = time.perf_counter(), time.process_time()
            if name in variants:
                train_epoch(variants[name], *opts[name], x, y, args.batch_size, order,
                            steps_s[name])
            else:
                plain_epoch(order, steps_s[name])
            times[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
        log("bench epoch {}: ".format(epoch + 1)
            + ", ".join(f"{k} {times[k][-1]:.2f} s (cpu {cpu[k][-1]:.2f} s)" for k in names))
    medians = {k: statistics.median(v) for k, v in times.items()}
    cpu_medians = {k: statistics.median(v) for k, v in cpu.items()}
    step_medians = {k: statistics.median(v) for k, v in steps_s.items()}
    base, cpu_base = medians["plain PyTorch DFA"], cpu_medians["plain PyTorch DFA"]
    step_base = step_medians["plain PyTorch DFA"]
    result = {
        "bench_epochs": args.bench,
        "train_samples": len(x),
        "machine": machine(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "epoch_seconds": times,
        "epoch_cpu_seconds": cpu,
        "median_seconds": medians,
        "median_cpu_seconds": cpu_medians,
        "ratio_to_plain": {k: v / base for k, v in medians.items()},
        "cpu_ratio_to_plain": {k: v / cpu_base for k, v in cpu_medians.items()},
        "median_step_seconds": step_medians,
        "step_ratio_to_plain": {k: v / step_base for k, v in step_medians.items()},
    }
    for k in names:
        log(f"median epoch: {k}: {medians[k]:.3f} s wall ({medians[k] / base:.3f}× plain), "
            f"{cpu_medians[k]:.3f} s cpu ({cpu_medians[k] / cpu_base:.3f}× plain); median step "
            f"{1e3 * step_medians[k]:.2f} ms ({step_medians[k] / step_base:.3f}× plain)")
    return result


# -- main -------------------------------------------------------------------------------------
def common_parser(doc: str, epochs: int) -> argparse.ArgumentParser:
    """The options both examples share."""
    p = argparse.ArgumentParser(description=doc.strip().split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--train-subset", type=int, default=None, help="first N training images")
    p.add_argument("--test-subset", type=int, default=None, help="first N test images")
    p.add_argument("--projector", default="sim",
                   help="speckle device SPEC (sim, sim:ideal, digital, serial:PATH, ...; needs "
                        "the native module) or 'torch' (pure-PyTorch Gaussian projector)")
    p.add_argument("--encoding", default="ternary", help="error encoding: ternary, levels:K, bitplane:P, ... (see the README)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="device override of a simulated device (camera.bits=6), repeatable")
    p.add_argument("--feedback-seed", type=int, default=0, help="the projector's seed")
    p.add_argument("--seed", type=int, default=0, help="weights and shuffling")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (cosine decay)")
    p.add_argument("--alignment-batch", type=int, default=128,
                   help="alignment on the first N test images, once per epoch")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    return p


def parse_args(argv: Optional[Sequence[str]] = None):
    p = common_parser(__doc__, epochs=30)
    p.add_argument("--algorithm", choices=["dfa", "bp"], default="dfa",
                   help="bp: the DFA wrapper passes through (alignment still measured)")
    p.add_argument("--hidden", type=lambda s: [int(v) for v in s.split(",")],
                   default=[800, 800, 800], help="hidden widths, comma-separated")
    p.add_argument("--bench", type=int, default=0, metavar="EPOCHS",
                   help="time EPOCHS epochs of speckle.torch and of a plain PyTorch DFA instead "
                        "of training; report the medians")
    return p.parse_args(argv)


def run(args) -> Dict:
    torch.set_num_threads(args.threads)
    x, y, xt, yt = load_mnist(args.data_dir, args.train_subset, args.test_subset)
    if args.bench:
        return bench(args, x, y)
    sizes = [x.shape[1]] + args.hidden + [10]
    torch.manual_seed(args.seed)
    projector = make_projector(args.projector, 10, max(args.hidden), args.feedback_seed,
                               args.encoding, args.set)
    model = MLP(sizes, projector, no_training=args.algorithm == "bp")
    steps_per_epoch = math.ceil(len(x) / args.batch_size)
    opt, sched = make_optimizer(model, args.lr, args.epochs * steps_per_epoch)
    ax, ay = xt[:args.alignment_batch], yt[:args.alignment_batch]
    history = []
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        train_loss, train_acc = train_epoch(model, opt, sched, x, y, args.batch_size,
                                            epoch_order(len(x), args.seed, epoch))
        seconds = time.perf_counter() - t0
        test_loss, test_acc = evaluate(model, xt, yt)
        al = alignment(model, model.dfa, ax, ay)
        history.append({"epoch": epoch + 1, "train_loss": train_loss, "train_accuracy": train_acc,
                        "test_loss": test_loss, "test_accuracy": test_acc, "seconds": seconds,
                        "alignment": [a.as_dict() for a in al]})
        log(f"epoch {epoch + 1}/{args.epochs}: train loss {train_loss:.4f} acc "
            f"{100 * train_acc:.2f}% | test loss {test_loss:.4f} acc {100 * test_acc:.2f}% | "
            f"alignment [{fmt_alignment(al)}] | {seconds:.1f} s")
    last = history[-1] if history else {}
    return {
        "example": "mnist_dfa",
        "algorithm": args.algorithm,
        "projector": args.projector,
        "encoding": args.encoding,
        "projector_info": projector_description(projector),
        "epochs": args.epochs,
        "train_samples": len(x),
        "test_samples": len(xt),
        "seed": args.seed,
        "test_accuracy": last.get("test_accuracy"),
        "best_test_accuracy": max((h["test_accuracy"] for h in history), default=None),
        "test_loss": last.get("test_loss"),
        "alignment": last.get("alignment", []),
        "projections": model.dfa.projections,
        "projected_vectors": model.dfa.vectors,
        "machine": machine(),
        "history": history,
    }


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
