#!/usr/bin/env bash
# Server-mode benchmark: stratadb-server beside redis-server on this machine, both driven with 50
# connections, single GET and SET, unpipelined and pipelined (16 per round trip). Redis is driven by
# redis-benchmark, Strata by strata-load, which drives it the same way (one thread, one event loop,
# C connections, P requests in flight on each), each for the same number of operations. Strata's SET
# commits a durable version (fsync); Redis is measured as Debian ships it (no fsync per write) and
# with `appendfsync always` (durable like Strata's).
# Needs redis-server and redis-benchmark (Debian: apt-get install redis-server redis-tools).
# Strata's GETs read keys written just before: "cold" is the first pass (each key's first read goes
# to SQLite and fills the value cache), the next row the same reads again; "no cache" is a server
# started with --read-cache-mb 0, every GET a SQLite read.
# Prints one table; figures are for this machine and run only.
set -euo pipefail
cd "$(dirname "$0")/.."
C=${C:-50}
P=${P:-16}
# A million GETs: a run of 200k lasts well under a second here, and its figures swung by a third
# from one run to the next (Redis's as much as Strata's).
N_GET=${N_GET:-1000000}
N_SET=${N_SET:-20000}
N_FILL=${N_FILL:-1000000} # SETs that fill Redis before its GETs
for t in redis-server redis-benchmark redis-cli; do
    command -v "$t" >/dev/null || { echo "$t is not installed (apt-get install redis-server redis-tools)" >&2; exit 1; }
done
# PROFILE=debug reuses the test build (the test command's smoke run); figures need release.
PROFILE=${PROFILE:-release}
if [[ $PROFILE == release ]]; then
    cargo build --release --locked -q -p strata-server --bins
else
    cargo build --locked -q -p strata-server --bins
fi
BIN="${CARGO_TARGET_DIR:-target}/$PROFILE"
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$tmp"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

redis_run() { # $1 label, $2 extra redis args
    local port; port=$(free_port)
    local dir="$tmp/redis-$port"
    mkdir -p "$dir"
    # shellcheck disable=SC2086
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' $2 >/dev/null &
    pids+=($!)
    for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
    # Strata's GETs read keys that exist: so do Redis's. Ten SETs per key of the GETs' key space
    # (-r 100000) leave almost none unset (e^-10), where an empty Redis answers most GETs nil.
    redis-benchmark -p "$port" -c "$C" -n "$N_FILL" -P "$P" -t set -r 100000 -q >/dev/null 2>&1
    for pipe in 1 "$P"; do
        for t in get set; do
            local n=$N_GET; [[ $t == set ]] && n=$N_SET
            redis-benchmark -p "$port" -c "$C" -n "$n" -P "$pipe" -t "$t" -r 100000 --csv 2>/dev/null |
                awk -F'","' -v label="$1" -v t="$t" -v pipe="$pipe" 'NR==2 { gsub(/"/, "", $2); gsub(/"/, "", $7); printf "%-28s %-4s P=%-3s %12.0f ops/s  p99 %8.3f ms\n", label, t, pipe, $2, $7 }'
        done
    done
}

strata_run() { # $1 label, $2 extra server args, $3 tests
    local dir; dir=$(mktemp -d -p "$tmp")
    # shellcheck disable=SC2086
    "$BIN/stratadb-server" --open --port 0 --data-dir "$dir/db" --max-connections 4096 $2 2>/dev/null >"$dir/out" &
    pids+=($!)
    for _ in $(seq 100); do grep -q listening "$dir/out" 2>/dev/null && break; sleep 0.1; done
    local url="strata://$(sed -n 's/listening on //p' "$dir/out")"
    for pipe in 1 "$P"; do
        for t in $3; do
            local n=$N_GET; [[ $t == set ]] && n=$N_SET
            # GET reads keys written just before, so its first pass reads each key's new version
            # from SQLite once (a cold cache); it is printed, then the same reads again (warm).
            local passes=1; [[ $t == get && -z $2 ]] && passes=2
            for pass in $(seq $passes); do
                local label=$1
                [[ $passes == 2 && $pass == 1 ]] && label="$1 (cold)"
                "$BIN/strata-load" --url "$url" --threads "$C" --ops $((n / C)) --mode "$t" --pipeline "$pipe" --prefix "$t$pipe" |
                    python3 -c 'import json,sys; r=json.load(sys.stdin); print("%-28s %-4s P=%-3s %12.0f ops/s  p99 %8.3f ms" % (sys.argv[3], sys.argv[1], sys.argv[2], r["ops_per_sec"], r["p99_ms"]))' "$t" "$pipe" "$label"
            done
        done
    done
}

echo "== $C connections; GET x$N_GET, SET x$N_SET; pipelined: $P per round trip (p99 is per round trip)"
redis_run "redis (Debian defaults)" ""
redis_run "redis (appendfsync always)" "--appendonly yes --appendfsync always"
strata_run "stratadb-server" "" "get set"
strata_run "stratadb-server, no cache" "--read-cache-mb 0" "get"
