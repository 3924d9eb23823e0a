#!/usr/bin/env bash
# Builds the fuzz targets if needed and runs each for a while (fuzz/README.md).
#
#   fuzz/run.sh [SECONDS_PER_TARGET] [BUILD_DIR]     defaults: 60, <repo>/build-fuzz
#
# Environment: FUZZ_JOBS (ninja jobs, default 1), FUZZ_TARGETS (space-separated subset).
# For each target it first replays every file in fuzz/regressions/<target>/ once, then
# fuzzes for SECONDS_PER_TARGET over a temporary copy of fuzz/corpus/<target>/ (plus the
# regressions, read-only), so the repository is never written to. Crash inputs and logs
# go under BUILD_DIR/fuzz-out/. Exits non-zero if any target crashed.
set -uo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
secs="${1:-60}"
build="${2:-$repo/build-fuzz}"
jobs="${FUZZ_JOBS:-1}"
all_targets="fuzz_http_request fuzz_response_parser fuzz_sse_framer fuzz_body_parser fuzz_translate_request
             fuzz_translate_response fuzz_translate_stream fuzz_adapter_stream fuzz_responses_translate
             fuzz_config fuzz_usage_extract
             fuzz_resp"
targets="${FUZZ_TARGETS:-$all_targets}"

if [ ! -f "$build/build.ninja" ]; then
    CC="${CC:-clang}" CXX="${CXX:-clang++}" cmake -S "$repo" -B "$build" -G Ninja \
        -DTOLLGATE_FUZZ=ON -DTOLLGATE_BUILD_TESTS=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo ||
        exit 1
fi
cmake --build "$build" --target tollgate_fuzzers -- -j "$jobs" || exit 1

out="$build/fuzz-out"
mkdir -p "$out"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
common=(-timeout=10 -rss_limit_mb=2048)

declare -a rows
failed=0
passed=0
for t in $targets; do
    bin="$build/fuzz/$t"
    log="$out/$t.log"
    art="$out/$t/"
    mkdir -p "$art"
    : >"$log"
    crash="-"
    status=ok

    # 1. Every saved regression input, once.
    regs=()
    if [ -d "$repo/fuzz/regressions/$t" ]; then
        while IFS= read -r -d '' f; do regs+=("$f"); done < <(
            find "$repo/fuzz/regressions/$t" -type f ! -name .gitkeep -print0 | sort -z)
    fi
    if [ "${#regs[@]}" -gt 0 ]; then
        echo "== $t: replaying ${#regs[@]} regression input(s)"
        if ! "$bin" "${common[@]}" -artifact_prefix="$art" "${regs[@]}" >>"$log" 2>&1; then
            status=REGRESSION
            crash="$(grep -o 'Running: .*' "$log" | tail -1 | sed 's/^Running: //')"
        fi
    fi

    # 2. Fuzz for $secs seconds over a writable copy of the corpus.
    case "$t" in
        fuzz_http_request) dict=http ;;
        fuzz_sse_framer | fuzz_translate_stream) dict=sse ;;
        fuzz_config) dict=yaml ;;
        *) dict=json ;;
    esac
    execs="-"; rate="-"; newunits="-"; cov="-"
    if [ "$status" = ok ]; then
        echo "== $t: fuzzing for ${secs}s"
        work="$(mktemp -d)"
        cp -R "$repo/fuzz/corpus/$t/." "$work/" 2>/dev/null || true
        dirs=("$work")
        [ -d "$repo/fuzz/regressions/$t" ] && dirs+=("$repo/fuzz/regressions/$t")
        "$bin" "${common[@]}" -max_total_time="$secs" -print_final_stats=1 \
            -dict="$repo/fuzz/dict/$dict.dict" -artifact_prefix="$art" "${dirs[@]}" >>"$log" 2>&1
        rc=$?
        rm -rf "$work"
        execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)"
        rate="$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)"
        newunits="$(sed -n 's/^stat::new_units_added: *//p' "$log" | tail -1)"
        cov="$(grep -o 'cov: [0-9]*' "$log" | tail -1 | sed 's/cov: //')"
        if [ "$rc" -ne 0 ]; then
            status=CRASH
            crash="$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)"
            [ -n "$crash" ] || crash="(no artifact; see $log)"
        fi
    fi
    if [ "$status" = ok ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "---- $t: $status; from $log:"
        start="$(grep -n -m1 -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|FUZZ CHECK FAILED|runtime error' \
            "$log" | cut -d: -f1)"
        sed -n "${start:-1},\$p" "$log" | grep -v -E '^(  0x|=>0x|Shadow|  [A-Z][A-Za-z -]+: )' | head -45
        echo "----"
    fi
    rows+=("$(printf '%-24s %-10s %12s %9s %8s %9s  %s' "$t" "$status" "${execs:--}" \
        "${rate:--}" "${cov:--}" "${newunits:--}" "$crash")")
done

echo
printf '%-24s %-10s %12s %9s %8s %9s  %s\n' target status executions exec/s cov new_units crash_input
for r in "${rows[@]}"; do echo "$r"; done
echo "logs and crash inputs: $out"
echo
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
