#!/usr/bin/env bash
# The relay's cost in counts that do not depend on how busy the machine is: user-space
# instructions per request (valgrind --tool=callgrind) and syscalls per request (strace -c),
# for nginx as a plain reverse proxy, tollgate with [auth, router] and tollgate with the full
# chain, under the same wrk load as bench/run.sh. CPU time on a shared VM moves by ±30 %
# between identical runs; these counts move by a few percent, so a change's effect shows.
# They are not CPU time: a syscall's kernel work is counted once whatever it costs, and
# callgrind counts a `rep movsb` copy per byte. bench/run.sh measures time.
#
#   bench/icount.sh                            # plain, stream and burst; 16 connections
#   MODES=burst CONNS="16 64" bench/icount.sh
#
# Environment (defaults in brackets): MODES ["plain stream burst"], CONNS ["16"],
# TARGETS ["nginx min full"], DURATION [10] s of load under callgrind (which runs the
# server ~50x slower: the requests it serves are what is divided by), STRACE_DURATION [3] s,
# SKIP_STRACE [0], PLAIN_CHUNKS [8], STREAM_CHUNKS [50], BURST_PAD [200], plus BUILD_DIR,
# BUILD_TYPE, JOBS, SKIP_BUILD, SUT_CPU, LOAD_CPU, RESULTS_DIR as for run.sh.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${MODES=plain stream burst}"
: "${CONNS=16}"
: "${TARGETS=nginx min full}"
: "${DURATION:=10}"
: "${STRACE_DURATION:=3}"
: "${SKIP_STRACE:=0}"
: "${PLAIN_CHUNKS:=8}"
: "${STREAM_CHUNKS:=50}"
: "${BURST_PAD:=200}"
: "${RESULTS_DIR:=$here/results}"
for v in DURATION STRACE_DURATION PLAIN_CHUNKS STREAM_CHUNKS BURST_PAD; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -gt 100000 ]; then die "$v=${!v}: want 0..100000"; fi
done
for m in $MODES; do case $m in plain | stream | burst) ;; *) die "MODES: plain, stream, burst" ;; esac; done
for t in $TARGETS; do case $t in nginx | min | full) ;; *) die "TARGETS: nginx, min, full" ;; esac; done

ensure_tools wrk valgrind strace nginx
command -v callgrind_control >/dev/null || die "callgrind_control (valgrind) is missing"
build_targets tollgate mock_upstream
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-icount.XXXXXX")
trap 'cleanup_children; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
stamp=$(date +%F)
host=$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)
raw="$RESULTS_DIR/$stamp-$host-icount.raw"
mkdir -p "$raw"

# start TARGET → PORT, PID (the process that serves: nginx runs as one process here).
start() {
    case $1 in
        nginx) start_nginx "$MOCK_PORT"; PORT=$NGX_PORT; PID=$NGX_PID ;;
        min) start_gateway min "[auth, router]" "$MOCK_PORT"; PORT=$GW_PORT; PID=$GW_PID ;;
        full) start_gateway full "[auth, rate_limit, budget, router, usage]" "$MOCK_PORT"
            PORT=$GW_PORT; PID=$GW_PID ;;
    esac
}

# The Ir total of a callgrind dump.
dump_ir() { awk '/^(summary|totals):/ {print $2; exit}' "$1"; }

start_mock mock
declare -A IR SYS REQS
for mode in $MODES; do
    for c in $CONNS; do
        for t in $TARGETS; do
            cell="$mode-c$c-$t"
            # Instructions: callgrind, counters zeroed after a warm-up, dumped after the load.
            out="$work/callgrind-$cell.out"
            SUT_WRAP="valgrind --tool=callgrind --callgrind-out-file=$out" SUT_START_SECS=120 start "$t"
            wrk_load plain 4 2 "$PORT" "$raw/warmup-$cell.txt" >/dev/null
            callgrind_control -z "$PID" >/dev/null
            n=$(wrk_load "$mode" "$c" "$DURATION" "$PORT" "$raw/wrk-callgrind-$cell.txt")
            callgrind_control -d "$PID" >/dev/null
            dump=$(find "$work" -name "$(basename "$out").*" -newer "$raw/warmup-$cell.txt" | sort | tail -1)
            ir=$( [ -n "$dump" ] && dump_ir "$dump" || echo 0)
            [ -n "$dump" ] && cp "$dump" "$raw/callgrind-$cell.out"
            stop_child "$PID"
            REQS[$cell]=${n:-0}
            IR[$cell]=$(awk -v i="${ir:-0}" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.0f", i / n; else print "-" }')
            log "$cell: ${n:-0} requests, ${IR[$cell]} instructions per request"
            # Syscalls: strace -c on the server (every thread), not under valgrind.
            SYS[$cell]=-
            if [ "$SKIP_STRACE" != 1 ]; then
                start "$t"
                wrk_load plain 4 1 "$PORT" "$work/warmup.txt" >/dev/null
                pids=$PID
                [ "$t" = nginx ] && pids=$NGX_WORKER
                strace -c -f -p "$pids" -o "$raw/strace-$cell.txt" >"$work/strace.log" 2>&1 &
                st=$!
                BENCH_PIDS+=("$st")
                sleep 0.5  # attached before the load starts
                n=$(wrk_load "$mode" "$c" "$STRACE_DURATION" "$PORT" "$raw/wrk-strace-$cell.txt")
                kill -INT "$st" 2>/dev/null || true
                for _ in $(seq 100); do kill -0 "$st" 2>/dev/null || break; sleep 0.1; done
                wait "$st" 2>/dev/null || true
                # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall.
                calls=$(awk '$NF == "total" {print $4}' "$raw/strace-$cell.txt" 2>/dev/null || true)
                SYS[$cell]=$(awk -v s="${calls:-0}" -v n="${n:-0}" 'BEGIN { if (n > 0) printf "%.2f", s / n; else print "-" }')
                stop_child "$PID"
            fi
        done
    done
done

report="$RESULTS_DIR/$stamp-$host-icount.md"
built=$(awk -F= '/^CMAKE_BUILD_TYPE:/ {print $2}' "$BUILD_DIR/CMakeCache.txt" 2>/dev/null || true)
{
    echo "# Instructions and syscalls per request: nginx vs tollgate"
    echo
    echo "$(date -u '+%F %T') UTC on \`$host\`, tollgate $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'),"
    echo "${built:-$BUILD_TYPE} build, $(nginx -v 2>&1 | sed 's/.*: //'). wrk -t1 with \`bench/wrk/chat.lua\` (the ~1 KB chat"
    echo "request of bench/run.sh); plain: $PLAIN_CHUNKS content chunks as one JSON answer; stream: $STREAM_CHUNKS"
    echo "content events; burst: the same stream with ${BURST_PAD}-byte padding per event, written by the mock in one"
    echo "write. Instructions: user space, every thread, counted by callgrind over ${DURATION} s of load"
    echo "(counters zeroed after a warm-up) divided by the requests served; syscalls: strace -c -f"
    echo "over ${STRACE_DURATION} s. min = tollgate [auth, router]; full = auth, rate_limit, budget, router,"
    echo "usage (SQLite ledger). Ratios are to nginx in the same cell."
    echo
    echo "| mode | conns | target | requests (callgrind) | instructions/req | × nginx | syscalls/req | × nginx |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|"
    for mode in $MODES; do
        for c in $CONNS; do
            for t in $TARGETS; do
                cell="$mode-c$c-$t"
                base="$mode-c$c-nginx"
                ri=$(awk -v a="${IR[$cell]}" -v b="${IR[$base]:--}" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "-" }')
                rs=$(awk -v a="${SYS[$cell]}" -v b="${SYS[$base]:--}" 'BEGIN { if (b + 0 > 0 && a + 0 > 0) printf "%.2f", a / b; else print "-" }')
                echo "| $mode | $c | $t | ${REQS[$cell]} | ${IR[$cell]} | $ri | ${SYS[$cell]} | $rs |"
            done
        done
    done
    echo
    echo "Raw output (wrk, callgrind dumps, strace summaries): \`$(basename "$raw")/\`."
} >"$report"
cat "$report"
log "report: $report"
