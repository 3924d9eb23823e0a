#!/usr/bin/env bash
# Fresh Debian 12, as root: install, build, then run the bundled mock upstream on
# 127.0.0.1:9000 and tollgate on 127.0.0.1:8080 in front of it (Ctrl-C stops both).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-deps.sh
cmake -S . -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DTOLLGATE_BUILD_TESTS=OFF
cmake --build build-release --target tollgate mock_upstream
build-release/bench/mock_upstream --listen 127.0.0.1:9000 &
mock=$!
trap 'kill $mock 2>/dev/null || true' EXIT
exec_status=0
build-release/gateway/tollgate --config config/examples/quickstart.yaml || exec_status=$?
exit $exec_status
