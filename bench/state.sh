#!/usr/bin/env bash
# The cost of shared limits: tollgate with the full chain and `state.backend: memory` vs
# the same with `state.backend: redis` (a real redis-server on this host), same mock, same
# load, interleaved in one run. Reports throughput, p50/p99, gateway CPU per request and
# Redis CPU per request; the difference is what one Redis round trip per admission (plus
# the settle) costs.
#
#   bench/state.sh                                   # 5 s × 5 rounds at 16 and 64 connections
#   DURATION=2 REPEAT=1 CONNS=16 bench/state.sh      # a smoke run
#
# Env (defaults in brackets): DURATION [5]  REPEAT [5]  CONNS ["16 64"]  PLAIN_CHUNKS [8]
#   RESULTS_DIR [bench/results]  and lib.sh's BUILD_DIR, SKIP_BUILD, SUT_CPU [0], LOAD_CPU [1].
# The Redis server runs on LOAD_CPU with wrk and the mock (as a separate host would, it
# does not take the gateway's CPU).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${DURATION:=5}"
: "${REPEAT:=5}"
: "${CONNS=16 64}"
: "${PLAIN_CHUNKS:=8}"
: "${RESULTS_DIR:=$here/results}"

ensure_tools redis-server
build_targets tollgate mock_upstream

work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-state-bench.XXXXXX")
trap 'cleanup_children; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

start_mock mock
mock_port=$MOCK_PORT

redis_port=$(free_port)
start_pinned "$LOAD_CPU" "$work/redis.log" redis-server --port "$redis_port" --bind 127.0.0.1 \
    --save "" --appendonly no --dir "$work"
redis_pid=$STARTED_PID
wait_listen "$redis_port" "$redis_pid" || die "redis-server did not start: $(cat "$work/redis.log")"

chain="[auth, rate_limit, budget, router, usage]"
GW_EXTRA="state: {backend: memory}" start_gateway memory "$chain" "$mock_port"
mem_port=$GW_PORT
mem_pid=$GW_PID
admin_port=$(free_port)
admin_token=bench-admin-token-0123456789abcdef
GW_EXTRA="state: {backend: redis, redis_url: \"redis://127.0.0.1:$redis_port/0\", timeout: 500ms}
admin: {listen: \"127.0.0.1:$admin_port\", token: $admin_token}" \
    start_gateway redis "$chain" "$mock_port"
red_port=$GW_PORT
red_pid=$GW_PID
sleep 0.5

kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# one CONNS PORT PID FILE → rps p50 p99 gw_cpu_us redis_cpu_us errors
one() {
    local c=$1 port=$2 pid=$3 f=$4 t0 t1 r0 r1 line
    t0=$(cpu_ticks "$pid")
    r0=$(cpu_ticks "$redis_pid")
    CHUNKS=$PLAIN_CHUNKS KEY=$KEY timeout -k 5 $((DURATION + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$c" -d"${DURATION}s" --timeout 10s --latency -s "$here/wrk/chat.lua" \
        "http://127.0.0.1:$port/v1/chat/completions" >"$f" 2>&1 || true
    t1=$(cpu_ticks "$pid")
    r1=$(cpu_ticks "$redis_pid")
    line=$(grep '^TGBENCH' "$f" || true)
    [ -n "$line" ] || { printf '0\t0\t0\t-\t-\t1\n'; return; }
    local errs=$(($(kv "$line" err_connect) + $(kv "$line" err_read) + $(kv "$line" err_write) +
        $(kv "$line" err_status) + $(kv "$line" err_timeout)))
    awk -v req="$(kv "$line" requests)" -v dur="$(kv "$line" duration_us)" \
        -v p50="$(kv "$line" p50)" -v p99="$(kv "$line" p99)" -v g=$((t1 - t0)) -v r=$((r1 - r0)) \
        -v hz="$CLK_TCK" -v errs="$errs" 'BEGIN {
            printf "%.1f\t%d\t%d\t%.1f\t%.1f\t%d\n", (dur > 0 ? req * 1e6 / dur : 0), p50, p99,
                (req > 0 ? g * 1e6 / hz / req : 0), (req > 0 ? r * 1e6 / hz / req : 0), errs }'
}

one 16 "$mem_port" "$mem_pid" "$work/warm-mem.txt" >/dev/null
one 16 "$red_port" "$red_pid" "$work/warm-red.txt" >/dev/null
tsv=$work/state.tsv
: >"$tsv"
round=0
for c in $CONNS; do
    for rep in $(seq "$REPEAT"); do
        order="memory redis"
        [ $((round % 2)) = 1 ] && order="redis memory"
        for t in $order; do
            if [ "$t" = memory ]; then out=$(one "$c" "$mem_port" "$mem_pid" "$work/m-$c-$rep.txt")
            else out=$(one "$c" "$red_port" "$red_pid" "$work/r-$c-$rep.txt"); fi
            printf '%s\t%s\t%s\n' "$c" "$t" "$out" >>"$tsv"
            IFS=$'\t' read -r rps p50 p99 gcpu rcpu errs <<<"$out"
            log "c=$c r=$rep/$REPEAT $t: $rps req/s p50 ${p50}us p99 ${p99}us gateway ${gcpu}us/req redis ${rcpu}us/req errors $errs"
        done
        round=$((round + 1))
    done
done

# Redis's own view: commands per request and its latency figures.
redis_info=$(timeout 5 redis-cli -p "$redis_port" INFO commandstats 2>/dev/null |
    grep -E '^cmdstat_' | tr -d '\r' | sort -t= -k3 -n -r || true)

# The gateway's view: how its Redis traffic was batched.
gw_metrics=$(curl -s -m 5 -H "authorization: Bearer $admin_token" \
    "http://127.0.0.1:$admin_port/metrics" 2>/dev/null || true)
metric() { awk -v n="$1" '$1 == n {print $2}' <<<"$gw_metrics"; }

median() { sort -n | awk '{a[NR] = $1} END { if (NR == 0) print 0; else print (NR % 2 ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2) }'; }
col() { awk -F'\t' -v c="$1" -v t="$2" -v k="$3" '$1 == c && $2 == t {print $k}' "$tsv" | median; }

host=$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)
mkdir -p "$RESULTS_DIR"
report="$RESULTS_DIR/$(date +%F)-$host-state.md"
{
    echo "# state.backend: memory vs redis ($(date -u +%FT%TZ), $host)"
    echo
    echo "tollgate $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), full chain"
    echo "\`$chain\`, key with rpm/tpm/concurrency and a USD budget (all far from their caps, so"
    echo "every request is admitted and settled); non-streamed chat completions (~1 KB, $PLAIN_CHUNKS"
    echo "chunks) from wrk; gateway on CPU $SUT_CPU, wrk + mock + redis-server $(redis-server --version | awk '{print $3}') on CPU $LOAD_CPU."
    echo "Medians of $REPEAT interleaved ${DURATION}-s runs. Redis CPU is redis-server's CPU time per request."
    echo
    echo "| conns | backend | req/s | p50 µs | p99 µs | gateway CPU µs/req | Redis CPU µs/req | errors |"
    echo "|---|---|---|---|---|---|---|---|"
    for c in $CONNS; do
        for t in memory redis; do
            printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$c" "$t" "$(col "$c" "$t" 3)" \
                "$(col "$c" "$t" 4)" "$(col "$c" "$t" 5)" "$(col "$c" "$t" 6)" "$(col "$c" "$t" 7)" \
                "$(awk -F'\t' -v c="$c" -v t="$t" '$1 == c && $2 == t {s += $8} END {print s + 0}' "$tsv")"
        done
        awk -v c="$c" -v mr="$(col "$c" memory 3)" -v rr="$(col "$c" redis 3)" \
            -v m99="$(col "$c" memory 5)" -v r99="$(col "$c" redis 5)" \
            -v mg="$(col "$c" memory 6)" -v rg="$(col "$c" redis 6)" 'BEGIN {
            printf "| %s | **redis − memory** | %+.1f%% | | %+d | %+.1f | | |\n", c,
                (mr > 0 ? (rr - mr) * 100 / mr : 0), r99 - m99, rg - mg }'
    done
    echo
    admitted=$(metric 'tollgate_state_admissions_total{result="admitted"}')
    echo "The gateway's Redis traffic over the whole run (tollgate_state_* metrics): ${admitted:-?}"
    echo "admissions, $(metric tollgate_state_settles_total'{result="sent"}') settle batches,"
    echo "$(metric tollgate_state_redis_commands_total) commands in $(metric tollgate_state_redis_writes_total) socket writes,"
    echo "$(metric tollgate_state_redis_lane_commands_total) of them on the worker's own connection (lane)."
    echo
    echo "Redis commands over the whole run (one EVALSHA per admission; settles batched per"
    echo "key):"
    echo
    echo '```'
    echo "${redis_info:-(redis-cli INFO unavailable)}"
    echo '```'
} >"$report"
log "report: $report"
cat "$report"
