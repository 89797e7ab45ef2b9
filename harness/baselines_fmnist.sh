#!/bin/sh
# baselines_fmnist.sh: the default recipes of the three Fashion-MNIST
# workloads, run one after another; their summary rows are collected into
# $OUT/runs.csv (the file results/baselines/fmnist/runs.csv is a copy of one
# such run, the regression baseline). `make baselines-fmnist` runs it.
#
# Recipes (batch 128, seed 1, 2 threads, pixels x/255, PyTorch's default init):
#   fmnist-softmax  Adam lr 1e-3, cosine to 0, 30 epochs
#   fmnist-mlp      Adam lr 1e-3, cosine to 0, 30 epochs
#   fmnist-cnn      Adam lr 1e-3, cosine to 0, 15 epochs, dropout 0.5 (the
#                   classic CNN: 'same' padding, 1024-unit hidden layer)
# Environment: DESCENT_BIN (default build/descent), OUT (default
# results/baselines-fmnist-<time>), THREADS (2), ONLY (a subset of the names).
set -eu
DESCENT_BIN=${DESCENT_BIN:-build/descent}
OUT=${OUT:-results/baselines-fmnist-$(date +%Y%m%d-%H%M%S)}
THREADS=${THREADS:-2}
ONLY=${ONLY:-"fmnist-softmax fmnist-mlp fmnist-cnn"}
[ -x "$DESCENT_BIN" ] || { echo "baselines_fmnist.sh: no descent at $DESCENT_BIN (run make)" >&2; exit 2; }
mkdir -p "$OUT"

recipe() {
    case $1 in
    fmnist-softmax) echo "--optimizer adam --lr 1e-3 --schedule cosine --epochs 30" ;;
    fmnist-mlp) echo "--optimizer adam --lr 1e-3 --schedule cosine --epochs 30" ;;
    fmnist-cnn) echo "--optimizer adam --lr 1e-3 --schedule cosine --epochs 15 --dropout 0.5" ;;
    *) echo "baselines_fmnist.sh: unknown workload '$1' (valid: fmnist-softmax, fmnist-mlp, fmnist-cnn)" >&2; exit 2 ;;
    esac
}

first=1
for w in $ONLY; do
    args=$(recipe "$w")
    echo "== $w: descent run --workload $w $args --batch 128 --seed 1 --threads $THREADS"
    # shellcheck disable=SC2086 # the recipe is a list of words
    "$DESCENT_BIN" run --workload "$w" $args --batch 128 --seed 1 --threads "$THREADS" --out "$OUT/$w"
    if [ $first = 1 ]; then head -n 1 "$OUT/$w/summary.csv" > "$OUT/runs.csv"; first=0; fi
    tail -n +2 "$OUT/$w/summary.csv" >> "$OUT/runs.csv"
done
echo "summary rows: $OUT/runs.csv"
