#!/usr/bin/env bash
# The batch × width table of docs/throughput.md: `speckle bench train` on configs/mnist-dfa.toml
# (DFA, digital projector, three tanh hidden layers, Adam) with every hidden layer W wide, for
# batch B in 32, 128, 512 and W in 256, 800, 4096, one markdown row per case:
#
#   batch | width | epoch s (60,000 samples) | samples/s | GFLOP/s | % of the GEMM peak | % paired
#
# "% of the GEMM peak": the best 1024³ product of a 1 s window measured after the epochs (what
# `speckle bench train` prints first); "% paired": the median over the repeats of each epoch's
# rate over the mean 1024³ rate of a window as long as that epoch, measured right after it.
#
# Usage: scripts/train-throughput-table.sh [SAMPLES [REPEAT]]   (defaults: 15000 samples, 3
# repeats; the epoch time is 60,000 / samples/s). The binary is $SPECKLE when set, else
# target/release/speckle. Extra `--set` overrides go in $SETS (e.g. SETS='training.algorithm="bp"');
# $BATCHES and $WIDTHS replace the lists (e.g. BATCHES=128 WIDTHS=800).
set -euo pipefail
cd "$(dirname "$0")/.."
speckle=${SPECKLE:-target/release/speckle}
samples=${1:-15000}
repeat=${2:-3}
[ -x "$speckle" ] || { echo "error: $speckle not found (cargo build --release)" >&2; exit 1; }
echo "| batch | width | epoch (60,000 samples) | samples/s | GFLOP/s | of the GEMM peak | paired |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for batch in ${BATCHES:-32 128 512}; do
    for width in ${WIDTHS:-256 800 4096}; do
        sets=(--set "model.hidden=[$width, $width, $width]" --set "training.batch_size=$batch")
        for s in ${SETS:-}; do
            sets+=(--set "$s")
        done
        "$speckle" bench train --config configs/mnist-dfa.toml "${sets[@]}" \
            --samples "$samples" --repeat "$repeat" --json |
            python3 -c '
import json, sys
r = json.load(sys.stdin)
row = (r["batch_size"], r["hidden"][0], 60000 / r["samples_per_s"], r["samples_per_s"],
       r["gflops"], 100 * r["fraction_of_peak"], r["gemm_peak_gflops"],
       100 * r["fraction_of_paired_gemm"])
print("| %d | %d | %.2f s | %.0f | %.1f | %.0f %% of %.0f | %.0f %% |" % row)'
    done
done
