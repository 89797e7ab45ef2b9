#!/bin/sh
# tests/run.sh TESTS SANITIZED_TESTS SANITIZED_DESCENT
# Runs every test binary (cmocka, TAP output), then the sanitized ones with the
# sanitized descent binary, and ends with one line: N passed, N failed, N skipped.
# A binary that crashes or exits non-zero without reporting counts as a failure.
set -u
tests=$1
san_tests=$2
san_descent=$3
pass=0 failc=0 skip=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT

run_one() {  # $1 binary, $2 label, $3 descent binary, $4 "san" in the sanitizer pass
    # test_cuda_emu runs test_cuda on the host emulator (tests/cudaemu), whose
    # device is always there: a skip would mean it is broken, so it fails.
    # Under the sanitizers it runs in reverse order (the first pass
    # shuffles), so every run checks that no result depends on the order
    # blocks and threads run in, and without the fmnist training tests (a
    # minute there; the ops they use are each tested)
    req=${DESCENT_REQUIRE_GPU:-0}
    order=${CUDAEMU_ORDER:-} emu_skip=${CUDAEMU_SKIP_TESTS:-}
    label=$2
    case $1 in *_emu)
        req=1
        if [ "${4:-}" = san ]; then
            order=reverse emu_skip='test_train_fmnist_*'
            label="$2 (reverse order, no fmnist training)"
        fi ;;
    esac
    CMOCKA_MESSAGE_OUTPUT=TAP DESCENT_BIN=$3 DESCENT_REQUIRE_GPU=$req CUDAEMU_ORDER=$order \
        CUDAEMU_SKIP_TESTS=$emu_skip "$1" >"$log" 2>&1
    rc=$?
    # cmocka 1.1 writes a skip as "not ok N # SKIP": a skip, not a failure
    p=$(grep -c '^ok ' "$log" | tr -d ' ')
    s=$(grep -cE '^(not )?ok .*# SKIP' "$log" | tr -d ' ')
    sp=$(grep -c '^ok .*# SKIP' "$log" | tr -d ' ')
    f=$(grep '^not ok ' "$log" | grep -vc '# SKIP' | tr -d ' ')
    p=$((p - sp))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
    pass=$((pass + p)); skip=$((skip + s)); failc=$((failc + f))
    printf '%-40s %3d passed %3d failed %3d skipped\n' "$label" "$p" "$f" "$s"
    if [ "$f" -ne 0 ]; then
        echo "---- output of $label (exit $rc) ----"
        cat "$log"
        echo "----"
    else
        grep -E '^(not )?ok .*# SKIP' "$log" | sed 's/^/    /'
    fi
}

for t in $tests; do run_one "$t" "$(basename "$t")" "${DESCENT_BIN:-build/descent}"; done
# The regression gate (CI_GATE: a command, e.g. tests/ci_gate.sh): one test.
if [ -n "${CI_GATE:-}" ]; then
    $CI_GATE >"$log" 2>&1
    if [ $? -eq 0 ]; then
        pass=$((pass + 1))
        printf '%-40s %3d passed %3d failed %3d skipped\n' "ci-gate (configs/ci.ini)" 1 0 0
        grep -E '^(speed|result):' "$log" | sed 's/^/    /'
    else
        failc=$((failc + 1))
        printf '%-40s %3d passed %3d failed %3d skipped\n' "ci-gate (configs/ci.ini)" 0 1 0
        echo "---- output of the ci gate ----"
        cat "$log"
        echo "----"
    fi
fi
if [ -n "$san_tests" ]; then
    echo "== again under AddressSanitizer + UndefinedBehaviorSanitizer =="
    for t in $san_tests; do
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_one "$t" "asan+ubsan $(basename "$t")" "$san_descent" san
    done
fi
echo "$pass passed, $failc failed, $skip skipped"
[ "$failc" -eq 0 ]
