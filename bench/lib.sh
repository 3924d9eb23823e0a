# shellcheck shell=bash disable=SC2154  # root, work: set by the caller
# Shared by bench/run.sh and bench/profile.sh (sourced, not run): tools, build, free ports,
# starting the mock / tollgate / nginx pinned to a CPU, and cleaning up every child on exit.
# Expects `root` (the repository) to be set by the caller.

: "${BUILD_DIR:=$root/build-bench}"
: "${BUILD_TYPE:=Release}"
: "${JOBS:=$(nproc)}"
: "${SKIP_BUILD:=0}"
: "${SUT_CPU:=0}"   # the process under test
: "${LOAD_CPU:=1}"  # wrk, streamgen and the mock
: "${KEY:=tg-demo-key}"

NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}

log() { printf '[bench] %s\n' "$*" >&2; }
die() {
    printf '[bench] error: %s\n' "$*" >&2
    exit 1
}

# ---------------------------------------------------------------------------------------
# Children: every process we start is recorded here and ended (by pid) on exit.

BENCH_PIDS=()
cleanup_children() {
    local p
    for p in "${BENCH_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 50); do  # up to 5 s for a clean exit (the gateway drains, nginx quits)
        local alive=0
        for p in "${BENCH_PIDS[@]}"; do kill -0 "$p" 2>/dev/null && alive=1; done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for p in "${BENCH_PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    BENCH_PIDS=()
}
stop_child() {  # $1 pid: end one child we started, bounded
    local p=$1
    kill -TERM "$p" 2>/dev/null || return 0
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
}

# ---------------------------------------------------------------------------------------
# Tools

# Installs what is missing (Debian/Ubuntu, as root); otherwise says what to install.
ensure_tools() {
    local need=() extra=("$@")
    [ -x "$NGINX" ] || need+=(nginx)
    command -v wrk >/dev/null || need+=(wrk)
    command -v taskset >/dev/null || need+=(util-linux)
    command -v ss >/dev/null || need+=(iproute2)
    command -v cmake >/dev/null || need+=(cmake)
    command -v ninja >/dev/null || need+=(ninja-build)
    local t
    for t in "${extra[@]}"; do command -v "$t" >/dev/null || need+=("$t"); done
    [ ${#need[@]} -eq 0 ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        die "missing tools: ${need[*]} (install them, or run as root on Debian/Ubuntu)"
    fi
    log "installing: ${need[*]}"
    # Keep the package's own nginx service from starting on port 80 while installing.
    local rcd=/usr/sbin/policy-rc.d made_rcd=0
    if [ ! -e "$rcd" ]; then
        printf '#!/bin/sh\nexit 101\n' > "$rcd" && chmod +x "$rcd" && made_rcd=1
    fi
    local pkgs=() ok=0
    for t in "${need[@]}"; do [ "$t" = nginx ] || pkgs+=("$t"); done
    DEBIAN_FRONTEND=noninteractive apt-get update -qq || true
    if [[ " ${need[*]} " == *" nginx "* ]]; then
        # nginx-light where the distribution still has it (Debian 12), else nginx.
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            nginx-light "${pkgs[@]}" && ok=1
        [ $ok = 1 ] || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            --no-install-recommends nginx "${pkgs[@]}" && ok=1
    else
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${pkgs[@]}" && ok=1
    fi
    [ $made_rcd = 1 ] && rm -f "$rcd"
    [ $ok = 1 ] || die "apt-get install failed: ${need[*]}"
    NGINX=$(command -v nginx || echo /usr/sbin/nginx)
}

# Release binaries in BUILD_DIR (targets as arguments).
build_targets() {
    [ "$SKIP_BUILD" = 1 ] && return 0
    log "building $* in $BUILD_DIR ($BUILD_TYPE, -j$JOBS)"
    mkdir -p "$BUILD_DIR"
    cmake -S "$root" -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
        -DTOLLGATE_BUILD_TESTS=OFF >"$BUILD_DIR/bench-configure.log" 2>&1 ||
        { cat "$BUILD_DIR/bench-configure.log" >&2; die "cmake configure failed"; }
    ninja -C "$BUILD_DIR" -j"$JOBS" "$@" >&2 || die "build failed"
}

# ---------------------------------------------------------------------------------------
# Ports and processes

BENCH_PORTS=" "
# A port nobody listens on or uses, below the ephemeral range (so no outgoing connection of
# the benchmark itself can take it).
free_port() {
    local lo hi p
    read -r lo hi < /proc/sys/net/ipv4/ip_local_port_range
    hi=$((lo - 1)); lo=10000
    [ "$hi" -lt $((lo + 1000)) ] && { lo=20000; hi=60000; }
    for _ in $(seq 200); do
        p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
        [[ "$BENCH_PORTS" == *" $p "* ]] && continue
        [ -n "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] && continue
        BENCH_PORTS+="$p "
        echo "$p"
        return 0
    done
    die "no free port found"
}

# Waits (up to $3 s, default 10) until PORT accepts and PID is still alive.
wait_listen() {
    local port=$1 pid=$2 secs=${3:-10}
    for _ in $(seq $((secs * 10))); do
        kill -0 "$pid" 2>/dev/null || return 1
        [ -n "$(ss -Hltn "( sport = :$port )" 2>/dev/null)" ] && return 0
        sleep 0.1
    done
    return 1
}

# Runs "$@" pinned to CPU $1, output to file $2; sets STARTED_PID.
start_pinned() {
    local cpu=$1 out=$2
    shift 2
    taskset -c "$cpu" "$@" >"$out" 2>&1 &
    STARTED_PID=$!
    BENCH_PIDS+=("$STARTED_PID")
}

# start_mock NAME → MOCK_PORT, MOCK_PID (on LOAD_CPU). Logs in $work/NAME.log.
start_mock() {
    local name=$1
    for _ in 1 2 3; do
        MOCK_PORT=$(free_port)
        start_pinned "$LOAD_CPU" "$work/$name.log" "$BUILD_DIR/bench/mock_upstream" \
            --listen "127.0.0.1:$MOCK_PORT"
        MOCK_PID=$STARTED_PID
        wait_listen "$MOCK_PORT" "$MOCK_PID" && return 0
        stop_child "$MOCK_PID"
    done
    cat "$work/$name.log" >&2
    die "mock_upstream did not start"
}

# bench_keys: the config's client keys: KEY, or with KEYS=N (N > 1) the keys KEY-1 … KEY-N
# (bench/wrk/chat.lua rotates over them), each with limits and a budget never hit.
bench_keys() {
    local i n=${KEYS:-1}
    for ((i = 1; i <= n; i++)); do
        if [ "$n" -gt 1 ]; then
            printf '  - id: bench-%d\n    key: %s-%d\n' "$i" "$KEY" "$i"
        else
            printf '  - id: bench\n    key: %s\n' "$KEY"
        fi
        printf '    limits: {rpm: 1000000000, tpm: 1000000000000, concurrency: 1000000}\n'
        printf '    budget: {usd: 1000000000, period: total}\n'
    done
}

# gw_config PORT POLICIES UPSTREAM_PORT [MAX_CONNECTIONS]: a bench config. Limits and budget
# are there (so the policies do their work) but never hit.
gw_config() {
    local port=$1 policies=$2 up=$3 maxc=${4:-20000}
    cat <<YAML
server:
  listen: ["127.0.0.1:$port"]
  threads: 1
  max_connections: $maxc
providers:
  mock:
    kind: openai
    base_url: "http://127.0.0.1:$up/v1"
    api_key: bench-provider-key
    max_connections: $maxc
models:
  gpt-4o-mini:
    targets: [{provider: mock, model: mock-gpt}]
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
keys:
$(bench_keys)
usage: {database: "$work/usage-$port.db"}
policies: $policies
${GW_EXTRA:-}
YAML
}

# start_gateway NAME POLICIES UPSTREAM_PORT [MAX_CONNECTIONS] → GW_PORT, GW_PID (on SUT_CPU).
# GW_EXTRA, if set, is appended to the config (more top-level sections, e.g. `state:`).
start_gateway() {
    local name=$1 policies=$2 up=$3 maxc=${4:-20000}
    for _ in 1 2 3; do
        GW_PORT=$(free_port)
        gw_config "$GW_PORT" "$policies" "$up" "$maxc" >"$work/$name.yaml"
        # shellcheck disable=SC2086  # SUT_WRAP: a command prefix (e.g. valgrind ...)
        start_pinned "$SUT_CPU" "$work/$name.log" ${SUT_WRAP:-} "$BUILD_DIR/gateway/tollgate" \
            --config "$work/$name.yaml"
        GW_PID=$STARTED_PID
        wait_listen "$GW_PORT" "$GW_PID" "${SUT_START_SECS:-10}" && return 0
        stop_child "$GW_PID"
    done
    cat "$work/$name.log" >&2
    die "tollgate ($name) did not start"
}

# start_nginx UPSTREAM_PORT → NGX_PORT, NGX_PID (master), NGX_WORKER (on SUT_CPU).
# With SUT_WRAP set (a command prefix, e.g. valgrind ...) nginx runs as one process
# (master_process off): NGX_WORKER is NGX_PID.
start_nginx() {
    local up=$1 dir=$work/nginx
    mkdir -p "$dir"
    for _ in 1 2 3; do
        NGX_PORT=$(free_port)
        cat >"$dir/nginx.conf" <<NGX
worker_processes 1;
${SUT_WRAP:+master_process off;}
worker_rlimit_nofile $(ulimit -n);
daemon off;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections $(( $(ulimit -n) - 100 )); }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
  client_body_temp_path $dir/body;
  proxy_temp_path $dir/proxy;
  fastcgi_temp_path $dir/fastcgi;
  uwsgi_temp_path $dir/uwsgi;
  scgi_temp_path $dir/scgi;
  upstream mock {
    server 127.0.0.1:$up;
    keepalive 1024;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
  }
  server {
    listen 127.0.0.1:$NGX_PORT;
    location / {
      proxy_pass http://mock;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_buffers 8 64k;
      proxy_buffer_size 64k;
    }
  }
}
NGX
        # shellcheck disable=SC2086
        start_pinned "$SUT_CPU" "$work/nginx.log" ${SUT_WRAP:-} "$NGINX" -e "$dir/error.log" \
            -p "$dir" -c "$dir/nginx.conf"
        NGX_PID=$STARTED_PID
        if wait_listen "$NGX_PORT" "$NGX_PID" "${SUT_START_SECS:-10}"; then
            [ -n "${SUT_WRAP:-}" ] && { NGX_WORKER=$NGX_PID; return 0; }
            for _ in $(seq 50); do
                NGX_WORKER=$(pgrep -P "$NGX_PID" | head -1 || true)
                [ -n "$NGX_WORKER" ] && return 0
                sleep 0.1
            done
        fi
        stop_child "$NGX_PID"
    done
    cat "$work/nginx.log" "$dir/error.log" >&2 2>/dev/null || true
    die "nginx did not start"
}

# ---------------------------------------------------------------------------------------
# Load

# wrk_load MODE CONNS SECONDS PORT FILE: bench/run.sh's wrk load (plain | stream | burst,
# with PLAIN_CHUNKS, STREAM_CHUNKS, BURST_PAD), pinned to LOAD_CPU, wrk's output in FILE;
# prints the requests served (nothing if wrk printed no summary).
wrk_load() {
    local stream=0 chunks=${PLAIN_CHUNKS:-8} mock_extra=
    [ "$1" = stream ] && { stream=1; chunks=${STREAM_CHUNKS:-50}; }
    [ "$1" = burst ] && { stream=1; chunks=${STREAM_CHUNKS:-50}; mock_extra="burst=1 pad=${BURST_PAD:-200}"; }
    STREAM=$stream CHUNKS=$chunks MOCK_EXTRA=$mock_extra KEY=$KEY KEYS=${KEYS:-1} timeout -k 5 $(($3 + 60)) \
        taskset -c "$LOAD_CPU" wrk -t1 -c"$2" -d"$3s" --timeout 30s --latency \
        -s "$here/wrk/chat.lua" "http://127.0.0.1:$4/v1/chat/completions" >"$5" 2>&1 || true
    { grep '^TGBENCH' "$5" || true; } | tr ' ' '\n' | awk -F= '$1 == "requests" {print $2}'
}

# ---------------------------------------------------------------------------------------
# /proc

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime+stime
# thread_ticks PID NAME: utime+stime of the process's threads named NAME (tollgate names its
# threads: tg-worker-N, tg-ledger, ...); empty when it has none.
thread_ticks() {
    local t sum='' v
    for t in /proc/"$1"/task/*; do
        [ "$(cat "$t/comm" 2>/dev/null)" = "$2" ] || continue
        v=$(awk '{print $14 + $15}' "$t/stat" 2>/dev/null || echo 0)
        sum=$((${sum:-0} + v))
    done
    echo "$sum"
}
user_ticks() { awk '{print $14}' "/proc/$1/stat" 2>/dev/null || echo 0; }  # utime
status_kb() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# shellcheck disable=SC2034  # used by the callers
CLK_TCK=$(getconf CLK_TCK)
