#!/bin/sh
# harness/bench.sh: `make bench` until experiment files and sweeps land (the
# harness issue replaces this with `descent sweep configs/bench.ini`).
# Every optimizer at a three-point learning-rate grid on each synthetic
# workload; prints, per workload, each optimizer at its best rate by final
# eval metric. Diverged runs are recorded as such and the suite goes on.
set -eu
bin=${DESCENT_BIN:-build/descent}
out=results/bench-$(date +%Y%m%d-%H%M%S)
mkdir -p "$out"
runs=$out/runs.csv
: >"$runs"
grid() {
    case $1 in
    gd | sgd) echo "0.1 0.3 1" ;;
    adam | adamw) echo "0.003 0.01 0.03" ;;
    rmsprop) echo "0.001 0.003 0.01" ;;
    adagrad) echo "0.03 0.1 0.3" ;;
    esac
}
n=0
for w in "quadratic --kappa 100 --steps 500" "linreg --epochs 10" "logreg --epochs 10"; do
    name=${w%% *}
    for o in gd sgd adam adamw rmsprop adagrad; do
        for lr in $(grid $o); do
            dir=$out/$name-$o-lr$lr
            # shellcheck disable=SC2086
            "$bin" run --workload $w --optimizer "$o" --lr "$lr" --threads 2 --out "$dir" >/dev/null 2>>"$out/stderr.log" || true
            if [ -f "$dir/summary.csv" ]; then
                if [ ! -s "$runs" ]; then head -n 1 "$dir/summary.csv" >"$runs"; fi
                tail -n 1 "$dir/summary.csv" >>"$runs"
                n=$((n + 1))
            fi
        done
    done
done
echo "descent bench: $n runs -> $out/runs.csv"
awk -F, '
NR == 1 { for (i = 1; i <= NF; i++) col[$i] = i; next }
{
    w = $col["workload"]; o = $col["optimizer"]; m = $col["final_eval_metric"]
    up = ($col["metric"] == "accuracy")
    key = w SUBSEP o
    if ($col["status"] != "ok") { div[key]++; next }
    if (!(key in best) || (up ? m > best[key] : m < best[key])) {
        best[key] = m; lr[key] = $col["lr"]; subopt[key] = $col["final_suboptimality"]
        sps[key] = $col["samples_per_s"]; metric[w] = $col["metric"]
    }
    seen[key] = 1; order[w] = order[w] " " o
}
END {
    n = split("quadratic linreg logreg", ws, " ")
    for (i = 1; i <= n; i++) {
        w = ws[i]
        printf "\n%s (best learning rate of three, by final %s)\n", w, metric[w]
        printf "  %-8s %8s %14s %14s %12s %9s\n", "optimizer", "lr", metric[w], "suboptimality", "samples/s", "diverged"
        split("gd sgd adam adamw rmsprop adagrad", os, " ")
        for (j = 1; j <= 6; j++) {
            k = w SUBSEP os[j]
            if (k in best) printf "  %-8s %8s %14.6g %14s %12.0f %9d\n", os[j], lr[k], best[k], subopt[k] == "" ? "-" : sprintf("%.3g", subopt[k]), sps[k], div[k]
            else if (k in div) printf "  %-8s %8s %14s %14s %12s %9d\n", os[j], "-", "-", "-", "-", div[k]
        }
    }
}' "$runs"
