#!/usr/bin/env bash
# Syscalls per request at full speed: `perf stat` counts the syscall tracepoints of the
# process under test (nginx's worker, tollgate) while wrk drives the bench/run.sh load, so
# the process runs as fast as it does without the counting (strace -c, in profile.sh and
# icount.sh, slows it so much that reads meet more bytes at once and the counts change).
# Also counted: recvfrom calls that failed (EAGAIN), and the CPU time per request.
#
#   bench/syscalls.sh                        # stream mode, 16 connections
#   MODES="plain stream burst" CONNS="16 64" bench/syscalls.sh
#
# Environment (defaults in brackets): MODES ["stream"], CONNS ["16"], TARGETS
# ["nginx min full"], DURATION [5] s per cell, TOP [12] syscalls shown per cell,
# PLAIN_CHUNKS [8], STREAM_CHUNKS [50], BURST_PAD [200], plus BUILD_DIR, BUILD_TYPE, JOBS,
# SKIP_BUILD, SUT_CPU, LOAD_CPU, RESULTS_DIR as for run.sh. Needs perf with access to the
# syscalls tracepoints (root, or kernel.perf_event_paranoid <= -1).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${MODES=stream}"
: "${CONNS=16}"
: "${TARGETS=nginx min full}"
: "${DURATION:=5}"
: "${TOP:=12}"
: "${PLAIN_CHUNKS:=8}"
: "${STREAM_CHUNKS:=50}"
: "${BURST_PAD:=200}"
: "${RESULTS_DIR:=$here/results}"
for v in DURATION TOP PLAIN_CHUNKS STREAM_CHUNKS BURST_PAD; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ] || [ "${!v}" -gt 100000 ]; then
        die "$v=${!v}: want 1..100000"
    fi
done
for m in $MODES; do case $m in plain | stream | burst) ;; *) die "MODES: plain, stream, burst" ;; esac; done
for t in $TARGETS; do case $t in nginx | min | full) ;; *) die "TARGETS: nginx, min, full" ;; esac; done

ensure_tools wrk nginx
# perf is Debian's linux-perf package.
command -v perf >/dev/null || ensure_tools linux-perf
command -v perf >/dev/null || die "perf is missing (Debian: linux-perf)"
build_targets tollgate mock_upstream
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-syscalls.XXXXXX")
trap 'cleanup_children; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
out="$RESULTS_DIR/$(date +%F)-$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)-syscalls.raw"
mkdir -p "$out"

# measure TARGET PID PORT MODE CONNS: one cell's table row.
measure() {
    local t=$1 pid=$2 port=$3 mode=$4 c=$5
    local stat="$out/$mode-$c-$t.perf" n t0 t1 cpu calls total failed frequent
    wrk_load "$mode" 16 1 "$port" "$out/warmup.txt" >/dev/null
    t0=$(cpu_ticks "$pid")
    perf stat -x, -e 'syscalls:sys_enter_*' -e syscalls:sys_exit_recvfrom --filter 'ret < 0' \
        -p "$pid" -o "$stat" -- sleep $((DURATION + 1)) >/dev/null 2>&1 &
    local sp=$!
    BENCH_PIDS+=("$sp")
    sleep 0.3  # attached before the load starts
    n=$(wrk_load "$mode" "$c" "$DURATION" "$port" "$out/wrk-$mode-$c-$t.txt")
    wait "$sp" || true
    t1=$(cpu_ticks "$pid")
    [ "${n:-0}" -gt 0 ] || { log "$t: no requests served"; return 0; }
    cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v k="$(getconf CLK_TCK)" \
        'BEGIN {printf "%.1f", (b - a) * 1e6 / k / n}')
    # perf stat -x, lines: count,unit,event,...; the failed recvfrom are the exit tracepoint.
    calls=$(awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && $3 ~ /sys_enter_/ && $1 / n >= 0.005 {
            ev = $3; sub(/.*sys_enter_/, "", ev); printf "%s %.2f\n", ev, $1 / n }' "$stat" |
        sort -k2,2 -g -r)
    total=$(awk '{s += $2} END {printf "%.2f", s}' <<<"$calls")
    failed=$(awk -F, -v n="$n" '$1 ~ /^[0-9]+$/ && $3 ~ /sys_exit_recvfrom/ {
            printf "%.2f", $1 / n }' "$stat")
    frequent=$(head -n "$TOP" <<<"$calls" | awk '{printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2}')
    printf '| %s | %s | %s | %d | %s | %s | %s | %s |\n' "$mode" "$c" "${name_of[$t]}" "$n" \
        "$cpu" "$total" "${failed:-0}" "$frequent"
}

declare -A name_of=([nginx]="nginx" [min]="tollgate auth+router"
    [full]="tollgate full chain")
declare -A chain_of=([min]="[auth, router]" [full]="[auth, rate_limit, budget, router, usage]")

start_mock mock
{
    echo "# Syscalls per request, $(date -u '+%F %T') UTC, tollgate $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')"
    echo
    echo "perf stat on the syscall tracepoints of the process under test (CPU $SUT_CPU), wrk and the"
    echo "mock on CPU $LOAD_CPU, $DURATION s a cell; per request: all syscalls, the recvfrom calls that"
    echo "failed (EAGAIN), and the most frequent ones. CPU µs/req as in bench/run.sh."
    echo
    echo "| mode | conns | target | requests | CPU µs/req | syscalls/req | failed recvfrom/req | most frequent (per request) |"
    echo "|---|---:|---|---:|---:|---:|---:|---|"
    for t in $TARGETS; do
        if [ "$t" = nginx ]; then
            start_nginx "$MOCK_PORT"
            pid=$NGX_WORKER port=$NGX_PORT
        else
            start_gateway "$t" "${chain_of[$t]}" "$MOCK_PORT"
            pid=$GW_PID port=$GW_PORT
        fi
        for m in $MODES; do
            for c in $CONNS; do measure "$t" "$pid" "$port" "$m" "$c"; done
        done
        if [ "$t" = nginx ]; then stop_child "$NGX_PID"; else stop_child "$GW_PID"; fi
    done
} | tee "$out/report.md"
log "raw output in $out"
