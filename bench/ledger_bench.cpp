// Sustained write rate of the usage ledger: records pushed from several threads (as the
// workers do) into a real SQLite file, timed until the last one is durable.
//
//   ledger_bench [RECORDS] [THREADS] [DB_PATH] [KEYS]
//
// KEYS (default 50): how many client keys the records are spread over.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "policies/usage/ledger.hpp"

using namespace tollgate::policies;
namespace store = tollgate::store;

int main(int argc, char** argv) {
    const long records = argc > 1 ? std::atol(argv[1]) : 500000;
    const int threads = argc > 2 ? std::atoi(argv[2]) : 2;
    const std::string path = argc > 3 ? argv[3] : "/tmp/tollgate-ledger-bench.db";
    const long keys = std::max(1L, argc > 4 ? std::atol(argv[4]) : 50L);
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path + suffix);

    ledger::options o;
    o.database = path;
    ledger l(o);
    const auto start = std::chrono::steady_clock::now();
    std::vector<std::thread> pushers;
    for (int t = 0; t < threads; ++t)
        pushers.emplace_back([&, t] {
            for (long i = t; i < records; i += threads) {
                store::usage_record r;
                r.ts_ms = 1795600000000 + i;
                r.request_id = "req-" + std::to_string(i);
                r.key_id = "team-" + std::to_string(i % keys);
                r.model = "gpt-4o-mini";
                r.provider = "openai";
                r.upstream_model = "gpt-4o-mini-2024-07-18";
                r.status = 200;
                r.stream = (i & 1) != 0;
                r.attempts = 1;
                r.prompt_tokens = 812;
                r.completion_tokens = 95;
                r.total_tokens = 907;
                r.cost_usd = 0.000179;
                r.latency_ms = 812.5;
                r.ttft_ms = 143.2;
                l.push(std::move(r));
            }
        });
    for (auto& t : pushers) t.join();
    l.flush();
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf(
        "ledger: %ld records of %ld keys from %d threads in %.2f s = %.0f records/s, %llu "
        "transactions\n",
        records, keys, threads, secs, static_cast<double>(records) / secs,
        static_cast<unsigned long long>(l.transactions()));
    return 0;
}
