# lib.sh: the shell helpers the peer scripts share (sourced, not run).

# csv_get FILE COLUMN: the value of COLUMN (by header name) in the first data
# row; RFC 4180 quoting, so a quoted value holding a comma stays one field.
csv_get() {
    awk -v col="$2" '
    function split_csv(line, out,    n, i, c, f, q) {
        n = 0; f = ""; q = 0
        for (i = 1; i <= length(line); i++) {
            c = substr(line, i, 1)
            if (q) {
                if (c == "\"") {
                    if (substr(line, i + 1, 1) == "\"") { f = f "\""; i++ } else q = 0
                } else f = f c
            } else if (c == "\"") q = 1
            else if (c == ",") { out[++n] = f; f = "" }
            else f = f c
        }
        out[++n] = f
        return n
    }
    { sub(/\r$/, "") }
    NR == 1 { nh = split_csv($0, h); for (i = 1; i <= nh; i++) if (h[i] == col) k = i; next }
    NR == 2 { if (k) { split_csv($0, v); print v[k] } exit }
    ' "$1"
}

# kv_get "LINE" KEY: the value of KEY=value in a space-separated line.
kv_get() {
    printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -n 1
}

# median: of the numbers on stdin (one a line; empty lines ignored).
median() {
    grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print ""; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# fmt FORMAT VALUE: printf, or "-" when the value is missing.
# shellcheck disable=SC2059 # the format is the argument on purpose
fmt() { if [ -n "$2" ]; then printf "$1" "$2"; else echo "-"; fi; }
