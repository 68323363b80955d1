#!/usr/bin/env python3
"""A small convolutional network on MNIST trained with DFA through a speckle projector and with
backprop, from the same initial weights, reporting test accuracy and the per-layer alignment of
both (the seed paper argues that convolutional layers are alignment bottlenecks). Optionally a
third run, DFA with the convolutional layers frozen at their initial weights, shows what the
convolutional layers' DFA updates contribute.

Network (tanh; a DFALayer at the output of every hidden block, after pooling):

    conv 5×5, 1 → 16, pad 2 → tanh → max-pool 2 → DFALayer     feedback point 16×14×14 = 3136
    conv 5×5, 16 → 32, pad 2 → tanh → max-pool 2 → DFALayer    feedback point 32×7×7   = 1568
    flatten → linear 1568 → 256 → tanh → DFALayer              feedback point 256
    linear 256 → 10 → DFA                                      true gradient

The DFA signal of a convolutional point is the first C·H·W columns of the shared projection,
reshaped to C × H × W. Alignment is the per-sample cosine between the DFA signal B_i·e and the
true backprop gradient at each point, mean ± std over the first 128 test images, measured for both
networks: for the backprop-trained network it is the alignment DFA's signal would have there.

    python examples/python/cnn_dfa.py --epochs 5                       # through sim
    python examples/python/cnn_dfa.py --projector torch --epochs 3 --train-subset 10000
    python examples/python/cnn_dfa.py --projector torch --algorithm bp,dfa,dfa-frozen-conv
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mnist_dfa import (  # noqa: E402  (shared data loading and training loop)
    common_parser, epoch_order, evaluate, fmt_alignment, load_mnist, log, machine, make_optimizer,
    make_projector, projector_description, train_epoch)

from speckle.torch import DFA, DFALayer, alignment  # noqa: E402


ALGORITHMS = ("bp", "dfa", "dfa-frozen-conv")


class ConvNet(nn.Module):
    def __init__(self, projector, *, no_training: bool = False, channels=(16, 32), hidden=256):
        super().__init__()
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5, padding=2)
        self.conv2 = nn.Conv2d(c1, c2, 5, padding=2)
        self.fc = nn.Linear(c2 * 7 * 7, hidden)
        self.out = nn.Linear(hidden, 10)
        self.p1, self.p2, self.p3 = DFALayer("conv1"), DFALayer("conv2"), DFALayer("fc")
        self.dfa = DFA([self.p1, self.p2, self.p3], projector, no_training=no_training)

    @staticmethod
    def feedback_width(channels=(16, 32), hidden=256) -> int:
        return max(channels[0] * 14 * 14, channels[1] * 7 * 7, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.view(-1, 1, 28, 28)
        x = self.p1(F.max_pool2d(torch.tanh(self.conv1(x)), 2))
        x = self.p2(F.max_pool2d(torch.tanh(self.conv2(x)), 2))
        x = self.p3(torch.tanh(self.fc(x.flatten(1))))
        return self.dfa(self.out(x))


def parse_args(argv: Optional[Sequence[str]] = None):
    p = common_parser(__doc__, epochs=5)
    p.add_argument("--algorithm", type=lambda v: v.split(","), default=["bp", "dfa"],
                   help="comma-separated runs, in order: bp, dfa, dfa-frozen-conv (DFA with the "
                        "convolutional layers left at their initial weights: a baseline for what "
                        "their DFA updates contribute)")
    args = p.parse_args(argv)
    bad = [a for a in args.algorithm if a not in ALGORITHMS]
    if bad:
        p.error(f"--algorithm: unknown {', '.join(bad)} (expected {', '.join(ALGORITHMS)})")
    return args


def run(args) -> Dict:
    torch.set_num_threads(args.threads)
    x, y, xt, yt = load_mnist(args.data_dir, args.train_subset, args.test_subset)
    width = ConvNet.feedback_width()
    algorithms = args.algorithm
    steps = args.epochs * math.ceil(len(x) / args.batch_size)
    ax, ay = xt[:args.alignment_batch], yt[:args.alignment_batch]
    runs: Dict[str, Dict] = {}
    info = None
    for alg in algorithms:
        # The same projector matrix (same SPEC and seed) for both: BP uses it only to measure.
        projector = make_projector(args.projector, 10, width, args.feedback_seed, args.encoding,
                                   args.set)
        info = projector_description(projector)
        torch.manual_seed(args.seed)  # the same initial weights for BP and DFA
        model = ConvNet(projector, no_training=alg == "bp")
        if alg == "dfa-frozen-conv":
            for p in (*model.conv1.parameters(), *model.conv2.parameters()):
                p.requires_grad_(False)
        opt, sched = make_optimizer([p for p in model.parameters() if p.requires_grad],
                                    args.lr, steps)
        history = []
        for epoch in range(args.epochs):
            t0 = time.perf_counter()
            train_loss, train_acc = train_epoch(model, opt, sched, x, y, args.batch_size,
                                                epoch_order(len(x), args.seed, epoch))
            seconds = time.perf_counter() - t0
            test_loss, test_acc = evaluate(model, xt, yt)
            al = alignment(model, model.dfa, ax, ay)
            history.append({"epoch": epoch + 1, "train_loss": train_loss,
                            "train_accuracy": train_acc, "test_loss": test_loss,
                            "test_accuracy": test_acc, "seconds": seconds,
                            "alignment": [a.as_dict() for a in al]})
            log(f"{alg} epoch {epoch + 1}/{args.epochs}: train loss {train_loss:.4f} acc "
                f"{100 * train_acc:.2f}% | test acc {100 * test_acc:.2f}% | alignment "
                f"conv1/conv2/fc [{fmt_alignment(al)}] | {seconds:.1f} s")
        last = history[-1] if history else {}
        runs[alg] = {"test_accuracy": last.get("test_accuracy"),
                     "test_loss": last.get("test_loss"),
                     "alignment": last.get("alignment", []), "history": history}
    return {
        "example": "cnn_dfa",
        "projector": args.projector,
        "encoding": args.encoding,
        "projector_info": info,
        "epochs": args.epochs,
        "train_samples": len(x),
        "test_samples": len(xt),
        "seed": args.seed,
        "machine": machine(),
        "runs": runs,
    }


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    args = parse_args(argv)
    result = run(args)
    if args.json:
        print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
