#!/bin/sh
# peer_ddp.sh: descent's data parallelism against PyTorch DDP (make peer-ddp).
#
# Four configurations of the same training on the same 2 cores, in one
# invocation, RUNS times, alternating (d1 d2 t1 t2, d1 d2 t1 t2, ...):
#   d1  descent, 1 rank x 2 threads          (descent run --threads 2)
#   d2  descent, 2 ranks x 1 thread          (descent run --ranks 2 --threads 1: Open MPI)
#   t1  PyTorch, 1 process x 2 threads       (a plain module)
#   t2  PyTorch DDP, 2 ranks x 1 thread      (DistributedDataParallel over gloo)
# Same model, initial parameters (descent's --save-init, loaded strict), data,
# global batch (split across the ranks as descent splits it), Adam lr 1e-3,
# number of steps; for every model in MODELS and every global batch in
# BATCHES. Speed: samples/s = global batch / median step time (rank 0's), then
# the median over the runs. Prints a table of samples/s and their ratios, and
# each side's time per step by phase.
#
# Environment: DESCENT_BIN (default build/descent), RUNS (3), MODELS (default
# "fmnist-mlp fmnist-cnn-small"), BATCHES (global batches, default "128 512"),
# STEPS (timed steps of the MLP, 300), CNN_STEPS (of the CNN, 60), EVAL_LIMIT
# (test images evaluated, both sides, 2000; 0: all), DDP_BUCKET_MB and
# DDP_FIRST_BUCKET_MB (DDP's bucket_cap_mb and first-bucket cap; default
# DDP's own, 25 and 1), OUT (default
# results/peer-ddp-<time>: every run's files and results.csv), PEER_PYTHON
# (default /usr/bin/python3, Debian's, which has torch), DESCENT_DATA (the IDX
# folder, for both sides).
# Exit: 0 ok, 1 a run failed, 2 descent (with MPI), mpirun, or python3 with
# torch and gloo missing, or bad settings.
set -u

DESCENT_BIN=${DESCENT_BIN:-build/descent}
RUNS=${RUNS:-3}
MODELS=${MODELS:-"fmnist-mlp fmnist-cnn-small"}
BATCHES=${BATCHES:-"128 512"}
STEPS=${STEPS:-300}
CNN_STEPS=${CNN_STEPS:-60}
EVAL_LIMIT=${EVAL_LIMIT:-2000}
DDP_BUCKET_MB=${DDP_BUCKET_MB:-25}
DDP_FIRST_BUCKET_MB=${DDP_FIRST_BUCKET_MB:-1}
PY=${PEER_PYTHON:-/usr/bin/python3}
CORES=2     # threads in all, per configuration: 1 rank x CORES or 2 ranks x CORES/2
HALF=$((CORES / 2))
WARMUP=20   # PyTorch's untimed steps before the timed ones
LR=1e-3
HERE=$(cd "$(dirname "$0")" && pwd)
PEER="$HERE/ddp_peer.py"

die() { echo "peer_ddp.sh: $*" >&2; exit 2; }

positive() { # NAME VALUE
    case $2 in ''|*[!0-9]*) die "$1='$2' is not a positive integer" ;; esac
    [ "$2" -ge 1 ] || die "$1 must be at least 1"
}
positive RUNS "$RUNS"
positive STEPS "$STEPS"
positive CNN_STEPS "$CNN_STEPS"
for v in "$DDP_BUCKET_MB" "$DDP_FIRST_BUCKET_MB"; do
    awk -v x="$v" 'BEGIN { exit !(x ~ /^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/ && x + 0 > 0) }' ||
        die "DDP_BUCKET_MB='$DDP_BUCKET_MB' and DDP_FIRST_BUCKET_MB='$DDP_FIRST_BUCKET_MB' must be positive numbers (MiB)"
done
case $EVAL_LIMIT in ''|*[!0-9]*) die "EVAL_LIMIT='$EVAL_LIMIT' is not a number (0: all test images)" ;; esac
for m in $MODELS; do
    case $m in fmnist-mlp|fmnist-cnn-small) ;;
    *) die "MODELS: unknown '$m' (valid: fmnist-mlp, fmnist-cnn-small)" ;; esac
done
[ -n "$MODELS" ] || die "MODELS is empty (valid: fmnist-mlp, fmnist-cnn-small)"
[ -n "$BATCHES" ] || die "BATCHES is empty"
for b in $BATCHES; do
    case $b in ''|*[!0-9]*) die "BATCHES: '$b' is not a positive integer" ;; esac
    [ "$b" -ge 2 ] || die "BATCHES: $b is too small to split across 2 ranks"
done
[ -x "$DESCENT_BIN" ] || die "descent not found at DESCENT_BIN=$DESCENT_BIN (run make first)"
"$DESCENT_BIN" info 2>/dev/null | grep '^comm:' | grep -qw mpi ||
    die "$DESCENT_BIN was built without MPI: --ranks 2 cannot run (apt-get install openmpi-bin libopenmpi-dev, then make)"
command -v mpirun >/dev/null 2>&1 || die "mpirun not found: descent --ranks needs Open MPI (apt-get install openmpi-bin)"
[ -x "$PY" ] || die "$PY not found: the PyTorch side needs Debian's python3 (apt-get install python3-torch python3-numpy)"
torch_version=$("$PY" -c 'import numpy, torch; print(torch.__version__)' 2>/dev/null) ||
    die "$PY cannot import torch and numpy (apt-get install python3-torch python3-numpy)"
"$PY" -c 'import torch.distributed as d, sys; sys.exit(not (d.is_available() and d.is_gloo_available()))' 2>/dev/null ||
    die "torch $torch_version at $PY has no torch.distributed with the gloo backend: PyTorch DDP cannot run"

OUT=${OUT:-results/peer-ddp-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$OUT" || die "cannot create $OUT"

# The PyTorch processes: both thread pools pinned explicitly (OpenBLAS's own
# pool to 1, or it and torch's OpenMP pool contend for the cores); the spawned
# DDP ranks inherit this environment. descent sets its one OpenMP pool (which
# OpenBLAS-openmp shares) itself from --threads.
run_torch() { # WORLD THREADS ARGS...
    w=$1 t=$2
    shift 2
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1 \
        "$PY" "$PEER" --world "$w" --threads "$t" --bucket-cap-mb "$DDP_BUCKET_MB" \
        --first-bucket-mb "$DDP_FIRST_BUCKET_MB" "$@"
}

# csv_get, kv_get, median, fmt
. "$HERE/lib.sh"

# ratio A B: A / B to 2 decimals, empty when either is missing.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }'; }

# results.csv: one row per run; descent's phases in compute/comm/optimizer
# (and comm_total_ms, comm_mb, buckets when its summary.csv has them),
# PyTorch's in fwd/bwd_allreduce/opt and allreduce_alone (and DDP's buckets);
# empty where a side has none.
RCSV="$OUT/results.csv"
COLS="model,batch,config,side,ranks,threads,run,seed,steps,status,step_ms_median,samples_per_s,compute_ms,comm_ms,optimizer_ms,comm_total_ms,comm_mb,fwd_ms,bwd_allreduce_ms,opt_ms,allreduce_alone_ms,buckets,eval_acc,init_eval_loss,peak_rss_mib"
echo "$COLS" >"$RCSV"

# get MODEL BATCH CONFIG COLUMN: the values of COLUMN in results.csv's ok rows
# of that configuration, one a line.
get() {
    awk -F, -v m="$1" -v b="$2" -v c="$3" -v col="$4" '
    NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next }
    $h["model"] == m && $h["batch"] == b && $h["config"] == c && $h["status"] == "ok" { print $h[col] }
    ' "$RCSV"
}
med() { get "$@" | median; }

# check_init LABEL CURVE_CSV TORCH_LOSS: the evaluation loss before any step
# must be the same on both sides (descent: row 0 of curve.csv), else the models
# or their parameters differ and the comparison is void.
check_init() {
    [ -f "$2" ] && [ -n "$3" ] || return 0
    [ "$(csv_get "$2" step)" = 0 ] || return 0
    dl=$(csv_get "$2" eval_loss)
    if awk -v a="$dl" -v b="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(a != "" && b != "" && d <= 1e-4 * (a < 0 ? -a : a)) }'; then
        echo "  $1: same start: loss before training descent $dl, pytorch $3"
    else
        echo "$1: DIFFERENT START: loss before training descent ${dl:-?}, pytorch ${3:-?} (the models differ)" >&2
        failed=1
    fi
}

# run_descent LABEL CONFIG RANKS THREADS DIR INIT: one descent run, a row of results.csv
run_descent() {
    label=$1 cfg=$2 r=$3 t=$4 dd=$5 init=$6
    # shellcheck disable=SC2086 # $wl is a list of words on purpose
    if "$DESCENT_BIN" run $wl --optimizer adam --lr "$LR" --batch "$batch" --steps "$steps" \
        --eval-every "$steps" --eval-limit "$EVAL_LIMIT" --ranks "$r" --threads "$t" --seed "$i" \
        --out "$dd" --save-init "$init" >"$dd.log" 2>&1 && [ -f "$dd/summary.csv" ]; then
        s="$dd/summary.csv"
        st=$(csv_get "$s" step_ms_median)
        sps=$(awk -v b="$batch" -v t="$st" 'BEGIN { if (t > 0) printf "%.1f", b * 1000 / t }')
        status=$(csv_get "$s" status)
        ctot=$(csv_get "$s" comm_total_ms); cmb=$(csv_get "$s" comm_mb); nbk=$(csv_get "$s" buckets)
        echo "$model,$batch,$cfg,descent,$r,$t,$i,$i,$steps,${status:-?},$st,$sps,$(csv_get "$s" compute_ms),$(csv_get "$s" comm_ms),$(csv_get "$s" optimizer_ms),$ctot,$cmb,,,,,$nbk,$(csv_get "$s" final_eval_metric),$(csv_get "$dd/curve.csv" eval_loss),$(csv_get "$s" peak_rss_mb)" >>"$RCSV"
        echo "  $label run $i/$RUNS: step $(fmt %.3f "$st") ms median, $(fmt %.0f "$sps") samples/s;" \
            "compute $(fmt %.3f "$(csv_get "$s" compute_ms)"), comm exposed $(fmt %.3f "$(csv_get "$s" comm_ms)")" \
            "(in flight $(fmt %.3f "$ctot"), $(fmt %.2f "$cmb") MB, ${nbk:-?} bucket(s)), optimizer $(fmt %.3f "$(csv_get "$s" optimizer_ms)") ms/step;" \
            "acc $(fmt %.4f "$(csv_get "$s" final_eval_metric)"), status ${status:-?}"
        [ "$status" = ok ] || failed=1
    else
        echo "$model,$batch,$cfg,descent,$r,$t,$i,$i,$steps,failed,,,,,,,,,,,,,,," >>"$RCSV"
        echo "$label run $i/$RUNS: FAILED; last lines of $dd.log:" >&2
        tail -n 5 "$dd.log" >&2
        failed=1
    fi
}

# run_peer LABEL CONFIG WORLD THREADS LOG: one PyTorch run, a row of results.csv
run_peer() {
    label=$1 cfg=$2 w=$3 t=$4 log=$5
    set -- --model "$pm" --batch "$batch" --steps "$steps" --warmup "$WARMUP" --lr "$LR" \
        --seed "$i" --eval-limit "$EVAL_LIMIT"
    init="torch's own"
    if [ -f "$rd/init.safetensors" ]; then set -- "$@" --init "$rd/init.safetensors"; init="descent's"; fi
    if run_torch "$w" "$t" "$@" >"$log" 2>&1 && line=$(grep '^ddp-peer ' "$log" | tail -n 1) && [ -n "$line" ]; then
        st=$(kv_get "$line" step_ms_median); sps=$(kv_get "$line" samples_per_s)
        ar=$(kv_get "$line" allreduce_ms); nbk=$(kv_get "$line" n_buckets)
        il=$(kv_get "$line" init_test_loss)
        echo "$model,$batch,$cfg,pytorch,$w,$t,$i,$i,$steps,ok,$st,$sps,,,,,,$(kv_get "$line" fwd_ms),$(kv_get "$line" bwd_ms),$(kv_get "$line" opt_ms),$ar,$nbk,$(kv_get "$line" test_accuracy),$il,$(kv_get "$line" peak_rss_mib)" >>"$RCSV"
        echo "  $label run $i/$RUNS: step $(fmt %.3f "$st") ms median, $(fmt %.0f "$sps") samples/s;" \
            "fwd $(fmt %.3f "$(kv_get "$line" fwd_ms)"), bwd$([ "$w" -gt 1 ] && echo '+allreduce') $(fmt %.3f "$(kv_get "$line" bwd_ms)")," \
            "opt $(fmt %.3f "$(kv_get "$line" opt_ms)") ms/step;$([ "$w" -gt 1 ] && echo " allreduce alone $(fmt %.3f "$ar") ms, $nbk bucket(s);")" \
            "acc $(fmt %.4f "$(kv_get "$line" test_accuracy)"), torch threads $(kv_get "$line" torch_threads), init $init"
        [ "$init" = "descent's" ] && check_init "$label run $i" "$rd/d1/curve.csv" "$il"
    else
        echo "$model,$batch,$cfg,pytorch,$w,$t,$i,$i,$steps,failed,,,,,,,,,,,,,,," >>"$RCSV"
        echo "$label run $i/$RUNS: FAILED; last lines of $log:" >&2
        tail -n 5 "$log" >&2
        failed=1
    fi
}

failed=0
echo "peer-ddp: descent $("$DESCENT_BIN" info 2>/dev/null | head -n 1 | sed 's/^descent //') ($DESCENT_BIN, Open MPI) against PyTorch $torch_version DDP/gloo ($PY)"
echo "  models $MODELS; global batches $BATCHES; Adam lr $LR; $STEPS steps (MLP), $CNN_STEPS (CNN) per run;" \
    "$RUNS run(s) per configuration, alternating; files in $OUT"
echo "  d1 = descent 1 rank x 2 threads, d2 = descent 2 ranks x 1 thread (mpirun -np 2, batch split across ranks),"
echo "  t1 = PyTorch 1 process x 2 threads, t2 = PyTorch DDP gloo 2 ranks x 1 thread"
echo "  threads: descent --threads (its OpenMP pool, which OpenBLAS-openmp shares);"
echo "           pytorch torch.set_num_threads = OMP_NUM_THREADS = 2 / ranks, OPENBLAS_NUM_THREADS=1"
echo "  DDP: default bucket_cap_mb 25 and first bucket of 1 MiB (dist._DEFAULT_FIRST_BUCKET_BYTES);" \
    "here bucket_cap_mb $DDP_BUCKET_MB, first bucket $DDP_FIRST_BUCKET_MB MiB;" \
    "at 1 MiB the MLP's 0.90 MiB and the CNN's 0.24 MiB of gradients are one bucket (no overlap with backward)"
load=$(cut -d ' ' -f 1 /proc/loadavg 2>/dev/null)
if [ -n "$load" ] && awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
    echo "  warning: load average $load before starting: other work is running, timings will be noisy"
fi

for model in $MODELS; do
    case $model in
    fmnist-mlp) wl="--workload fmnist-mlp"; pm=mlp; steps=$STEPS ;;
    fmnist-cnn-small) wl="--workload fmnist-cnn --variant small"; pm=cnn-small; steps=$CNN_STEPS ;;
    esac
    for batch in $BATCHES; do
        echo "$model, global batch $batch, $steps steps:"
        i=1
        while [ "$i" -le "$RUNS" ]; do
            rd="$OUT/$model/b$batch/run$i"
            mkdir -p "$rd"
            # d1 first: it writes the initial parameters the other runs load
            run_descent "d1 descent 1x$CORES" d1 1 "$CORES" "$rd/d1" "$rd/init.safetensors"
            run_descent "d2 descent 2x$HALF" d2 2 "$HALF" "$rd/d2" "$rd/init-d2.safetensors"
            if [ -f "$rd/init.safetensors" ] && [ -f "$rd/init-d2.safetensors" ] &&
                ! cmp -s "$rd/init.safetensors" "$rd/init-d2.safetensors"; then
                echo "$model batch $batch run $i: DIFFERENT START: descent's 1-rank and 2-rank initial parameters differ" >&2
                failed=1
            fi
            run_peer "t1 pytorch 1x$CORES" t1 1 "$CORES" "$rd/t1.log"
            run_peer "t2 ddp 2x$HALF" t2 2 "$HALF" "$rd/t2.log"
            i=$((i + 1))
        done
    done
done

table="$OUT/table.txt"
{
    echo
    echo "median of $RUNS run(s) per configuration; samples/s = global batch / median step time (rank 0)"
    echo "d1 descent 1 rank x 2 threads, d2 descent 2 ranks x 1 thread, t1 PyTorch 1 process x 2 threads, t2 PyTorch DDP gloo 2 ranks x 1 thread"
    printf '%-16s %5s %5s  %9s %9s %9s %9s   %6s %6s %6s %6s\n' model batch steps \
        "d1 samp/s" "d2 samp/s" "t1 samp/s" "t2 samp/s" "d2/d1" "d2/t2" "d1/t1" "t2/t1"
    for model in $MODELS; do
        case $model in fmnist-cnn-small) steps=$CNN_STEPS ;; *) steps=$STEPS ;; esac
        for batch in $BATCHES; do
            d1=$(med "$model" "$batch" d1 samples_per_s); d2=$(med "$model" "$batch" d2 samples_per_s)
            t1=$(med "$model" "$batch" t1 samples_per_s); t2=$(med "$model" "$batch" t2 samples_per_s)
            r1=$(ratio "$d2" "$d1"); r2=$(ratio "$d2" "$t2"); r3=$(ratio "$d1" "$t1"); r4=$(ratio "$t2" "$t1")
            printf '%-16s %5s %5s  %9s %9s %9s %9s   %6s %6s %6s %6s\n' "$model" "$batch" "$steps" \
                "$(fmt %.0f "$d1")" "$(fmt %.0f "$d2")" "$(fmt %.0f "$t1")" "$(fmt %.0f "$t2")" \
                "${r1:--}" "${r2:--}" "${r3:--}" "${r4:--}"
        done
    done
    echo
    echo "time per step, ms (step: median; phases: mean per step; medians over the runs)"
    printf '%-16s %5s %-4s %7s  %8s %8s %8s %10s %8s  %8s %8s %8s %9s %7s\n' model batch cfg step \
        compute comm_exp optim comm_total comm_MB fwd "bwd(+ar)" opt "ar alone" buckets
    for model in $MODELS; do
        for batch in $BATCHES; do
            for c in d1 d2 t1 t2; do
                printf '%-16s %5s %-4s %7s  %8s %8s %8s %10s %8s  %8s %8s %8s %9s %7s\n' "$model" "$batch" "$c" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" step_ms_median)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" compute_ms)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" comm_ms)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" optimizer_ms)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" comm_total_ms)")" \
                    "$(fmt %.2f "$(med "$model" "$batch" "$c" comm_mb)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" fwd_ms)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" bwd_allreduce_ms)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" opt_ms)")" \
                    "$(fmt %.3f "$(med "$model" "$batch" "$c" allreduce_alone_ms)")" \
                    "$(fmt %.0f "$(med "$model" "$batch" "$c" buckets)")"
            done
        done
    done
    echo "descent: compute = forward+backward, comm_exp = allreduce of the gradients + loss" \
        "(exposed: what the step waited for), comm_total = in flight (overlapped with backward or not)," \
        "comm_MB per rank per step, buckets = gradient buckets (when descent reports them), optim = gradient norm + optimizer step"
    echo "pytorch: fwd = zero_grad+batch+forward+loss, bwd(+ar) = backward (t2: with DDP's allreduce)," \
        "opt = Adam step, ar alone = one allreduce of all gradients after training, buckets = DDP's"
} >"$table"
cat "$table"
echo "results: $RCSV"
[ "$failed" -eq 0 ] || { echo "peer_ddp.sh: some runs failed (see above)" >&2; exit 1; }
exit 0
