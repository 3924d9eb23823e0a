#pragma once
// Names the calling thread, as `top -H`, `ps -L`, perf and /proc/<pid>/task/*/comm show it.
// The kernel keeps 15 characters; longer names are cut there.

#include <pthread.h>

#include <cstring>
#include <string_view>

namespace tollgate::core {

inline void name_this_thread(std::string_view name) noexcept {
    char buf[16];
    const std::size_t n = name.size() < sizeof buf ? name.size() : sizeof buf - 1;
    std::memcpy(buf, name.data(), n);
    buf[n] = '\0';
    ::pthread_setname_np(::pthread_self(), buf);
}

}  // namespace tollgate::core
