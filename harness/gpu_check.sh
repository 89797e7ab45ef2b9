#!/bin/sh
# gpu_check.sh: `make gpu-check`, the one command to run on a GPU machine.
#
#  1. the GPU tests (GPU_BUILD/tests/test_cuda: every op and optimizer on the
#     GPU against the CPU backend, determinism);
#  2. the benchmark: device-to-device copy bandwidth as the ceiling, each
#     optimizer's fused step at 16M and 128M parameters in GB/s and as a
#     fraction of it (descent bench-optim --backend cuda); fmnist-mlp and
#     fmnist-cnn samples/s for descent and for PyTorch on the same GPU, same
#     model and initial parameters, batch 128 and 1024;
#  3. the table, last (also OUT/table.txt), with logs and CSV under OUT.
# Sized to finish in under 6 minutes on an H100, so a rerun fits the device time.
#
# Environment: GPU_BUILD (folder with descent and tests/; default build-gpu if
# it exists, else build), OUT (default results/gpu-check), PEER_PYTHON
# (python3 with torch; default python3), DESCENT_DATA (IDX folder; default
# GPU_BUILD/data when present), STEPS (timed training steps, default 200).
# Exit: 0 all ran and the tests passed, 1 a test or run failed, 2 no GPU or
# missing files.
set -u
# a bundle carried from the build machine (make gpu-bundle) is unpacked first
if [ -z "${GPU_BUILD:-}" ] && [ ! -x build-gpu/descent ] && [ -f build-gpu-bundle/bundle.tar.xz ]; then
    tar -xJf build-gpu-bundle/bundle.tar.xz || { echo "gpu_check.sh: cannot unpack build-gpu-bundle/bundle.tar.xz" >&2; exit 2; }
fi
B=${GPU_BUILD:-$( [ -x build-gpu/descent ] && echo build-gpu || echo build )}
OUT=${OUT:-results/gpu-check}
PY=${PEER_PYTHON:-python3}
STEPS=${STEPS:-200}
HERE=$(cd "$(dirname "$0")" && pwd)
[ -n "${DESCENT_DATA:-}" ] || { [ -d "$B/data" ] && DESCENT_DATA=$(cd "$B/data" && pwd) && export DESCENT_DATA; }
mkdir -p "$OUT/runs" || { echo "gpu_check.sh: cannot create $OUT" >&2; exit 2; }
[ -x "$B/descent" ] || { echo "gpu_check.sh: $B/descent not found (make gpu-bundle, or make)" >&2; exit 2; }
T0=$(date +%s)
fail=0
say() { echo "gpu-check [$(( $(date +%s) - T0 )) s] $*"; }

# csv_col FILE NAME: NAME's value in the first data row (descent's summary.csv)
csv_col() {
    "$PY" -c 'import csv,sys; r=next(csv.DictReader(open(sys.argv[1]))); print(r.get(sys.argv[2], ""))' "$1" "$2" 2>/dev/null
}

{ nvidia-smi -L 2>&1; "$B/descent" info 2>&1; } > "$OUT/machine.txt"
say "$(head -1 "$OUT/machine.txt")"

# 1. tests
say "GPU tests ($B/tests/test_cuda)"
DESCENT_REQUIRE_GPU=1 timeout 180 "$B/tests/test_cuda" > "$OUT/tests.log" 2>&1
trc=$?
tests_line=$(grep -E "^\[  PASSED  \]|FAILED TEST|SKIPPED TEST" "$OUT/tests.log" | tr '\n' ' ')
skipped=$(grep -c "^\[  SKIPPED \]" "$OUT/tests.log")
[ $trc -eq 0 ] || fail=1
say "tests: exit $trc; $tests_line"
if ! "$B/descent" bench-optim --backend cuda --n 1000 --repeat 1 > "$OUT/probe.log" 2>&1; then
    say "no usable GPU: $(tail -1 "$OUT/probe.log")"
    echo "gpu-check: GPU benchmark skipped: $(tail -1 "$OUT/probe.log")" > "$OUT/table.txt"
    cat "$OUT/table.txt"
    exit 2
fi

# 2a. optimizer steps against the copy ceiling
echo "optimizer,n,step_ms,step_gbs,copy_gbs,ratio" > "$OUT/optim.csv"
for n in 16000000 128000000; do
    for opt in sgd adam adamw rmsprop adagrad; do
        line=$(timeout 60 "$B/descent" bench-optim --backend cuda --optimizer "$opt" --n "$n" --repeat 20 2>>"$OUT/optim.err" | grep '^bench-optim ')
        [ -n "$line" ] || { fail=1; say "bench-optim $opt $n failed"; continue; }
        echo "$line" >> "$OUT/optim.log"
        echo "$line" | "$PY" -c 'import sys; d=dict(kv.split("=",1) for kv in sys.stdin.read().split()[1:]); print(",".join([d["optimizer"], d["n"], d["step_ms"], d["step_gbs"], d["copy_gbs"], d["ratio"]]))' >> "$OUT/optim.csv"
    done
done
say "optimizer steps done"

# 2b. training throughput, descent and PyTorch, same GPU, model, init, batch
echo "workload,batch,descent_samples_per_s,pytorch_samples_per_s,ratio,descent_loss,pytorch_loss" > "$OUT/train.csv"
have_torch=1
"$PY" -c 'import torch; assert torch.cuda.is_available()' 2>/dev/null || { have_torch=0; say "PyTorch with CUDA not found at $PY: peer skipped"; }
for w in fmnist-mlp fmnist-cnn; do
    case $w in fmnist-mlp) pm=mlp ;; *) pm=cnn ;; esac
    for batch in 128 1024; do
        run="$OUT/runs/$w-b$batch"
        rm -rf "$run"
        timeout 120 "$B/descent" run --backend cuda --workload "$w" --optimizer adam --lr 1e-3 --batch "$batch" \
            --steps "$STEPS" --eval-every 1000000 --eval-limit 1000 --save-init "$OUT/runs/$w-b$batch-init.safetensors" \
            --out "$run" > "$run.log" 2>&1 || { fail=1; say "descent $w batch $batch failed: $(tail -1 "$run.log")"; }
        # batch / median step, as the PyTorch side reports (the first steps' start-up excluded)
        d=$("$PY" -c 'import sys; print("%.1f" % (float(sys.argv[1]) * 1e3 / float(sys.argv[2])))' "$batch" \
            "$(csv_col "$run/summary.csv" step_ms_median)" 2>/dev/null)
        dl=$(csv_col "$run/summary.csv" final_train_loss)
        t=""; tl=""
        if [ $have_torch = 1 ]; then
            timeout 120 "$PY" "$HERE/peers/fmnist_peer.py" --device cuda --model "$pm" --batch "$batch" --steps "$STEPS" \
                --warmup 20 --init "$OUT/runs/$w-b$batch-init.safetensors" --json > "$run-torch.json" 2> "$run-torch.err" ||
                { fail=1; say "pytorch $w batch $batch failed: $(tail -1 "$run-torch.err")"; }
            t=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["samples_per_s"])' "$run-torch.json" 2>/dev/null)
            tl=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["final_train_loss"])' "$run-torch.json" 2>/dev/null)
        fi
        r=$("$PY" -c 'import sys; print("%.3f" % (float(sys.argv[1]) / float(sys.argv[2])))' "${d:-nan}" "${t:-nan}" 2>/dev/null)
        echo "$w,$batch,$d,$t,$r,$dl,$tl" >> "$OUT/train.csv"
        say "$w batch $batch: descent $d samples/s, pytorch $t (ratio $r)"
    done
done

# 3. the table
"$PY" - "$OUT" "$tests_line" "$skipped" "$(head -1 "$OUT/machine.txt")" > "$OUT/table.txt" <<'PYEOF'
import csv, sys
out, tests, skipped, gpu = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
print("gpu-check: %s" % gpu)
print("tests: %s (skipped: %s)" % (tests.strip(), skipped))
rows = list(csv.DictReader(open(out + "/optim.csv")))
if rows:
    print("\n| optimizer | params | step ms | step GB/s | copy GB/s | fraction of copy |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %dM | %.3f | %.0f | %.0f | %.2f |" % (r["optimizer"], int(r["n"]) // 1000000, float(r["step_ms"]),
              float(r["step_gbs"]), float(r["copy_gbs"]), float(r["ratio"])))
rows = list(csv.DictReader(open(out + "/train.csv")))
if rows:
    print("\n| workload | batch | descent samples/s | PyTorch samples/s | descent / PyTorch |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        print("| %s | %s | %s | %s | %s |" % (r["workload"], r["batch"], r["descent_samples_per_s"] or "-",
              r["pytorch_samples_per_s"] or "-", r["ratio"] or "-"))
PYEOF
say "done"
echo
cat "$OUT/table.txt"
exit $fail
