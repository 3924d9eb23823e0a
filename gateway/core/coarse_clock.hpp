#pragma once
// The monotonic clock as of the kernel's last timer tick: steady_clock's epoch, never
// ahead of steady_clock::now() and at most a tick (1-4 ms) behind it. For deadlines,
// timeouts and idle stamps, where a few milliseconds do not matter: the vDSO answers it
// from memory (about 5 ns here) where steady_clock::now() reads and scales the TSC
// (about 23 ns), and a proxied request takes about ten such readings.
//
// A wait that must see its deadline passed (a timer that fired at it) checks with
// steady_clock::now(): a coarse reading taken then may still lie a tick before it.

#include <time.h>

#include <chrono>
#include <cstdint>

namespace tollgate::core {

inline std::chrono::steady_clock::time_point coarse_now() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return std::chrono::steady_clock::time_point(
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
            std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec)));
}

// Unix time in milliseconds as of the last tick (at most a few ms behind the exact time),
// for stamps where that does not matter: a budget period's clock, an answer's `created`.
inline std::int64_t coarse_unix_ms() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1000 + ts.tv_nsec / 1'000'000;
}

}  // namespace tollgate::core
