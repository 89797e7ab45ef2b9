#!/bin/sh
# peer_fmnist.sh: descent against PyTorch on Fashion-MNIST (make peer-fmnist).
#
# Same model, same initial parameters (descent's --save-init, loaded by the
# PyTorch side with load_state_dict(strict=True)), same batch 128, same Adam
# lr 1e-3, same 2 threads; RUNS runs per side, alternating descent, PyTorch,
# descent, ... Speed is the median step time over the epoch(s) on each side,
# samples/s = batch / median step; then the median over the runs. Then the
# Adam step at 10M parameters: descent bench-optim against torch.optim.Adam.
#
# Environment: DESCENT_BIN (default build/descent), RUNS (3), EPOCHS (1),
# MODELS (default "fmnist-mlp fmnist-cnn-small fmnist-softmax adam"; any
# subset), OUT (default results/peer-fmnist-<time>: every run's files),
# PEER_PYTHON (default /usr/bin/python3, Debian's, which has torch),
# DESCENT_DATA (the IDX folder, for both sides).
# Exit: 0 ok, 1 a run failed, 2 descent or python3 with torch missing, bad settings.
set -u

DESCENT_BIN=${DESCENT_BIN:-build/descent}
RUNS=${RUNS:-3}
EPOCHS=${EPOCHS:-1}
MODELS=${MODELS:-"fmnist-mlp fmnist-cnn-small fmnist-softmax adam"}
PY=${PEER_PYTHON:-/usr/bin/python3}
THREADS=2
BATCH=128
LR=1e-3
ADAM_N=10000000
HERE=$(cd "$(dirname "$0")" && pwd)
PEER="$HERE/fmnist_peer.py"

die() { echo "peer_fmnist.sh: $*" >&2; exit 2; }

case $RUNS in ''|*[!0-9]*) die "RUNS='$RUNS' is not a positive integer" ;; esac
case $EPOCHS in ''|*[!0-9]*) die "EPOCHS='$EPOCHS' is not a positive integer" ;; esac
[ "$RUNS" -ge 1 ] || die "RUNS must be at least 1"
[ "$EPOCHS" -ge 1 ] || die "EPOCHS must be at least 1"
for m in $MODELS; do
    case $m in fmnist-mlp|fmnist-cnn-small|fmnist-softmax|adam) ;;
    *) die "MODELS: unknown '$m' (valid: fmnist-mlp, fmnist-cnn-small, fmnist-softmax, adam)" ;; esac
done
[ -x "$DESCENT_BIN" ] || die "descent not found at DESCENT_BIN=$DESCENT_BIN (run make first)"
[ -x "$PY" ] || die "$PY not found: the PyTorch side needs Debian's python3 (apt-get install python3-torch python3-numpy)"
torch_version=$("$PY" -c 'import numpy, torch; print(torch.__version__)' 2>/dev/null) ||
    die "$PY cannot import torch and numpy (apt-get install python3-torch python3-numpy)"

OUT=${OUT:-results/peer-fmnist-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || die "cannot create $OUT"

# The PyTorch process: both of its thread pools pinned explicitly. OpenBLAS's
# own pool must be 1, or it and torch's OpenMP pool contend for the 2 cores.
# descent sets its one pool (OpenMP, with OpenBLAS built on OpenMP) itself
# from --threads.
run_torch() {
    OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        "$PY" "$PEER" --threads "$THREADS" "$@"
}

# csv_get, kv_get, median, fmt
. "$HERE/lib.sh"
maximum() { grep -v '^$' | sort -g | tail -n 1; }

# check_init LABEL CURVE_CSV TORCH_LOSS: the test loss before any step must be
# the same on both sides (descent: row 0 of curve.csv), else the models or
# their parameters differ and the comparison is void.
check_init() {
    [ -f "$2" ] || return 0
    [ "$(csv_get "$2" step)" = 0 ] || return 0
    dl=$(csv_get "$2" eval_loss)
    if awk -v a="$dl" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-4 * (a < 0 ? -a : a)) }'; then
        echo "$1: same start: test loss before training descent $dl, pytorch $3"
    else
        echo "$1: DIFFERENT START: test loss before training descent ${dl:-?}, pytorch ${3:-?} (the models differ)" >&2
        failed=1
    fi
}

failed=0
echo "peer-fmnist: descent $("$DESCENT_BIN" info 2>/dev/null | head -n 1 | sed 's/^descent //') ($DESCENT_BIN) against PyTorch $torch_version ($PY)"
echo "  batch $BATCH, Adam lr $LR, $EPOCHS epoch(s) per run, $RUNS run(s) per side, alternating; files in $OUT"
echo "  threads: descent --threads $THREADS (its OpenMP pool, which OpenBLAS-openmp shares);"
echo "           pytorch torch.set_num_threads($THREADS), OMP_NUM_THREADS=$THREADS, OPENBLAS_NUM_THREADS=1"
load=$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null)
if [ -n "$load" ] && awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "  warning: load average $load before starting: other work is running, timings will be noisy"
fi

table="$OUT/table.txt"
: >"$table"

for model in $MODELS; do
    [ "$model" = adam ] && continue
    case $model in
    fmnist-mlp) wl="--workload fmnist-mlp"; pm=mlp; label="fmnist-mlp" ;;
    fmnist-cnn-small) wl="--workload fmnist-cnn --variant small"; pm=cnn-small; label="fmnist-cnn small" ;;
    fmnist-softmax) wl="--workload fmnist-softmax"; pm=softmax; label="fmnist-softmax" ;;
    esac
    mkdir -p "$OUT/$model"
    : >"$OUT/$model/d_sps"; : >"$OUT/$model/d_acc"; : >"$OUT/$model/d_rss"
    : >"$OUT/$model/p_sps"; : >"$OUT/$model/p_acc"; : >"$OUT/$model/p_rss"
    i=1
    while [ "$i" -le "$RUNS" ]; do
        d="$OUT/$model/run$i"
        mkdir -p "$d"
        # descent first: it writes the initial parameters the PyTorch side loads.
        # shellcheck disable=SC2086 # $wl is a list of words on purpose
        if "$DESCENT_BIN" run $wl --optimizer adam --lr "$LR" --batch "$BATCH" --epochs "$EPOCHS" \
            --threads "$THREADS" --seed "$i" --out "$d/descent" --save-init "$d/init.safetensors" \
            >"$d/descent.log" 2>&1 && [ -f "$d/descent/summary.csv" ]; then
            s="$d/descent/summary.csv"
            step_ms=$(csv_get "$s" step_ms_median)
            d_sps=$(awk -v b="$BATCH" -v t="$step_ms" 'BEGIN { if (t > 0) printf "%.1f", b * 1000 / t }')
            d_acc=$(csv_get "$s" final_eval_metric)
            d_rss=$(csv_get "$s" peak_rss_mb)
            d_status=$(csv_get "$s" status)
            echo "$d_sps" >>"$OUT/$model/d_sps"; echo "$d_acc" >>"$OUT/$model/d_acc"; echo "$d_rss" >>"$OUT/$model/d_rss"
            echo "$label run $i/$RUNS descent: step $(fmt %.3f "$step_ms") ms median, $(fmt %.0f "$d_sps") samples/s" \
                "(whole run: $(fmt %.0f "$(csv_get "$s" samples_per_s)")), acc $(fmt %.4f "$d_acc")," \
                "RSS $(fmt %.0f "$d_rss") MiB, train $(fmt %.1f "$(csv_get "$s" train_s)") s, status ${d_status:-?}"
        else
            echo "$label run $i/$RUNS descent: FAILED; last lines of $d/descent.log:" >&2
            tail -n 5 "$d/descent.log" >&2
            failed=1
        fi
        # Without descent's initial parameters (it failed) PyTorch starts from its own.
        set -- --model "$pm" --epochs "$EPOCHS" --batch "$BATCH" --lr "$LR" --seed "$i"
        init="torch's own"
        if [ -f "$d/init.safetensors" ]; then set -- "$@" --init "$d/init.safetensors"; init="descent's"; fi
        if run_torch "$@" >"$d/pytorch.log" 2>&1; then
            line=$(grep '^fmnist-peer ' "$d/pytorch.log" | tail -n 1)
            p_sps=$(kv_get "$line" samples_per_s)
            p_acc=$(kv_get "$line" test_accuracy)
            p_rss=$(kv_get "$line" peak_rss_mib)
            echo "$p_sps" >>"$OUT/$model/p_sps"; echo "$p_acc" >>"$OUT/$model/p_acc"; echo "$p_rss" >>"$OUT/$model/p_rss"
            echo "$label run $i/$RUNS pytorch: step $(fmt %.3f "$(kv_get "$line" step_ms_median)") ms median," \
                "$(fmt %.0f "$p_sps") samples/s, acc $(fmt %.4f "$p_acc"), RSS $(fmt %.0f "$p_rss") MiB," \
                "train $(fmt %.1f "$(kv_get "$line" train_s)") s, init $init," \
                "torch threads $(kv_get "$line" torch_threads)"
            [ "$init" = "torch's own" ] ||
                check_init "$label run $i/$RUNS" "$d/descent/curve.csv" "$(kv_get "$line" init_test_loss)"
        else
            echo "$label run $i/$RUNS pytorch: FAILED; last lines of $d/pytorch.log:" >&2
            tail -n 5 "$d/pytorch.log" >&2
            failed=1
        fi
        i=$((i + 1))
    done
    d_sps=$(median <"$OUT/$model/d_sps"); p_sps=$(median <"$OUT/$model/p_sps")
    ratio=$(awk -v a="$d_sps" -v b="$p_sps" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }')
    printf '%-18s %17s  %17s  %5s  %11s  %11s  %15s  %15s\n' "$label" \
        "$(fmt %.0f "$d_sps")" "$(fmt %.0f "$p_sps")" "${ratio:--}" \
        "$(fmt %.4f "$(median <"$OUT/$model/d_acc")")" "$(fmt %.4f "$(median <"$OUT/$model/p_acc")")" \
        "$(fmt %.0f "$(maximum <"$OUT/$model/d_rss")")" "$(fmt %.0f "$(maximum <"$OUT/$model/p_rss")")" >>"$table"
done

case " $MODELS " in *" adam "*)
    mkdir -p "$OUT/adam"
    : >"$OUT/adam/d"; : >"$OUT/adam/triad"; : >"$OUT/adam/flat-default"; : >"$OUT/adam/flat-foreach"; : >"$OUT/adam/list10-default"
    i=1
    while [ "$i" -le "$RUNS" ]; do
        if "$DESCENT_BIN" bench-optim --optimizer adam --n "$ADAM_N" --threads "$THREADS" >"$OUT/adam/descent-$i.log" 2>&1; then
            line=$(grep '^bench-optim ' "$OUT/adam/descent-$i.log" | tail -n 1)
            kv_get "$line" params_per_s >>"$OUT/adam/d"
            kv_get "$line" ratio >>"$OUT/adam/triad"
            echo "adam ${ADAM_N} run $i/$RUNS descent: $(fmt %.4g "$(kv_get "$line" params_per_s)") params/s," \
                "$(kv_get "$line" step_gbs) GB/s, triad $(kv_get "$line" triad_gbs) GB/s, ratio $(kv_get "$line" ratio)"
        else
            echo "adam run $i/$RUNS descent bench-optim: FAILED; see $OUT/adam/descent-$i.log" >&2
            tail -n 5 "$OUT/adam/descent-$i.log" >&2
            failed=1
        fi
        if run_torch --adam-bench "$ADAM_N" >"$OUT/adam/pytorch-$i.log" 2>&1; then
            for c in flat-default flat-foreach list10-default; do
                line=$(grep "^fmnist-peer-adam case=$c " "$OUT/adam/pytorch-$i.log" | tail -n 1)
                kv_get "$line" params_per_s >>"$OUT/adam/$c"
            done
            echo "adam ${ADAM_N} run $i/$RUNS pytorch: $(grep '^fmnist-peer-adam' "$OUT/adam/pytorch-$i.log" |
                sed 's/.*case=\([^ ]*\).*params_per_s=\([^ ]*\).*/\1 \2/' | tr '\n' ' ')params/s"
        else
            echo "adam run $i/$RUNS pytorch: FAILED; see $OUT/adam/pytorch-$i.log" >&2
            tail -n 5 "$OUT/adam/pytorch-$i.log" >&2
            failed=1
        fi
        i=$((i + 1))
    done
    d=$(median <"$OUT/adam/d"); tr_ratio=$(median <"$OUT/adam/triad")
    t=$(median <"$OUT/adam/flat-default")
    r=$(awk -v a="$d" -v b="$t" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }')
    printf '%-18s descent %s params/s  torch %s params/s (one flat tensor, foreach=None)  ratio %s (target >= 5)  descent/triad %s (target >= 0.8)\n' \
        "adam $((ADAM_N / 1000000))M params" "$(fmt %.3g "$d")" "$(fmt %.3g "$t")" "${r:--}" "$(fmt %.2f "$tr_ratio")" >>"$table"
    for c in flat-foreach list10-default; do
        t=$(median <"$OUT/adam/$c")
        r=$(awk -v a="$d" -v b="$t" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }')
        case $c in flat-foreach) what="one flat tensor, foreach=True" ;; *) what="10 tensors of 1M, foreach=None" ;; esac
        printf '%-18s also: torch %s params/s (%s): ratio %s\n' "" "$(fmt %.3g "$t")" "$what" "${r:--}" >>"$table"
    done
    ;;
esac

echo
echo "median of $RUNS run(s) per side; samples/s = $BATCH / median step time; accuracy on the 10k test images; RSS: the largest peak"
printf '%-18s %17s  %17s  %5s  %11s  %11s  %15s  %15s\n' model "descent samples/s" "pytorch samples/s" ratio \
    "descent acc" "pytorch acc" "descent RSS MiB" "pytorch RSS MiB"
cat "$table"
[ "$failed" -eq 0 ] || { echo "peer_fmnist.sh: some runs failed (see above)" >&2; exit 1; }
exit 0
