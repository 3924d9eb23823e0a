#!/usr/bin/env bash
# Installs what building and testing tollgate needs on Debian 12 (run as root).
# chromium: the admin console test drives it headless (tests/console); fonts-liberation,
# which chromium only recommends, so that its pages have their usual fonts.
# postgresql: the server programs the PostgreSQL tests start themselves (a temp dir, as
# the `postgres` user); the packaged cluster it also sets up is not used.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends \
    g++ cmake ninja-build ccache pkg-config ca-certificates curl openssl \
    libboost1.81-dev libboost-system1.81-dev libboost-test1.81-dev \
    libsimdjson-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libssl-dev libsqlite3-dev \
    libpq-dev postgresql redis-server \
    chromium fonts-liberation
# Node.js and npm: the client library tests (tests/clients) run the official openai npm
# client; a machine that already has Node.js (e.g. from NodeSource) keeps its own.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt-get install -y -q --no-install-recommends nodejs npm
fi
