#!/bin/sh
# tests/report_check.sh DESCENT OUT: `make report-check`. Runs the CI suite
# (configs/ci.ini), writes its report, checks that every figure exists as a
# valid PNG and SVG, and renders report.html in headless Chromium to
# OUT/report.png (a full-page screenshot to look at).
set -eu
bin=$1
out=$2
rm -rf "$out"
mkdir -p "$out"
"$bin" sweep configs/ci.ini -j 2 --quiet --out "$out/sweep"
"$bin" report "$out/sweep"
n=0
for png in "$out"/sweep/plots/*.png; do
    svg=${png%.png}.svg
    head -c 8 "$png" | od -An -tx1 | tr -d ' \n' | grep -q '^89504e470d0a1a0a$' || { echo "report-check: $png is not a PNG"; exit 1; }
    grep -q '<svg' "$svg" || { echo "report-check: $svg is not an SVG"; exit 1; }
    n=$((n + 1))
done
[ "$n" -gt 0 ] || { echo "report-check: no figures in $out/sweep/plots"; exit 1; }
grep -q '<svg' "$out/sweep/report.html" || { echo "report-check: report.html has no inlined figure"; exit 1; }
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,6000 \
    --screenshot="$out/report.png" "file://$(cd "$out/sweep" && pwd)/report.html" >/dev/null 2>&1
head -c 8 "$out/report.png" | od -An -tx1 | tr -d ' \n' | grep -q '^89504e470d0a1a0a$' || { echo "report-check: no screenshot"; exit 1; }
echo "report-check: $n figures (PNG and SVG) ok; report $out/sweep/report.html; screenshot $out/report.png"
