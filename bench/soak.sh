#!/usr/bin/env bash
# Soak: tollgate (full chain, real SQLite ledger) in front of the mock upstream under a
# steady mix of streamed and non-streamed requests, a share of them with upstream faults
# (5xx, resets, truncated chunks, error events, slow heads), for SOAK_SECONDS (default
# 600). Every SAMPLE_SECONDS it records tollgate's RSS, open file descriptors and
# threads; at the end it prints the series, the answers by status, and compares the
# ledger's records with the requests that reached the gateway. Not part of CI.
#
#   bench/soak.sh                       # 10 minutes, 32 connections, 10% faults
#   SOAK_SECONDS=60 CONNS=16 FAULT_PCT=20 bench/soak.sh
#
# Writes bench/results/soak-YYYY-MM-DD-<host>.md. Pins tollgate to CPU 0, wrk and the
# mock to CPU 1 (as bench/run.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"

: "${SOAK_SECONDS:=600}"
: "${SAMPLE_SECONDS:=10}"
: "${CONNS:=32}"
: "${FAULT_PCT:=10}"

work=$(mktemp -d /tmp/tollgate-soak.XXXXXX)
trap 'cleanup_children; rm -rf "$work"' EXIT

ensure_tools sqlite3
build_targets tollgate mock_upstream

start_mock mock
GW_PORT=$(free_port)
admin_port=$(free_port)
{
    gw_config "$GW_PORT" "[auth, rate_limit, budget, router, usage]" "$MOCK_PORT"
    printf 'admin: {listen: "127.0.0.1:%s", token: soak-admin-token}\n' "$admin_port"
} >"$work/full.yaml"
start_pinned "$SUT_CPU" "$work/full.log" "$BUILD_DIR/gateway/tollgate" --config "$work/full.yaml"
GW_PID=$STARTED_PID
wait_listen "$GW_PORT" "$GW_PID" || { cat "$work/full.log" >&2; die "tollgate did not start"; }
wait_listen "$admin_port" "$GW_PID" || die "admin listener did not start"
db="$work/usage-$GW_PORT.db"

log "soak: ${SOAK_SECONDS}s, $CONNS connections, ${FAULT_PCT}% faults; tollgate pid $GW_PID"
KEY=$KEY FAULT_PCT=$FAULT_PCT taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNS" -d"${SOAK_SECONDS}s" \
    --timeout 30s -s "$root/bench/wrk/soak.lua" "http://127.0.0.1:$GW_PORT/v1/chat/completions" \
    >"$work/wrk.out" 2>&1 &
wrk_pid=$!
BENCH_PIDS+=("$wrk_pid")

samples="| t (s) | RSS (MiB) | open fds | threads | upstream conns active/idle |\n|---:|---:|---:|---:|---|\n"
t0=$(date +%s)
while kill -0 "$wrk_pid" 2>/dev/null; do
    now=$(( $(date +%s) - t0 ))
    rss=$(status_kb "$GW_PID" VmRSS)
    fds=$(find "/proc/$GW_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    thr=$(status_kb "$GW_PID" Threads)
    gauges=$(curl -s "http://127.0.0.1:$admin_port/metrics" |
        awk '/^tollgate_upstream_connections\{/ { if ($0 ~ /active/) a=$2; else i=$2 } END { printf "%s/%s", a, i }')
    samples+="| $now | $(awk -v k="$rss" 'BEGIN{printf "%.1f", k/1024}') | $fds | $thr | $gauges |\n"
    # Sleep in small steps so the end of wrk is noticed at once.
    for _ in $(seq $((SAMPLE_SECONDS * 10))); do
        kill -0 "$wrk_pid" 2>/dev/null || break
        sleep 0.1
    done
done
wait "$wrk_pid" || true

# Requests still in flight when wrk stopped are billed too (as client-gone): let the
# gateway finish and flush, then count.
kill -TERM "$GW_PID"
gw_exit=timeout
for _ in $(seq 600); do  # drain_timeout is 30 s; allow 60
    if ! kill -0 "$GW_PID" 2>/dev/null; then
        wait "$GW_PID" && gw_exit=0 || gw_exit=$?
        break
    fi
    sleep 0.1
done
[ "$gw_exit" = timeout ] && kill -KILL "$GW_PID" 2>/dev/null
records=$(sqlite3 "$db" "SELECT COUNT(*) FROM usage")
by_status=$(sqlite3 "$db" "SELECT status || ': ' || COUNT(*) FROM usage GROUP BY status ORDER BY status" | paste -sd ',' | sed 's/,/, /g')
soak_line=$(grep '^TGSOAK' "$work/wrk.out" || true)
answered=$(sed -n 's/.* requests=\([0-9]*\).*/\1/p' <<<"$soak_line")
crashes=$(grep -c -i "sanitizer\|terminate called\|segmentation" "$work/full.log" || true)

host=$(hostname -s)
out="$root/bench/results/soak-$(date +%Y-%m-%d)-$host.md"
mkdir -p "$root/bench/results"
{
    echo "# tollgate soak, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) cores, kernel $(uname -r)."
    echo "tollgate $(git -C "$root" rev-parse --short HEAD) (full chain, SQLite ledger), pinned to CPU $SUT_CPU; wrk and the mock on CPU $LOAD_CPU."
    echo "Load: ${SOAK_SECONDS} s, $CONNS connections, half streamed (4-40 chunks), ${FAULT_PCT}% with an upstream fault"
    echo "(503, 500, reset mid-answer, SSE error event, truncated chunk, slow head)."
    echo
    echo "## Resources over time"
    echo
    printf '%b' "$samples"
    echo
    echo "## Answers and records"
    echo
    echo "| | |"
    echo "|---|---|"
    echo "| answers seen by wrk | ${answered:-?} |"
    echo "| by status (wrk) | $(sed 's/^TGSOAK requests=[0-9]* //' <<<"$soak_line") |"
    echo "| ledger records | $records |"
    echo "| ledger records by status | $by_status |"
    echo "| records − answers | $(( records - ${answered:-0} )) (requests cut by wrk's stop are billed as 499; at most $CONNS) |"
    echo "| crash / sanitizer lines in the log | $crashes |"
    echo "| tollgate exit code after SIGTERM | $gw_exit |"
} >"$out"
cat "$out"
log "report: $out"
