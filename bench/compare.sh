#!/usr/bin/env bash
# A first side-by-side measurement (the full harness is bench issue's work): the mock
# upstream straight, nginx as a plain reverse proxy, tollgate with auth+router, and
# tollgate with the full chain, driven by wrk with the same ~1 KB chat request,
# interleaved. The process under test is pinned to CPU 0, wrk and the mock to CPU 1.
# Prints requests/s, p50/p99 latency and CPU time per request of the process under test.
#
#   bench/compare.sh [BUILD_DIR] [DURATION_S] [CONNECTIONS...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-rel}
dur=${2:-5}
shift 2 || true
conns=("${@:-16 64}")
[ ${#conns[@]} -eq 0 ] && conns=(16 64)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

taskset -c 1 "$build/bench/mock_upstream" --listen 127.0.0.1:19000 >/dev/null &
mkdir -p "$work/ngx"
cat > "$work/ngx/nginx.conf" <<NGX
worker_processes 1;
daemon off;
error_log $work/ngx/error.log;
pid $work/ngx/nginx.pid;
events { worker_connections 8192; }
http {
  access_log off;
  upstream mock { server 127.0.0.1:19000; keepalive 128; }
  server {
    listen 127.0.0.1:19090;
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
taskset -c 0 nginx -c "$work/ngx/nginx.conf" -p "$work/ngx" 2>/dev/null &

gw_config() {  # $1 port, $2 policies
  cat <<YAML
server: {listen: ["127.0.0.1:$1"], threads: 1}
providers:
  mock: {kind: openai, base_url: "http://127.0.0.1:19000/v1", api_key: bench-provider-key}
models:
  gpt-4o-mini:
    targets: [{provider: mock, model: mock-gpt}]
    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}
keys:
  - id: bench
    key: tg-demo-key
    limits: {rpm: 100000000, tpm: 100000000000, concurrency: 100000}
    budget: {usd: 100000000, period: total}
usage: {database: $work/usage-$1.db}
policies: $2
YAML
}
gw_config 19180 "[auth, router]" > "$work/min.yaml"
gw_config 19181 "[auth, rate_limit, budget, router, usage]" > "$work/full.yaml"
taskset -c 0 "$build/gateway/tollgate" --config "$work/min.yaml" 2>/dev/null &
taskset -c 0 "$build/gateway/tollgate" --config "$work/full.yaml" 2>/dev/null &
sleep 1

pid_of_port() { ss -ltnp "sport = :$1" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2; }
cpu_ticks() { [ -n "$1" ] && awk '{print $14+$15}' "/proc/$1/stat" || echo 0; }
declare -A names=([19000]="direct (mock)" [19090]="nginx" [19180]="tollgate auth+router" [19181]="tollgate full chain")
printf '| target | conns | req/s | p50 | p99 | CPU µs/req |\n|---|---|---|---|---|---|\n'
for c in "${conns[@]}"; do
  for port in 19000 19090 19180 19181; do
    pid=""
    [ "$port" != 19000 ] && pid=$(pid_of_port "$port")
    [ "$port" = 19090 ] && pid=$(pgrep -f "nginx: worker" | head -1)
    t0=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c"$c" -d"${dur}s" --latency -s bench/wrk/chat.lua "http://127.0.0.1:$port/v1/chat/completions")
    t1=$(cpu_ticks "$pid")
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    reqs=$(echo "$out" | awk '/requests in/ {print $1}')
    p50=$(echo "$out" | awk '$1=="50%" {print $2}')
    p99=$(echo "$out" | awk '$1=="99%" {print $2}')
    cpu="-"
    [ -n "$pid" ] && cpu=$(awk -v t=$((t1 - t0)) -v n="$reqs" -v hz="$(getconf CLK_TCK)" 'BEGIN {printf "%.1f", t * 1e6 / hz / n}')
    printf '| %s | %s | %s | %s | %s | %s |\n' "${names[$port]}" "$c" "$rps" "$p50" "$p99" "$cpu"
  done
done
