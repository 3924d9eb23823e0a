#include "gateway/core/thread_cache.hpp"

#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <new>

namespace tollgate::core::thread_cache {

namespace {

constexpr std::size_t classes = size_class(max_small) + 1;

struct block {
    block* next;
};

enum class phase : std::uint8_t { unused, live, ended };

// Trivially destructible, so it stays usable while the thread's other thread_local
// objects are destroyed (their frees then go to malloc once `ended`).
struct cache {
    block* head[classes];
    std::uint16_t count[classes];
    std::size_t bytes;
    std::size_t blocks;
    phase state;
};
thread_local cache tc;

void flush(cache& c) noexcept {
    for (std::size_t k = 0; k < classes; ++k) {
        while (block* b = c.head[k]) {
            c.head[k] = b->next;
            std::free(b);
        }
        c.count[k] = 0;
    }
    c.bytes = 0;
    c.blocks = 0;
}

// Made on a thread's first kept block: gives the blocks back when the thread ends.
struct flusher {
    ~flusher() {
        flush(tc);
        tc.state = phase::ended;
    }
};

void* from_malloc(std::size_t n) {
    for (;;) {
        if (void* p = std::malloc(n)) return p;
        const std::new_handler h = std::get_new_handler();
        if (!h) throw std::bad_alloc();
        h();
    }
}

void keep_or_free(void* p, std::size_t k) noexcept {
    cache& c = tc;
    const std::size_t size = class_bytes(k);
    if (c.state == phase::ended || c.count[k] >= max_per_class || c.bytes + size > max_bytes) {
        std::free(p);
        return;
    }
    if (c.state == phase::unused) {
        c.state = phase::live;
        static thread_local flusher f;
        (void)f;
    }
    auto* b = static_cast<block*>(p);
    b->next = c.head[k];
    c.head[k] = b;
    ++c.count[k];
    c.bytes += size;
    ++c.blocks;
}

}  // namespace

void* allocate(std::size_t n) {
    if (n > max_small) return from_malloc(n);
    const std::size_t k = size_class(n);
    cache& c = tc;
    if (block* b = c.head[k]) {
        c.head[k] = b->next;
        --c.count[k];
        c.bytes -= class_bytes(k);
        --c.blocks;
        return b;
    }
    return from_malloc(class_bytes(k));
}

void deallocate(void* p, std::size_t n) noexcept {
    if (!p) return;
    if (n > max_small) {
        std::free(p);
        return;
    }
    keep_or_free(p, size_class(n));
}

void deallocate(void* p) noexcept {
    if (!p) return;
    // A block's usable size is at least its class's bytes (malloc may give a little
    // more), so the class found from it serves every request it is handed to.
    const std::size_t usable = ::malloc_usable_size(p);
    if (usable > max_small) {
        std::free(p);
        return;
    }
    std::size_t k = size_class(usable);
    if (class_bytes(k) > usable) --k;
    keep_or_free(p, k);
}

stats this_thread() noexcept {
    return stats{tc.blocks, tc.bytes};
}

void release_this_thread() noexcept {
    flush(tc);
}

}  // namespace tollgate::core::thread_cache
