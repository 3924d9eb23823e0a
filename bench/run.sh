#!/usr/bin/env bash
# The cost of a plain reverse proxy, measured side by side: the mock upstream straight,
# nginx as a plain reverse proxy, tollgate with [auth, router], and tollgate with the full
# chain, driven by the same load. One command; see bench/README.md for what it measures.
#
#   bench/run.sh                                      # the full run (about 20 minutes)
#   DURATION=1 CONNS="1 16" REPEAT=1 CAP_STREAMS=500 bench/run.sh   # a smoke run
#
# Everything is configured by environment variables (defaults in brackets):
#   BUILD_DIR [build-bench]  BUILD_TYPE [Release]  JOBS [nproc]  SKIP_BUILD [0]
#   DURATION [5] s per wrk run    CONNS ["1 16 64 256"]    REPEAT [5] (medians are reported)
#   MODES ["plain stream burst"]  TARGETS ["direct nginx min full"]  WARMUP [1] s per target
#   PLAIN_CHUNKS [8]  STREAM_CHUNKS [50]: the mock's content chunks per answer
#   BURST_PAD [200]: burst mode's extra bytes per event (the whole SSE body, ~20 KB with
#   54 events, reaches the gateway in one upstream write)
#   LAT_CONNS ["1 64"]  LAT_DURATION [DURATION]  LAT_MOCK ["chunks=50 delay_ms=5"]
#   LAT_TARGETS ["direct nginx full"]: streaming latency (streamgen)
#   CAP_STREAMS [10000] (0: skip)  CAP_MOCK ["chunks=20 delay_ms=500"]  CAP_PARALLEL [256]
#   CAP_TIMEOUT [120] s  CAP_FORCE [0]: 1 = do not lower CAP_STREAMS to what the fd limit allows
#   CAP_HOLD [1]: then, through a fresh tollgate, the same number of streams each held after
#   its first content event (`#mock hold=1`) while RSS is read: a steady state, so the figure
#   repeats within about 1 % where the sampled one above moves by several
#   KEYS [1]: client keys the wrk load rotates over (the ledger's cost grows with keys)
#   SUT_CPU [0]  LOAD_CPU [1]  RESULTS_DIR [bench/results]  KEEP_WORK [0]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/.." && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"

: "${DURATION:=5}"
: "${CONNS=1 16 64 256}"
: "${REPEAT:=5}"
: "${MODES=plain stream burst}"
: "${TARGETS=direct nginx min full}"
: "${WARMUP:=1}"
: "${PLAIN_CHUNKS:=8}"
: "${STREAM_CHUNKS:=50}"
: "${BURST_PAD:=200}"
: "${LAT_CONNS=1 64}"
: "${LAT_DURATION:=$DURATION}"
: "${LAT_MOCK:=chunks=50 delay_ms=5}"
: "${LAT_TARGETS=direct nginx full}"
: "${CAP_STREAMS:=10000}"
: "${CAP_MOCK:=chunks=20 delay_ms=500}"
: "${CAP_PARALLEL:=256}"
: "${CAP_TIMEOUT:=120}"
: "${CAP_FORCE:=0}"
: "${CAP_HOLD:=1}"
: "${RESULTS_DIR:=$here/results}"
: "${KEEP_WORK:=0}"

int_in() {  # name value lo hi
    if ! [[ "$2" =~ ^[0-9]+$ ]] || [ "$2" -lt "$3" ] || [ "$2" -gt "$4" ]; then
        die "$1=$2: want $3..$4"
    fi
}
int_in DURATION "$DURATION" 1 3600
int_in LAT_DURATION "$LAT_DURATION" 1 3600
int_in REPEAT "$REPEAT" 1 100
int_in WARMUP "$WARMUP" 0 60
int_in CAP_STREAMS "$CAP_STREAMS" 0 100000
int_in CAP_TIMEOUT "$CAP_TIMEOUT" 10 3600
for c in $CONNS $LAT_CONNS; do int_in "connections" "$c" 1 20000; done
for t in $TARGETS $LAT_TARGETS; do
    case $t in direct | nginx | min | full) ;; *) die "unknown target $t (direct nginx min full)" ;; esac
done
int_in BURST_PAD "$BURST_PAD" 0 100000
int_in KEYS "${KEYS:=1}" 1 10000
for m in $MODES; do case $m in plain | stream | burst) ;; *) die "unknown mode $m (plain stream burst)" ;; esac; done

ensure_tools wrk
build_targets tollgate mock_upstream streamgen

# File descriptors: 10k streams through the gateway need ~2 per stream in the gateway and
# one per stream in the mock and in streamgen. Raise what can be raised.
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt 1048576 ]; then
    ulimit -Hn 1048576 2>/dev/null || true  # needs CAP_SYS_RESOURCE; else stays as it is
fi
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)

work=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-bench.XXXXXX")
on_exit() {
    cleanup_children
    if [ "$KEEP_WORK" = 1 ]; then log "work dir kept: $work"; else rm -rf "$work"; fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

host=$(hostname -s 2>/dev/null || cat /proc/sys/kernel/hostname)
mkdir -p "$RESULTS_DIR"
base="$RESULTS_DIR/$(date +%F)-$host"
for n in $(seq 2 1000); do
    [ -e "$base.md" ] || [ -e "$base.raw" ] || break
    base="$RESULTS_DIR/$(date +%F)-$host-$n"
done
report=$base.md
raw=$base.raw
mkdir -p "$raw"

nt=$(wc -w <<<"$TARGETS")
est=$(($(wc -w <<<"$MODES") * $(wc -w <<<"$CONNS") * REPEAT * nt * DURATION +
    $(wc -w <<<"$LAT_CONNS") * REPEAT * $(wc -w <<<"$LAT_TARGETS") * LAT_DURATION + nt * WARMUP))
log "about $((est / 60)) min $((est % 60)) s of load, plus the capacity run; raw output in $raw"

# ---------------------------------------------------------------------------------------
# Start everything

start_mock mock
declare -A port_of pid_of name_of idle_rss
port_of[direct]=$MOCK_PORT
pid_of[direct]=$MOCK_PID
name_of[direct]="direct (mock)"
mock_port=$MOCK_PORT
start_nginx "$mock_port"
port_of[nginx]=$NGX_PORT
pid_of[nginx]=$NGX_WORKER
name_of[nginx]="nginx"
start_gateway min "[auth, router]" "$mock_port"
port_of[min]=$GW_PORT
pid_of[min]=$GW_PID
name_of[min]="tollgate auth+router"
start_gateway full "[auth, rate_limit, budget, router, usage]" "$mock_port"
port_of[full]=$GW_PORT
pid_of[full]=$GW_PID
name_of[full]="tollgate full chain"
sleep 0.5
for t in direct nginx min full; do idle_rss[$t]=$(status_kb "${pid_of[$t]}" VmRSS); done
log "mock :${port_of[direct]}  nginx :${port_of[nginx]}  min :${port_of[min]}  full :${port_of[full]}"

# ---------------------------------------------------------------------------------------
# wrk

kv() { tr ' ' '\n' <<<"$1" | awk -F= -v k="$2" '$1 == k {print $2}'; }

# run_wrk MODE CONNS TARGET DURATION FILE → one TSV line
# (rps p50 p90 p99 cpu_us errors requests user_us ledger_us)
run_wrk() {
    local mode=$1 c=$2 t=$3 d=$4 f=$5 stream=0 chunks=$PLAIN_CHUNKS extra= pid=${pid_of[$3]}
    [ "$mode" = stream ] && { stream=1; chunks=$STREAM_CHUNKS; }
    [ "$mode" = burst ] && { stream=1; chunks=$STREAM_CHUNKS; extra="burst=1 pad=$BURST_PAD"; }
    local t0 t1 u0 u1 l0 l1 line
    t0=$(cpu_ticks "$pid")
    u0=$(user_ticks "$pid")
    l0=$(thread_ticks "$pid" tg-ledger)
    STREAM=$stream CHUNKS=$chunks MOCK_EXTRA=$extra KEY=$KEY KEYS=${KEYS:-1} timeout -k 5 $((d + 30)) taskset -c "$LOAD_CPU" \
        wrk -t1 -c"$c" -d"${d}s" --timeout 10s --latency -s "$here/wrk/chat.lua" \
        "http://127.0.0.1:${port_of[$t]}/v1/chat/completions" >"$f" 2>&1 || true
    t1=$(cpu_ticks "$pid")
    u1=$(user_ticks "$pid")
    l1=$(thread_ticks "$pid" tg-ledger)
    line=$(grep '^TGBENCH' "$f" || true)
    [ -n "$line" ] || { printf '0\t0\t0\t0\t-\t1\t0\t-\t-\n'; return; }
    local req dur errs
    req=$(kv "$line" requests)
    dur=$(kv "$line" duration_us)
    errs=$(($(kv "$line" err_connect) + $(kv "$line" err_read) + $(kv "$line" err_write) +
        $(kv "$line" err_status) + $(kv "$line" err_timeout)))
    awk -v req="$req" -v dur="$dur" -v p50="$(kv "$line" p50)" -v p90="$(kv "$line" p90)" \
        -v p99="$(kv "$line" p99)" -v ticks=$((t1 - t0)) -v uticks=$((u1 - u0)) \
        -v lticks="${l0:+$((l1 - l0))}" -v hz="$CLK_TCK" -v errs="$errs" \
        'BEGIN {
            rps = dur > 0 ? req * 1e6 / dur : 0
            cpu = req > 0 ? sprintf("%.2f", ticks * 1e6 / hz / req) : "-"
            user = req > 0 ? sprintf("%.2f", uticks * 1e6 / hz / req) : "-"
            ledger = req > 0 && lticks != "" ? sprintf("%.2f", lticks * 1e6 / hz / req) : "-"
            printf "%.1f\t%d\t%d\t%d\t%s\t%d\t%d\t%s\t%s\n", rps, p50, p90, p99, cpu, errs, req, user, ledger
        }'
}

if [ "$WARMUP" -gt 0 ]; then
    for t in $TARGETS; do
        out=$(run_wrk plain 16 "$t" "$WARMUP" "$raw/warmup-$t.txt")
        IFS=$'\t' read -r rps _ _ _ _ errs req _ <<<"$out"
        if [ "$req" = 0 ] || [ "$errs" != 0 ]; then
            cat "$raw/warmup-$t.txt" >&2
            die "warm-up against $t failed ($req requests, $errs errors); logs in $work (KEEP_WORK=1)"
        fi
        log "warm-up $t: $rps req/s"
    done
fi

tsv=$raw/wrk.tsv
: >"$tsv"
round=0
for mode in $MODES; do
    for c in $CONNS; do
        for rep in $(seq "$REPEAT"); do
            # Interleaved: each round visits every target for this cell, starting one later
            # each round so no target always runs first.
            read -ra tl <<<"$TARGETS"
            for i in $(seq 0 $((nt - 1))); do
                t=${tl[$(((i + round) % nt))]}
                out=$(run_wrk "$mode" "$c" "$t" "$DURATION" "$raw/wrk-$mode-c$c-$t-r$rep.txt")
                printf '%s\t%s\t%s\t%s\t%s\n' "$mode" "$c" "$t" "$rep" "$out" >>"$tsv"
                IFS=$'\t' read -r rps p50 _ p99 cpu errs _ <<<"$out"
                log "$mode c=$c r=$rep/$REPEAT $t: $rps req/s p50 ${p50}us p99 ${p99}us cpu ${cpu}us/req errors $errs"
            done
            round=$((round + 1))
        done
    done
done

# ---------------------------------------------------------------------------------------
# Streaming latency (streamgen)

sg_kv() { awk -F= -v k="$2" '$1 == k {print $2}' "$1"; }
lat_tsv=$raw/streamgen.tsv
: >"$lat_tsv"
read -ra ltl <<<"$LAT_TARGETS"
nlt=${#ltl[@]}
round=0
for c in $LAT_CONNS; do
    for rep in $(seq "$REPEAT"); do
        for i in $(seq 0 $((nlt - 1))); do
            t=${ltl[$(((i + round) % nlt))]}
            f=$raw/streamgen-c$c-$t-r$rep.txt
            timeout -k 5 $((LAT_DURATION + 60)) taskset -c "$LOAD_CPU" "$BUILD_DIR/bench/streamgen" \
                --target "127.0.0.1:${port_of[$t]}" --connections "$c" --duration "$LAT_DURATION" \
                --mock "$LAT_MOCK" --key "$KEY" --timeout $((LAT_DURATION + 30)) >"$f" 2>&1 || true
            vals=()
            for k in ttfb_p50_us ttfb_p90_us ttfb_p99_us gap_p50_us gap_p90_us gap_p99_us \
                streams_ok streams_failed ttfb_samples gap_samples; do
                v=$(sg_kv "$f" "$k")
                vals+=("${v:-0}")
            done
            (IFS=$'\t'; printf '%s\t%s\t%s\t%s\n' "$c" "$t" "$rep" "${vals[*]}") >>"$lat_tsv"
            log "stream latency c=$c r=$rep/$REPEAT $t: ttfb p50 ${vals[0]}us p99 ${vals[2]}us, gap p50 ${vals[3]}us p99 ${vals[5]}us, ok ${vals[6]} failed ${vals[7]}"
        done
        round=$((round + 1))
    done
done

declare -A peak_rss
for t in direct nginx min full; do peak_rss[$t]=$(status_kb "${pid_of[$t]}" VmHWM); done

# ---------------------------------------------------------------------------------------
# Capacity: CAP_STREAMS concurrent slow streams through a fresh tollgate (full chain)

cap_note=""
if [ "$CAP_STREAMS" -gt 0 ]; then
    start_mock cap-mock
    cap_mock_port=$MOCK_PORT
    cap_mock_pid=$MOCK_PID
    start_gateway cap "[auth, rate_limit, budget, router, usage]" "$cap_mock_port" \
        $((CAP_STREAMS * 2 + 1024))
    cap_pid=$GW_PID
    cap_port=$GW_PORT
    sleep 0.5
    gw_fds=$(find "/proc/$cap_pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    gw_limit=$(awk '/^Max open files/ {print $4}' "/proc/$cap_pid/limits")
    # Each stream holds two descriptors in the gateway (client + upstream); keep a margin for
    # the ledger, the log and the accept that is in flight.
    cap_max=$(((gw_limit - gw_fds - 32) / 2))
    cap_n=$CAP_STREAMS
    if [ "$cap_n" -gt "$cap_max" ]; then
        cap_note="The fd limit is $gw_limit per process (ulimit -Hn: $(ulimit -Hn); raising it needs CAP_SYS_RESOURCE) and tollgate holds 2 per stream (client + upstream) plus $gw_fds at idle, so one tollgate process can hold at most $cap_max streams."
        if [ "$CAP_FORCE" = 1 ]; then
            cap_note+=" CAP_FORCE=1: ran $cap_n anyway; the streams beyond the limit are expected to fail."
        else
            cap_note+=" Ran $cap_max streams instead of $CAP_STREAMS (CAP_FORCE=1 tries all)."
            cap_n=$cap_max
        fi
        log "$cap_note"
    fi
    cap_rss_idle=$(status_kb "$cap_pid" VmRSS)
    t0=$(cpu_ticks "$cap_pid")
    log "capacity: $cap_n streams ($CAP_MOCK) through tollgate full chain"
    f=$raw/capacity.txt
    timeout -k 5 $((CAP_TIMEOUT + 60)) taskset -c "$LOAD_CPU" "$BUILD_DIR/bench/streamgen" \
        --target "127.0.0.1:$cap_port" --connections "$cap_n" --once --mock "$CAP_MOCK" \
        --key "$KEY" --connect-parallel "$CAP_PARALLEL" --timeout "$CAP_TIMEOUT" \
        --watch-pid "$cap_pid" --progress >"$f" 2>"$raw/capacity.progress" || true
    t1=$(cpu_ticks "$cap_pid")
    cap_ok=$(sg_kv "$f" streams_ok)
    cap_failed=$(sg_kv "$f" streams_failed)
    cap_maxs=$(sg_kv "$f" max_streaming)
    cap_all=$(sg_kv "$f" rss_all_open_kb)
    cap_peak=$(sg_kv "$f" rss_peak_kb)
    cap_hwm=$(sg_kv "$f" hwm_kb)
    cap_elapsed=$(sg_kv "$f" elapsed_s)
    cap_ttfb99=$(sg_kv "$f" ttfb_p99_us)
    cap_gap99=$(sg_kv "$f" gap_p99_us)
    # Why streams failed: the non-zero fail_* and status_* counters.
    cap_why=$(awk -F= '/^(fail_|status_)/ && $2 > 0 {printf "%s%s=%s", sep, $1, $2; sep = ", "}' "$f")
    [ -n "$cap_why" ] && cap_why="($cap_why)"
    cap_cpu=$(awk -v t=$((t1 - t0)) -v hz="$CLK_TCK" -v n="${cap_ok:-0}" \
        'BEGIN { if (n > 0) printf "%.1f\n", t * 1e6 / hz / n; else print "-" }')
    cap_accept_errs=$(grep -c "accept failed" "$work/cap.log" || true)
    # The mock's own count (HTTP/1.0 over bash's /dev/tcp: no curl needed).
    cap_mock_stats=$( (exec 3<>"/dev/tcp/127.0.0.1/$cap_mock_port" &&
        printf 'GET /mock/stats HTTP/1.0\r\n\r\n' >&3 && timeout 5 cat <&3) 2>/dev/null |
        tail -1 || true)
    cp "$work/cap.log" "$raw/capacity-tollgate.log" 2>/dev/null || true
    stop_child "$cap_pid"

    if [ "$CAP_HOLD" = 1 ]; then
        # mock_get PATH: the mock's answer body (HTTP/1.0 over bash's /dev/tcp).
        mock_get() {
            (exec 3<>"/dev/tcp/127.0.0.1/$cap_mock_port" &&
                printf 'GET %s HTTP/1.0\r\n\r\n' "$1" >&3 && timeout 5 cat <&3) 2>/dev/null |
                tail -1 || true
        }
        # held_count: the mock's streams_held ("" when it did not answer in time).
        held_count() { mock_get /mock/stats | grep -o '"streams_held":[0-9]*' | cut -d: -f2 || true; }
        held_before=$(held_count)
        start_gateway cap-held "[auth, rate_limit, budget, router, usage]" "$cap_mock_port" \
            $((cap_n * 2 + 1024))
        held_pid=$GW_PID
        sleep 0.5
        held_idle=$(status_kb "$held_pid" VmRSS)
        log "capacity, held: $cap_n streams, each held after its first event"
        taskset -c "$LOAD_CPU" "$BUILD_DIR/bench/streamgen" --target "127.0.0.1:$GW_PORT" \
            --connections "$cap_n" --once --mock "chunks=3 hold=1" --key "$KEY" \
            --connect-parallel "$CAP_PARALLEL" --timeout "$CAP_TIMEOUT" \
            >"$raw/capacity-held.txt" 2>/dev/null &
        held_sg=$!
        held_n=0
        for _ in $(seq $((CAP_TIMEOUT * 10))); do
            held_now=$(held_count)
            [ -z "$held_now" ] && continue
            held_n=$((${held_now:-0} - ${held_before:-0}))
            [ "$held_n" -ge "$cap_n" ] && break
            sleep 0.1
        done
        held_rss=$(status_kb "$held_pid" VmRSS)
        mock_get /mock/release >/dev/null
        wait "$held_sg" || true
        held_ok=$(sg_kv "$raw/capacity-held.txt" streams_ok)
        stop_child "$held_pid"
    fi
    stop_child "$cap_mock_pid"
fi

# ---------------------------------------------------------------------------------------
# Report

# med FILE KEYCOLS VALUECOL: median of VALUECOL over the lines whose first columns equal KEYCOLS
# (tab-separated, e.g. "plain<TAB>16<TAB>nginx").
med() {
    local file=$1 key=$2 col=$3
    awk -F'\t' -v key="$key" -v col="$col" '
        BEGIN { n = split(key, k, "\t") }
        { for (i = 1; i <= n; i++) if ($i != k[i]) next; if ($col != "-") print $col }' "$file" |
        sort -g | awk '{ a[NR] = $1 } END {
            if (NR == 0) { print "-"; exit }
            print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
sum_col() {
    awk -F'\t' -v key="$2" -v col="$3" '
        BEGIN { n = split(key, k, "\t") }
        { for (i = 1; i <= n; i++) if ($i != k[i]) next; s += $col } END { print s + 0 }' "$1"
}
fmt() { awk -v v="$1" -v f="$2" 'BEGIN { if (v == "-" || v == "") print "-"; else printf f, v }'; }
diff_us() {  # a - b, signed, or "-"
    awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "") print "-";
        else printf "%+d", a - b }'
}
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k < 0) print "-"; else printf "%.1f", k / 1024 }'; }

cpu_model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
rev=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$root" status --porcelain --untracked-files=no 2>/dev/null)" ] && rev+=" (+ uncommitted changes)"

{
    echo "# tollgate vs nginx: the cost of a plain reverse proxy"
    echo
    echo "$(date '+%F %T %Z') on \`$host\`, tollgate $rev, $BUILD_TYPE build."
    echo
    echo "| machine | |"
    echo "|---|---|"
    echo "| CPU | $cpu_model |"
    echo "| cores | $(nproc) online ($(grep -c '^processor' /proc/cpuinfo) in /proc/cpuinfo); process under test on CPU $SUT_CPU, wrk/streamgen + mock on CPU $LOAD_CPU |"
    echo "| memory | $(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo) |"
    echo "| kernel | $(uname -r) |"
    echo "| nginx | $("$NGINX" -v 2>&1 | sed 's/^nginx version: //') |"
    echo "| wrk | $(wrk -v 2>&1 | awk 'NR == 1 {print $2}') |"
    echo "| fd limit | $NOFILE |"
    echo
    if [ "$KEYS" -gt 1 ]; then
        echo "Load: wrk -t1, the ~1 KB chat completion of \`bench/wrk/chat.lua\` with a bearer key,"
        echo "rotating over $KEYS keys (KEYS=$KEYS), each request the next key;"
    else
        echo "Load: wrk -t1, the ~1 KB chat completion of \`bench/wrk/chat.lua\` with a bearer key,"
    fi
    echo "${DURATION} s per run, $REPEAT interleaved repeats per cell (each round visits every target);"
    echo "every figure is the median over the repeats. Latencies in µs; \`+p50\`/\`+p99\` are the"
    echo "latency added over the direct-to-mock run of the same cell. CPU µs/req: utime+stime of the"
    echo "process under test (nginx: its worker; direct: the mock itself, which shares CPU $LOAD_CPU with"
    echo "wrk) divided by the requests served; of which user: utime alone (the rest is the kernel's);"
    echo "of which ledger: the ledger's writer thread (\`tg-ledger\`, full chain only), user and kernel."
    echo "tollgate runs \`server.threads: 1\`; the full chain is"
    echo "auth, rate_limit, budget (limits never hit), router, usage (SQLite ledger in a temp dir)."
    for mode in $MODES; do
        if [ -z "${CONNS// /}" ] || [ -z "${TARGETS// /}" ]; then break; fi
        echo
        if [ "$mode" = plain ]; then
            echo "## Non-streamed (answer of $PLAIN_CHUNKS words)"
        elif [ "$mode" = burst ]; then
            echo "## Streamed, burst (SSE, $STREAM_CHUNKS content chunks of +$BURST_PAD bytes: the whole body in one upstream write)"
        else
            echo "## Streamed (SSE, $STREAM_CHUNKS content chunks, one upstream write each, no delay)"
        fi
        echo
        echo "| target | conns | req/s | p50 | p90 | p99 | +p50 | +p99 | CPU µs/req | of which user | of which ledger | errors |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for c in $CONNS; do
            d50=$(med "$tsv" "$mode"$'\t'"$c"$'\t'direct 6)
            d99=$(med "$tsv" "$mode"$'\t'"$c"$'\t'direct 8)
            for t in $TARGETS; do
                k="$mode"$'\t'"$c"$'\t'"$t"
                p50=$(med "$tsv" "$k" 6)
                p99=$(med "$tsv" "$k" 8)
                a50=-
                a99=-
                [ "$t" != direct ] && { a50=$(diff_us "$p50" "$d50"); a99=$(diff_us "$p99" "$d99"); }
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${name_of[$t]}" \
                    "$c" "$(fmt "$(med "$tsv" "$k" 5)" %.0f)" "$(fmt "$p50" %d)" \
                    "$(fmt "$(med "$tsv" "$k" 7)" %d)" "$(fmt "$p99" %d)" "$a50" "$a99" \
                    "$(fmt "$(med "$tsv" "$k" 9)" %.2f)" "$(fmt "$(med "$tsv" "$k" 12)" %.2f)" \
                    "$(fmt "$(med "$tsv" "$k" 13)" %.2f)" "$(sum_col "$tsv" "$k" 10)"
            done
        done
    done
    if [ -n "${LAT_CONNS// /}" ] && [ -n "${LAT_TARGETS// /}" ]; then
        echo
        echo "## Streaming latency (streamgen, \`#mock $LAT_MOCK\`)"
        echo
        echo "Each connection sends streamed requests back to back for $LAT_DURATION s (the first stream of"
        echo "each connection, which also opens the proxy's upstream connection, is not measured)."
        echo "TTFB: from writing the request to the first complete SSE data event. Gap: between"
        echo "consecutive data events of one stream (the mock spaces content events by delay_ms)."
        echo "Medians over $REPEAT repeats; \`+\`: added over direct, in µs."
        echo
        echo "| target | conns | streams ok/failed | TTFB p50 | TTFB p99 | +TTFB p50 | +TTFB p99 | gap p50 | gap p99 | +gap p50 | +gap p99 |"
        echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        for c in $LAT_CONNS; do
            dk="$c"$'\t'direct
            for t in $LAT_TARGETS; do
                k="$c"$'\t'"$t"
                t50=$(med "$lat_tsv" "$k" 4)
                t99=$(med "$lat_tsv" "$k" 6)
                g50=$(med "$lat_tsv" "$k" 7)
                g99=$(med "$lat_tsv" "$k" 9)
                added=(- - - -)
                if [ "$t" != direct ]; then
                    added=("$(diff_us "$t50" "$(med "$lat_tsv" "$dk" 4)")" \
                        "$(diff_us "$t99" "$(med "$lat_tsv" "$dk" 6)")" \
                        "$(diff_us "$g50" "$(med "$lat_tsv" "$dk" 7)")" \
                        "$(diff_us "$g99" "$(med "$lat_tsv" "$dk" 9)")")
                fi
                printf '| %s | %s | %s/%s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "${name_of[$t]}" \
                    "$c" "$(sum_col "$lat_tsv" "$k" 10)" "$(sum_col "$lat_tsv" "$k" 11)" \
                    "$(fmt "$t50" %d)" "$(fmt "$t99" %d)" "${added[0]}" "${added[1]}" \
                    "$(fmt "$g50" %d)" "$(fmt "$g99" %d)" "${added[2]}" "${added[3]}"
            done
        done
    fi
    echo
    echo "## Memory"
    echo
    echo "Idle: VmRSS after start, before any load. Peak: VmHWM after all the runs above."
    echo
    echo "| process | idle RSS MiB | peak RSS MiB |"
    echo "|---|---:|---:|"
    for t in direct nginx min full; do
        label=${name_of[$t]}
        [ "$t" = direct ] && label="mock_upstream (shared upstream of all targets)"
        [ "$t" = nginx ] && label="nginx worker"
        printf '| %s | %s | %s |\n' "$label" "$(mib "${idle_rss[$t]}")" "$(mib "${peak_rss[$t]}")"
    done
    if [ "$CAP_STREAMS" -gt 0 ]; then
        echo
        echo "## Capacity: concurrent streams through tollgate (full chain)"
        echo
        echo "A fresh tollgate and mock; streamgen opens one connection per stream ($CAP_PARALLEL connects"
        echo "in flight at most), each a streamed request with \`#mock $CAP_MOCK\`, and holds it to the end."
        echo "RSS is sampled every 100 ms (and when the last stream got its first event)."
        echo
        echo "| | |"
        echo "|---|---|"
        echo "| streams requested | $cap_n |"
        echo "| completed with \`[DONE]\` | ${cap_ok:-0} |"
        echo "| failed | ${cap_failed:-?}${cap_why:+ $cap_why} |"
        echo "| most streaming at once | ${cap_maxs:-?} |"
        echo "| mock's count | \`${cap_mock_stats:-?}\` |"
        echo "| wall time | ${cap_elapsed:-?} s |"
        echo "| TTFB p99 / gap p99 | ${cap_ttfb99:-?} µs / ${cap_gap99:-?} µs |"
        echo "| tollgate RSS idle | $(mib "$cap_rss_idle") MiB |"
        echo "| tollgate RSS, all streams open | $(mib "${cap_all:--1}") MiB |"
        echo "| tollgate RSS peak (sampled / VmHWM) | $(mib "${cap_peak:--1}") / $(mib "${cap_hwm:--1}") MiB |"
        echo "| RSS per stream, (peak − idle) / most streaming at once | $(awk -v p="${cap_peak:--1}" -v i="$cap_rss_idle" -v n="${cap_maxs:-0}" 'BEGIN { if (p < 0 || n == 0) print "-"; else printf "%.1f KiB", (p - i) / n }') |"
        echo "| tollgate CPU per stream | $cap_cpu µs |"
        echo "| accept errors logged by tollgate | ${cap_accept_errs:-0} |"
        if [ "$CAP_HOLD" = 1 ]; then
            echo "| held: streams held after their first event (then completed) | ${held_n:-?} (${held_ok:-?}) |"
            echo "| held: tollgate RSS idle / with every stream held | $(mib "${held_idle:--1}") / $(mib "${held_rss:--1}") MiB |"
            echo "| held: RSS per stream | $(awk -v r="${held_rss:--1}" -v i="${held_idle:-0}" -v n="${held_n:-0}" 'BEGIN { if (r < 0 || n <= 0) print "-"; else printf "%.1f KiB", (r - i) / n }') |"
        fi
        [ -n "$cap_note" ] && { echo; echo "$cap_note"; }
    fi
    echo
    echo "Parameters: DURATION=$DURATION CONNS=\"$CONNS\" REPEAT=$REPEAT MODES=\"$MODES\" TARGETS=\"$TARGETS\""
    echo "PLAIN_CHUNKS=$PLAIN_CHUNKS STREAM_CHUNKS=$STREAM_CHUNKS BURST_PAD=$BURST_PAD LAT_CONNS=\"$LAT_CONNS\" LAT_DURATION=$LAT_DURATION"
    echo "LAT_MOCK=\"$LAT_MOCK\" CAP_STREAMS=$CAP_STREAMS CAP_MOCK=\"$CAP_MOCK\". Raw output: \`$(basename "$raw")/\`."
} >"$report"

log "report: $report"
cat "$report"
