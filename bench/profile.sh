#!/usr/bin/env bash
# Where tollgate's CPU goes under load: the full chain in front of the mock, driven by wrk,
#  1. sampled with `perf record -g` (falling back to `valgrind --tool=callgrind` when perf
#     cannot record), printing the top symbols by self time and by inclusive time;
#  2. traced with `strace -c -f`, printing the syscalls per request.
# Pinning as in bench/run.sh: tollgate on CPU 0, wrk and the mock on CPU 1.
#
#   bench/profile.sh                       # non-streamed, 64 connections
#   MODE=stream CONNS=16 bench/profile.sh  # SSE, 50 chunks per answer
#   MODE=burst CONNS=16 bench/profile.sh   # SSE, the whole body in one upstream write
#
# Environment (defaults in brackets): MODE [plain] (plain | stream | burst), CONNS [64],
# DURATION [10] s of perf sampling, STRACE_DURATION [5] s, TOP [30] symbols,
# POLICIES ["[auth, rate_limit, budget, router, usage]"], PROFILER [auto] (auto | perf |
# callgrind), SKIP_PERF [0], SKIP_STRACE [0], plus BUILD_DIR, BUILD_TYPE, JOBS, SKIP_BUILD,
# SUT_CPU, LOAD_CPU, RESULTS_DIR as for run.sh. For call graphs with full stacks build with
# frame pointers in a directory of its own, e.g.
#   BUILD_DIR=build-prof BUILD_TYPE=RelWithDebInfo \
#   CXXFLAGS=-fno-omit-frame-pointer bench/profile.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${MODE:=plain}"
: "${CONNS:=64}"
: "${DURATION:=10}"
: "${STRACE_DURATION:=5}"
: "${TOP:=30}"
: "${POLICIES:=[auth, rate_limit, budget, router, usage]}"
: "${PROFILER:=auto}"
: "${SKIP_PERF:=0}"
: "${SKIP_STRACE:=0}"
: "${STREAM_CHUNKS:=50}"
: "${PLAIN_CHUNKS:=8}"
: "${RESULTS_DIR:=$here/results}"
case $MODE in plain | stream | burst) ;; *) die "MODE=$MODE: plain, stream or burst" ;; esac
case $PROFILER in auto | perf | callgrind) ;; *) die "PROFILER=$PROFILER: auto, perf or callgrind" ;; esac
for v in CONNS DURATION STRACE_DURATION TOP; do
    if ! [[ "${!v}" =~ ^[0-9]+$ ]] || [ "${!v}" -lt 1 ] || [ "${!v}" -gt 100000 ]; then
        die "$v=${!v}: want 1..100000"
    fi
done

ensure_tools wrk strace
build_targets tollgate mock_upstream
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-profile.XXXXXX")
trap 'cleanup_children; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
out="$RESULTS_DIR/$(date +%F)-$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)-profile-$MODE.raw"
mkdir -p "$out"

stream=0
chunks=$PLAIN_CHUNKS
extra=
[ "$MODE" = stream ] && { stream=1; chunks=$STREAM_CHUNKS; }
[ "$MODE" = burst ] && { stream=1; chunks=$STREAM_CHUNKS; extra="burst=1 pad=${BURST_PAD:-200}"; }

# wrk DURATION CONNS FILE: the run.sh load; prints the number of requests served.
load() {
    STREAM=$stream CHUNKS=$chunks MOCK_EXTRA=$extra KEY=$KEY timeout -k 5 $(($1 + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$2" -d"$1s" --timeout 10s --latency -s "$here/wrk/chat.lua" \
        "http://127.0.0.1:$GW_PORT/v1/chat/completions" >"$3" 2>&1 || true
    local line
    line=$(grep '^TGBENCH' "$3" || true)
    tr ' ' '\n' <<<"$line" | awk -F= '$1 == "requests" {print $2}'
}

# top N FILE: the first N report lines, without comments, blank lines and perf's padding.
top() {
    awk -v n="$1" '/^#/ || /^[ \t]*$/ { next }
        { sub(/[ \t-]+$/, ""); print substr($0, 1, 200); if (++k >= n) exit }' "$2"
}

start_mock mock
start_gateway tollgate "$POLICIES" "$MOCK_PORT"
log "mock :$MOCK_PORT (pid $MOCK_PID), tollgate :$GW_PORT (pid $GW_PID), $MODE, $CONNS connections"
n=$(load 1 16 "$out/warmup.txt")
[ "${n:-0}" -gt 0 ] || { cat "$out/warmup.txt" "$work/tollgate.log" >&2; die "warm-up failed"; }

# ---------------------------------------------------------------------------------------
# perf (or callgrind)

profiled=""
if [ "$SKIP_PERF" != 1 ] && [ "$PROFILER" != callgrind ] && command -v perf >/dev/null; then
    log "perf record -g for $DURATION s"
    perf record -g -o "$out/perf.data" -p "$GW_PID" -- sleep "$DURATION" \
        >"$out/perf-record.log" 2>&1 &
    perf_pid=$!
    BENCH_PIDS+=("$perf_pid")
    sleep 0.3  # let perf attach before the load starts
    n=$(load "$DURATION" "$CONNS" "$out/wrk-perf.txt")
    wait "$perf_pid" || true
    if [ -s "$out/perf.data" ] &&
        perf report -i "$out/perf.data" --stdio --no-children -g none --sort symbol \
            --percent-limit 0.3 >"$out/perf-self.txt" 2>/dev/null &&
        grep -q '%' "$out/perf-self.txt"; then
        perf report -i "$out/perf.data" --stdio --children -g none --sort symbol \
            --percent-limit 1 >"$out/perf-children.txt" 2>/dev/null || true
        profiled=perf
        echo "## perf: top $TOP symbols by self time ($MODE, $CONNS connections, $n requests in $DURATION s)"
        top "$TOP" "$out/perf-self.txt"
        echo
        echo "## perf: top $TOP symbols by inclusive time (children)"
        top "$TOP" "$out/perf-children.txt"
        echo
        echo "(full reports: $out/perf-self.txt, perf-children.txt; data: perf.data)"
        echo
    else
        log "perf could not record (see $out/perf-record.log)"
    fi
fi
if [ "$SKIP_PERF" != 1 ] && [ -z "$profiled" ] && [ "$PROFILER" != perf ]; then
    command -v valgrind >/dev/null || ensure_tools valgrind
    log "valgrind --tool=callgrind for $DURATION s (about 50x slower: expect few requests)"
    stop_child "$GW_PID"
    start_pinned "$SUT_CPU" "$work/callgrind.log" valgrind --tool=callgrind \
        --callgrind-out-file="$out/callgrind.out" "$BUILD_DIR/gateway/tollgate" \
        --config "$work/tollgate.yaml"
    vg_pid=$STARTED_PID
    wait_listen "$GW_PORT" "$vg_pid" 60 || { cat "$work/callgrind.log" >&2; die "tollgate under valgrind did not start"; }
    n=$(load "$DURATION" "$CONNS" "$out/wrk-callgrind.txt")
    stop_child "$vg_pid"  # callgrind writes its output at exit
    echo "## callgrind: top $TOP functions by self cost ($MODE, $CONNS connections, $n requests)"
    callgrind_annotate --inclusive=no "$out/callgrind.out" >"$out/callgrind-self.txt" 2>&1 || true
    callgrind_annotate --inclusive=yes "$out/callgrind.out" >"$out/callgrind-incl.txt" 2>&1 || true
    # The function table: after the "Ir  file:function" heading and its dashed rule.
    for f in self incl; do
        awk '/file:function/ { h = 1; next } h && /^-+$/ { body = 1; next } body' \
            "$out/callgrind-$f.txt" >"$out/callgrind-$f.top"
    done
    top "$TOP" "$out/callgrind-self.top"
    echo
    echo "## callgrind: top $TOP functions by inclusive cost"
    top "$TOP" "$out/callgrind-incl.top"
    echo
    # strace needs a gateway that is not under valgrind.
    start_gateway tollgate "$POLICIES" "$MOCK_PORT"
    load 1 16 "$out/warmup2.txt" >/dev/null
fi

# ---------------------------------------------------------------------------------------
# strace -c: syscalls per request

if [ "$SKIP_STRACE" != 1 ]; then
    log "strace -c -f for $STRACE_DURATION s"
    strace -c -f -p "$GW_PID" -o "$out/strace.txt" >"$out/strace.log" 2>&1 &
    st_pid=$!
    BENCH_PIDS+=("$st_pid")
    sleep 0.5  # attached to every thread before the load starts
    n=$(load "$STRACE_DURATION" "$CONNS" "$out/wrk-strace.txt")
    kill -INT "$st_pid" 2>/dev/null || true  # detaches and writes the summary
    for _ in $(seq 100); do kill -0 "$st_pid" 2>/dev/null || break; sleep 0.1; done
    wait "$st_pid" 2>/dev/null || true
    echo "## strace -c -f: syscalls per request ($MODE, $CONNS connections, $n requests under strace)"
    echo
    if [ -s "$out/strace.txt" ] && [ "${n:-0}" -gt 0 ]; then
        # strace -c columns: % time, seconds, usecs/call, calls, [errors], syscall.
        awk -v n="$n" '
            $1 ~ /^[0-9.]+$/ && NF >= 5 {
                calls = $4; errs = (NF == 6) ? $5 : 0; name = $NF
                if (name == "total") { total = calls; terr = errs; next }
                printf "%-20s %12d calls %8.2f /req %10d errors %6.2f /req\n",
                    name, calls, calls / n, errs, errs / n
            }
            END { printf "%-20s %12d calls %8.2f /req %10d errors %6.2f /req\n",
                "total", total, total / n, terr, terr / n }' "$out/strace.txt" | sort -k4,4 -g -r
    else
        echo "strace produced nothing (see $out/strace.log)"
    fi
    echo
    echo "(strace slows the gateway down a lot: the counts per request hold, the rate does not;"
    echo " raw: $out/strace.txt)"
fi
log "raw output in $out"
