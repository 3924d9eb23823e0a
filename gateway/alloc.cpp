// The program's operator new and delete: malloc behind a per-thread cache of freed small
// blocks (gateway/core/thread_cache.hpp says why). Left out of sanitizer builds, whose
// runtime brings its own operator new and delete to track every block.

#include <cstddef>
#include <new>

#include "gateway/core/thread_cache.hpp"

namespace tc = tollgate::core::thread_cache;

void* operator new(std::size_t n) {
    return tc::allocate(n);
}
void* operator new[](std::size_t n) {
    return tc::allocate(n);
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return tc::allocate(n);
    } catch (...) {
        return nullptr;
    }
}
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept {
    try {
        return tc::allocate(n);
    } catch (...) {
        return nullptr;
    }
}

void operator delete(void* p) noexcept {
    tc::deallocate(p);
}
void operator delete[](void* p) noexcept {
    tc::deallocate(p);
}
void operator delete(void* p, std::size_t n) noexcept {
    tc::deallocate(p, n);
}
void operator delete[](void* p, std::size_t n) noexcept {
    tc::deallocate(p, n);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
    tc::deallocate(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
    tc::deallocate(p);
}
