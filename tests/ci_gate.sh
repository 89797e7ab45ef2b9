#!/bin/sh
# tests/ci_gate.sh: the regression gate of `make test`. Runs the quick suite
# configs/ci.ini and compares it with the committed baseline
# results/baselines/ci.csv (descent compare: exit 1 on a regression or a
# missing run). Refresh the baseline deliberately with `make baseline`.
# Environment: DESCENT_BIN (default build/descent).
set -u
bin=${DESCENT_BIN:-build/descent}
base=results/baselines/ci.csv
[ -f "$base" ] || { echo "ci_gate.sh: no baseline $base (make baseline)"; exit 1; }
out=$(mktemp -d "${TMPDIR:-/tmp}/descent-ci-gate-XXXXXX")
trap 'rm -rf "$out"' EXIT
"$bin" sweep configs/ci.ini -j 2 --quiet --out "$out/sweep" || { echo "ci_gate.sh: the ci sweep failed"; exit 1; }
"$bin" compare "$base" "$out/sweep"
