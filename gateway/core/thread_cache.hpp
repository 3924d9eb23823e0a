#pragma once
// A per-thread cache of freed small blocks in front of malloc, used by the gateway's
// operator new and delete (gateway/alloc.cpp).
//
// Why: a request makes about 37 allocations (coroutine frames, buffers, strings), and
// with many connections in flight at once glibc's per-thread cache (7 blocks a size)
// overflows into its slower bins: about 4 K instructions a request. Here a thread keeps
// up to `max_per_class` freed blocks of each 16-byte size class up to `max_small` bytes,
// and at most `max_bytes` in all, and hands them back first-in-last-out. Every block is
// still a malloc block of the size malloc would have used anyway (a class's size is a
// malloc chunk's usable size), so the cache changes no object's footprint, frees to
// malloc whatever it does not keep, and a block freed on another thread than the one
// that made it is simply kept (or freed) there.
//
// A thread's cached blocks go back to malloc when the thread ends; after that, its frees
// go straight to malloc.

#include <cstddef>

namespace tollgate::core::thread_cache {

// Blocks up to this many bytes are cached (a 4 KiB read buffer is the largest common one).
inline constexpr std::size_t max_small = 4096 + 8;
inline constexpr std::size_t max_per_class = 64;
inline constexpr std::size_t max_bytes = 256 * 1024;

// Never null: on exhaustion it calls the new-handler, then throws std::bad_alloc.
void* allocate(std::size_t n);
// `n` is the size given to allocate (a sized delete).
void deallocate(void* p, std::size_t n) noexcept;
// For an unsized delete: the class comes from malloc_usable_size.
void deallocate(void* p) noexcept;

// What this thread's cache holds now.
struct stats {
    std::size_t blocks = 0;
    std::size_t bytes = 0;
};
stats this_thread() noexcept;
// Gives this thread's kept blocks back to malloc now (a thread's end does it too).
void release_this_thread() noexcept;

// The size class a request of n bytes falls in, and the bytes its blocks have.
constexpr std::size_t size_class(std::size_t n) noexcept {
    const std::size_t k = (n + 8 + 15) / 16;
    return k < 2 ? 2 : k;
}
constexpr std::size_t class_bytes(std::size_t k) noexcept {
    return 16 * k - 8;
}

}  // namespace tollgate::core::thread_cache
