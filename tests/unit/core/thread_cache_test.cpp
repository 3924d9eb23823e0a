#define BOOST_TEST_MODULE thread_cache
#include <boost/test/unit_test.hpp>

#include <malloc.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "gateway/core/thread_cache.hpp"

namespace tc = tollgate::core::thread_cache;

namespace {

// Empties this thread's cache, so that a test counts only its own blocks.
void drain() {
    tc::release_this_thread();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(a_class_holds_its_requests_in_a_malloc_chunk_of_the_same_size) {
    for (std::size_t n = 0; n <= tc::max_small; ++n) {
        const std::size_t bytes = tc::class_bytes(tc::size_class(n));
        BOOST_TEST_REQUIRE(bytes >= n);
        // What glibc gives for n anyway: its chunks are 16-byte multiples with an 8-byte
        // header, at least 32 bytes.
        const std::size_t chunk = n + 8 <= 32 ? 32 : (n + 8 + 15) / 16 * 16;
        BOOST_TEST_REQUIRE(bytes == chunk - 8, "n = " << n);
    }
}

BOOST_AUTO_TEST_CASE(a_freed_block_serves_the_next_request_of_its_class) {
    drain();
    void* p = tc::allocate(100);
    std::memset(p, 0xab, 100);
    tc::deallocate(p, 100);
    BOOST_TEST(tc::this_thread().blocks == 1u);
    BOOST_TEST(tc::this_thread().bytes == tc::class_bytes(tc::size_class(100)));
    // 97..104 bytes are one class with 100.
    void* q = tc::allocate(104);
    BOOST_TEST(q == p);
    BOOST_TEST(tc::this_thread().blocks == 0u);
    // Another class is not served from it.
    tc::deallocate(q, 104);
    void* r = tc::allocate(200);
    BOOST_TEST(r != q);
    tc::deallocate(r, 200);
    drain();
}

BOOST_AUTO_TEST_CASE(an_unsized_free_finds_the_class_from_the_block) {
    drain();
    void* p = tc::allocate(300);
    const std::size_t usable = ::malloc_usable_size(p);
    BOOST_TEST_REQUIRE(usable >= 300u);
    tc::deallocate(p);
    BOOST_TEST(tc::this_thread().blocks == 1u);
    // Kept in a class whose every request fits in it.
    void* q = tc::allocate(usable);
    BOOST_TEST(q == p);
    std::memset(q, 0xcd, usable);
    tc::deallocate(q, usable);
    drain();
}

BOOST_AUTO_TEST_CASE(the_cache_is_bounded_per_class_and_in_bytes) {
    std::vector<void*> ps;
    ps.reserve(3 * tc::max_per_class);  // (its own growth would be cached too)
    drain();
    for (std::size_t i = 0; i < 3 * tc::max_per_class; ++i) ps.push_back(tc::allocate(64));
    for (void* p : ps) tc::deallocate(p, 64);
    BOOST_TEST(tc::this_thread().blocks == tc::max_per_class);
    drain();

    ps.clear();
    for (std::size_t i = 0; i < 3 * tc::max_per_class; ++i) ps.push_back(tc::allocate(4096));
    for (void* p : ps) tc::deallocate(p, 4096);
    BOOST_TEST(tc::this_thread().bytes <= tc::max_bytes);
    BOOST_TEST(tc::this_thread().blocks == tc::max_bytes / tc::class_bytes(tc::size_class(4096)));
    drain();
}

BOOST_AUTO_TEST_CASE(large_blocks_go_straight_back_to_malloc) {
    drain();
    void* p = tc::allocate(tc::max_small + 1);
    tc::deallocate(p, tc::max_small + 1);
    void* q = tc::allocate(64 * 1024);
    tc::deallocate(q);
    BOOST_TEST(tc::this_thread().blocks == 0u);
}

BOOST_AUTO_TEST_CASE(a_block_freed_on_another_thread_is_kept_there) {
    drain();
    void* p = nullptr;
    std::thread([&] { p = tc::allocate(500); }).join();
    tc::deallocate(p, 500);
    BOOST_TEST(tc::this_thread().blocks == 1u);
    BOOST_TEST(tc::allocate(500) == p);
    tc::deallocate(p, 500);
    drain();
}

BOOST_AUTO_TEST_CASE(a_thread_gives_its_blocks_back_when_it_ends) {
    drain();
    const auto in_use_before = ::mallinfo2().uordblks;
    std::size_t kept = 0;
    std::thread([&] {
        std::vector<void*> ps;
        ps.reserve(60);
        tc::release_this_thread();
        for (int i = 0; i < 60; ++i) ps.push_back(tc::allocate(1000));
        for (void* p : ps) tc::deallocate(p, 1000);
        kept = tc::this_thread().bytes;
    }).join();
    BOOST_TEST(kept == 60 * tc::class_bytes(tc::size_class(1000)));
    // The 60 blocks (about 60 KB) are free again; allow for the thread's own bookkeeping.
    const auto in_use_after = ::mallinfo2().uordblks;
    BOOST_TEST(in_use_after < in_use_before + 8 * 1024);
}

#ifdef TOLLGATE_ALLOC_REPLACED
// The program's operator new and delete (gateway/alloc.cpp), linked into this test.

BOOST_AUTO_TEST_CASE(operator_new_and_delete_go_through_the_cache) {
    drain();
    auto* s = new std::string(200, 'x');
    const std::size_t before = tc::this_thread().blocks;
    delete s;  // the string's buffer and the string itself
    BOOST_TEST(tc::this_thread().blocks == before + 2);
    auto* a = new char[0];
    auto* b = new char[0];
    BOOST_TEST(a != b);  // zero-sized allocations are distinct
    delete[] a;
    delete[] b;
    drain();
}

BOOST_AUTO_TEST_CASE(containers_cross_threads) {
    std::vector<std::unique_ptr<std::string>> made;
    std::thread([&] {
        for (int i = 0; i < 1000; ++i) made.push_back(std::make_unique<std::string>(i % 300, 'a'));
    }).join();
    std::size_t total = 0;
    for (const auto& s : made) total += s->size();
    made.clear();  // freed here, made there
    BOOST_TEST(total > 0u);
    BOOST_TEST(tc::this_thread().bytes <= tc::max_bytes);
    drain();
}

BOOST_AUTO_TEST_CASE(exhaustion_throws_or_returns_null_as_asked) {
    const std::size_t huge = std::numeric_limits<std::size_t>::max() / 2;
    BOOST_CHECK_THROW((void)::operator new(huge), std::bad_alloc);
    BOOST_TEST(::operator new(huge, std::nothrow) == nullptr);
    BOOST_TEST(::operator new[](huge, std::nothrow) == nullptr);
}
#endif

BOOST_AUTO_TEST_SUITE_END()
