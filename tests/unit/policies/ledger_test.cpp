#define BOOST_TEST_MODULE ledger
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <sqlite3.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <ostream>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "policies/usage/ledger.hpp"
#include "store/usage_record.hpp"
#include "tests/support/sample_record.hpp"

namespace bdata = boost::unit_test::data;
namespace fs = std::filesystem;
namespace store = tollgate::store;
using namespace std::chrono_literals;
using tollgate::policies::ledger;
using tollgate::policies::parse_time_param;
using tollgate::store::to_jsonl;
using tollgate::store::usage_query;
using tollgate::store::usage_record;
using tollgate::store::usage_row;

using tollgate::test::day_ms;
using tollgate::test::make_record;
using tollgate::test::nov25;
using tollgate::test::nov25_10h;

namespace {

// A fresh directory per test case, removed with everything in it.
struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "tollgate-ledger-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
    std::string file(const char* name) const { return (path / name).string(); }
};

ledger::options make_options(const temp_dir& dir) {
    ledger::options o;
    o.database = dir.file("data/usage.db");  // parent directory does not exist yet
    o.jsonl = dir.file("data/usage.jsonl");
    return o;
}

// A separate connection, as another process would see the file.
struct db_handle {
    sqlite3* db = nullptr;
    explicit db_handle(const std::string& path) {
        if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr) != SQLITE_OK)
            throw std::runtime_error("test cannot open " + path);
        sqlite3_busy_timeout(db, 5000);
    }
    ~db_handle() { sqlite3_close_v2(db); }
    void exec(const char* sql) {
        char* err = nullptr;
        if (sqlite3_exec(db, sql, nullptr, nullptr, &err) != SQLITE_OK) {
            std::string msg = err ? err : "?";
            sqlite3_free(err);
            throw std::runtime_error(std::string(sql) + ": " + msg);
        }
    }
    std::int64_t scalar(const char* sql) {
        sqlite3_stmt* s = nullptr;
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
            throw std::runtime_error(sqlite3_errmsg(db));
        std::int64_t v = -1;
        if (sqlite3_step(s) == SQLITE_ROW) v = sqlite3_column_int64(s, 0);
        sqlite3_finalize(s);
        return v;
    }
};

std::vector<std::string> read_lines(const std::string& path) {
    std::ifstream in(path);
    std::vector<std::string> lines;
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// Minimal parser for one flat JSONL object: the keys in order and each value's raw text
// (strings unescaped for \" \\ \n \uXXXX-free cases). Throws on anything malformed.
std::vector<std::pair<std::string, std::string>> parse_flat_object(std::string_view s) {
    std::vector<std::pair<std::string, std::string>> out;
    std::size_t i = 0;
    auto expect = [&](char c) {
        if (i >= s.size() || s[i] != c)
            throw std::runtime_error(std::string("expected '") + c + "' in " + std::string(s));
        ++i;
    };
    auto parse_string = [&] {
        expect('"');
        std::string v;
        while (i < s.size() && s[i] != '"') {
            if (s[i] == '\\') {
                ++i;
                if (i >= s.size()) break;
                switch (s[i]) {
                    case 'n':
                        v += '\n';
                        break;
                    case 't':
                        v += '\t';
                        break;
                    case 'u':
                        v += "\\u";
                        break;  // kept escaped; tests compare the text
                    default:
                        v += s[i];
                }
            } else {
                if (static_cast<unsigned char>(s[i]) < 0x20)
                    throw std::runtime_error("raw control character in string");
                v += s[i];
            }
            ++i;
        }
        expect('"');
        return v;
    };
    expect('{');
    while (true) {
        std::string key = parse_string();
        expect(':');
        std::string value;
        if (i < s.size() && s[i] == '"') {
            value = "\"" + parse_string() + "\"";
        } else {
            const std::size_t start = i;
            while (i < s.size() && s[i] != ',' && s[i] != '}') ++i;
            value = std::string(s.substr(start, i - start));
            if (value.empty()) throw std::runtime_error("empty value");
        }
        out.emplace_back(std::move(key), std::move(value));
        if (i < s.size() && s[i] == ',') {
            ++i;
            continue;
        }
        expect('}');
        break;
    }
    if (i != s.size()) throw std::runtime_error("trailing bytes");
    return out;
}

const std::vector<std::string> spec_keys = {"ts",
                                            "request_id",
                                            "key_id",
                                            "model",
                                            "provider",
                                            "upstream_model",
                                            "status",
                                            "stream",
                                            "attempts",
                                            "prompt_tokens",
                                            "completion_tokens",
                                            "total_tokens",
                                            "usage_source",
                                            "cost_usd",
                                            "latency_ms",
                                            "ttft_ms",
                                            "error"};

std::vector<std::string> keys_of(const std::vector<std::pair<std::string, std::string>>& kv) {
    std::vector<std::string> keys;
    for (const auto& [k, v] : kv) keys.push_back(k);
    return keys;
}

std::string value_of(const std::vector<std::pair<std::string, std::string>>& kv,
                     std::string_view key) {
    for (const auto& [k, v] : kv)
        if (k == key) return v;
    throw std::runtime_error("no key " + std::string(key));
}

// Collects what the commit callback saw.
struct commit_log {
    std::mutex mutex;
    std::condition_variable cv;
    std::vector<std::string> ids;
    std::size_t batches = 0;

    ledger::commit_callback callback() {
        return [this](std::span<const store::usage_record> batch) {
            std::lock_guard lock(mutex);
            for (const auto& r : batch) ids.push_back(r.request_id);
            ++batches;
            cv.notify_all();
        };
    }
    bool wait_for_count(std::size_t n, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex);
        return cv.wait_for(lock, timeout, [&] { return ids.size() >= n; });
    }
};

template <class Pred>
bool eventually(Pred pred, std::chrono::milliseconds timeout = 5s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!pred()) {
        if (std::chrono::steady_clock::now() > deadline) return false;
        std::this_thread::sleep_for(1ms);
    }
    return true;
}

struct time_case {
    std::string text;
    std::optional<std::int64_t> expected;
};
std::ostream& operator<<(std::ostream& os, const time_case& c) {
    os << '"' << c.text << "\" -> ";
    if (c.expected)
        os << *c.expected;
    else
        os << "invalid";
    return os;
}

const std::vector<time_case> time_cases = {
    {"2026-11-25T10:00:00Z", nov25_10h},
    {"2026-11-25t10:00:00z", nov25_10h},
    {"2026-11-25 10:00:00Z", nov25_10h},
    {"2026-11-25", nov25},
    {"2026-11-25T15:04:05.123Z", 1795619045123},
    {"2026-11-25T15:04:05.1Z", 1795619045100},
    {"2026-11-25T15:04:05.123999Z", 1795619045123},  // truncated to ms
    {"2026-11-25T12:00:00+02:00", nov25_10h},
    {"2026-11-25T12:00:00 02:00", nov25_10h},  // '+' form-decoded to ' '
    {"2026-11-25T05:30:00-04:30", nov25_10h},
    {"2026-11-25T10:00:00.5+00:00", nov25_10h + 500},
    {"2024-02-29", 1709164800000},
    {"1970-01-01T00:00:00Z", 0},
    {"2026-12-31T23:59:59.999Z", 1798761599999},
    {"", std::nullopt},
    {"2026-11-25T10:00:00", std::nullopt},  // no offset
    {"2026-11-25T10:00Z", std::nullopt},
    {"2026-13-01", std::nullopt},
    {"2026-02-29", std::nullopt},
    {"2026-11-31", std::nullopt},
    {"2026-11-25T24:00:00Z", std::nullopt},
    {"2026-11-25T10:60:00Z", std::nullopt},
    {"2026-11-25T10:00:00.Z", std::nullopt},
    {"2026-11-25T10:00:00+2:00", std::nullopt},
    {"2026-11-25T10:00:00+02:60", std::nullopt},
    {"2026-11-25T10:00:00Z ", std::nullopt},
    {"26-11-25", std::nullopt},
    {"2026/11/25", std::nullopt},
    {"2026-11-25x", std::nullopt},
    {"yesterday", std::nullopt},
};

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(rows_written_many_to_a_statement_keep_each_rows_own_fields) {
    // A batch goes in 32 rows per INSERT, then the rest one by one: every row must keep
    // its own values, whichever statement carried it.
    temp_dir dir;
    {
        ledger l(make_options(dir));
        for (int i = 0; i < 70; ++i) {
            auto r = make_record("r" + std::to_string(i), "k" + std::to_string(i % 5));
            r.prompt_tokens = static_cast<std::uint64_t>(i);
            r.completion_tokens = static_cast<std::uint64_t>(1000 + i);
            r.status = 200 + i % 3;
            if (i % 7 == 0) r.error = "e" + std::to_string(i);
            l.push(std::move(r));
        }
        l.flush();
    }
    db_handle db(dir.file("data/usage.db"));
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage") == 70);
    BOOST_TEST(
        db.scalar("SELECT COUNT(*) FROM usage WHERE completion_tokens = prompt_tokens + 1000 "
                  "AND request_id = 'r' || prompt_tokens "
                  "AND key_id = 'k' || (prompt_tokens % 5) "
                  "AND status = 200 + prompt_tokens % 3 "
                  "AND (error IS NOT NULL) = (prompt_tokens % 7 = 0) "
                  "AND (error IS NULL OR error = 'e' || prompt_tokens)") == 70);
}

// The queue's slots are reused, strings and all, and the usage policy pushes one record
// object it refills per request: a field a record leaves unset (no error, no ttft, a
// shorter id) must not come out with an earlier record's value, in the callback, the
// database or the JSONL log.
BOOST_AUTO_TEST_CASE(records_pushed_into_reused_slots_come_out_as_pushed) {
    temp_dir dir;
    std::vector<std::string> expected, seen;
    std::vector<std::uint64_t> seen_cached;
    {
        auto o = make_options(dir);
        o.batch_max = 7;
        ledger l(o);
        std::mutex m;
        l.on_commit([&](std::span<const store::usage_record> batch) {
            std::lock_guard lock(m);
            for (const auto& r : batch) {
                seen.push_back(to_jsonl(r));
                seen_cached.push_back(r.cached_tokens);
            }
        });
        usage_record r;  // refilled for every push, as the usage policy does
        int n = 0;
        for (int round = 0; round < 4; ++round) {
            for (int i = 0; i < 23; ++i, ++n) {
                const bool big = (n % 3) == 0;
                r = usage_record{};
                r.ts_ms = nov25_10h + n;
                r.request_id =
                    big ? "request-with-a-long-id-" + std::string(40, 'x') + std::to_string(n)
                        : "r" + std::to_string(n);
                r.key_id = big ? "team-" + std::string(30, 'k') : "";
                // One record with a huge model name (a wildcard route passes any): its
                // slot gives that memory back once written, and the record is whole.
                r.model = n == 40 ? std::string(100'000, 'm') : "m" + std::to_string(n % 4);
                r.provider = big ? "openai" : "";
                r.upstream_model = big ? std::string(50, 'u') : "";
                r.status = big ? 502 : 200;
                r.stream = big;
                r.attempts = static_cast<std::uint32_t>(1 + n % 2);
                if (!big) r.prompt_tokens = static_cast<std::uint64_t>(n);
                if (n % 4 == 1) r.completion_tokens = 7;
                r.total_tokens = r.prompt_tokens;
                r.cached_tokens = big ? 99 : 0;
                r.estimated = big;
                if (big) r.cost_usd = 0.25;
                r.latency_ms = n;
                if (n % 5 == 0) r.ttft_ms = 1.5;
                if (big) r.error = "upstream_unavailable_" + std::string(30, 'e');
                expected.push_back(to_jsonl(r));
                l.push(r);
            }
            l.flush();  // the next round's pushes land in slots already used
        }
        std::lock_guard lock(m);
        BOOST_TEST(seen == expected, boost::test_tools::per_element());
        for (std::size_t i = 0; i < seen_cached.size(); ++i)
            BOOST_TEST(seen_cached[i] == (i % 3 == 0 ? 99u : 0u));
    }
    std::ifstream log(dir.file("data/usage.jsonl"));
    std::vector<std::string> lines;
    for (std::string line; std::getline(log, line);) lines.push_back(line);
    BOOST_TEST(lines == expected, boost::test_tools::per_element());
    db_handle db(dir.file("data/usage.db"));
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage") == 92);
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage WHERE error IS NOT NULL") == 31);
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage WHERE key_id = ''") == 61);
}

BOOST_AUTO_TEST_CASE(large_strings_are_released_and_small_ones_kept) {
    usage_record r = make_record(std::string(300, 'r'), "team-a", std::string(5000, 'm'));
    r.error = std::string(1000, 'e');
    const auto key_capacity = r.key_id.capacity();
    const auto provider = r.provider;
    tollgate::store::release_large_strings(r, 256);
    BOOST_TEST(r.request_id.empty());
    BOOST_TEST(r.request_id.capacity() <= 256u);
    BOOST_TEST(r.model.empty());
    BOOST_TEST(r.model.capacity() <= 256u);
    BOOST_REQUIRE(r.error.has_value());
    BOOST_TEST(r.error->capacity() <= 256u);
    BOOST_TEST(r.key_id == "team-a");  // small: kept as it is
    BOOST_TEST(r.key_id.capacity() == key_capacity);
    BOOST_TEST(r.provider == provider);
}

BOOST_AUTO_TEST_CASE(jsonl_line_has_spec_keys_in_order_and_values) {
    store::usage_record r = make_record("req-1");
    r.ts_ms = 1795619045123;
    r.stream = true;
    r.attempts = 2;
    r.cached_tokens = 4;
    r.ttft_ms = 3.25;
    r.error = "upstream_timeout";
    r.estimated = true;
    const std::string line = store::to_jsonl(r);
    BOOST_TEST(line ==
               R"({"ts":"2026-11-25T15:04:05.123Z","request_id":"req-1","key_id":"team-a",)"
               R"("model":"m1","provider":"openai","upstream_model":"gpt-4o-mini-2024-07-18",)"
               R"("status":200,"stream":true,"attempts":2,"prompt_tokens":10,)"
               R"("completion_tokens":5,"total_tokens":15,"usage_source":"estimated",)"
               R"("cost_usd":5e-06,"latency_ms":12.5,"ttft_ms":3.25,"error":"upstream_timeout"})");
    BOOST_TEST(line.find("cached") == std::string::npos);
    BOOST_TEST(line.find('\n') == std::string::npos);
}

BOOST_AUTO_TEST_CASE(jsonl_line_has_nulls_where_unknown) {
    store::usage_record r;
    r.request_id = "req-2";
    r.key_id = "team-a";
    r.model = "m1";
    r.status = 502;
    const auto kv = parse_flat_object(store::to_jsonl(r));
    BOOST_TEST(keys_of(kv) == spec_keys, boost::test_tools::per_element());
    BOOST_TEST(value_of(kv, "ts") == "\"1970-01-01T00:00:00.000Z\"");
    for (const char* k : {"provider", "upstream_model", "prompt_tokens", "completion_tokens",
                          "total_tokens", "cost_usd", "ttft_ms", "error"})
        BOOST_TEST(value_of(kv, k) == "null", k);
    BOOST_TEST(value_of(kv, "usage_source") == "\"upstream\"");
    BOOST_TEST(value_of(kv, "stream") == "false");
    BOOST_TEST(value_of(kv, "latency_ms") == "0");
}

BOOST_AUTO_TEST_CASE(jsonl_line_escapes_strings_and_replaces_bad_utf8) {
    store::usage_record r = make_record(std::string("a\"b\\c\nd\x01") + "\xff" + "\xC3\xA9");
    const std::string line = store::to_jsonl(r);
    BOOST_TEST(line.find(R"("request_id":"a\"b\\c\nd\u0001)"
                         "\xEF\xBF\xBD\xC3\xA9\"") != std::string::npos);
    BOOST_CHECK_NO_THROW(parse_flat_object(line));
}

BOOST_DATA_TEST_CASE(parse_time_param_accepts_rfc3339_and_dates, bdata::make(time_cases), c) {
    BOOST_TEST((parse_time_param(c.text) == c.expected));
}

// The PostgreSQL backend is tested against a real server in pg_store_test.cpp; this
// only needs a port where nothing listens.
BOOST_AUTO_TEST_CASE(unreachable_postgresql_url_throws_naming_the_server_not_the_password) {
    ledger::options o;
    o.database = "postgresql://billing:s3cret@127.0.0.1:1/usage";
    try {
        ledger l(o);
        BOOST_FAIL("a ledger on an unreachable server was built");
    } catch (const std::runtime_error& e) {
        const std::string msg = e.what();
        BOOST_TEST(msg.find("127.0.0.1:1/usage") != std::string::npos, msg);
        BOOST_TEST(msg.find("s3cret") == std::string::npos, msg);
        BOOST_TEST(msg.find("billing:") == std::string::npos, msg);
    }
    o.database = "postgresql://billing:s3cret@127.0.0.1:1/usage?bogus_option=1";
    try {
        ledger l(o);
        BOOST_FAIL("a malformed URL was accepted");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()).find("s3cret") == std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(unopenable_database_throws_naming_the_path) {
    temp_dir dir;
    { std::ofstream(dir.file("not-a-dir")) << "x"; }
    ledger::options o;
    o.database = dir.file("not-a-dir") + "/usage.db";  // parent is a regular file
    try {
        ledger l(o);
        BOOST_FAIL("opening under a regular file succeeded");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()).find(o.database) != std::string::npos, e.what());
    }
    o.database = dir.path.string();  // a directory, not a database file
    try {
        ledger l(o);
        BOOST_FAIL("opening a directory succeeded");
    } catch (const std::runtime_error& e) {
        BOOST_TEST(std::string(e.what()).find(o.database) != std::string::npos, e.what());
    }
}

BOOST_AUTO_TEST_CASE(many_records_share_few_transactions) {
    temp_dir dir;
    auto o = make_options(dir);
    ledger l(o);
    l.push(make_record("warm-up"));
    l.flush();
    BOOST_TEST(l.transactions() == 1u);
    // Hold the write lock while pushing so the test does not race the writer: its BEGIN
    // waits (busy_timeout, no failure) and the backlog is then written in full batches,
    // however fast or slow this machine pushes.
    db_handle locker(o.database);
    locker.exec("BEGIN EXCLUSIVE");
    for (int i = 0; i < 20000; ++i) l.push(make_record("r" + std::to_string(i)));
    locker.exec("COMMIT");
    l.flush();
    BOOST_TEST(l.healthy());
    // batch_max 1000: 20 full batches, plus at most one partial first batch the writer took
    // before the backlog built up.
    const auto txns = l.transactions() - 1;
    BOOST_TEST(txns >= 20u);
    BOOST_TEST(txns <= 21u);
    BOOST_TEST(l.aggregate({}).at(0).requests == 20001u);
}

BOOST_AUTO_TEST_CASE(batch_max_bounds_records_per_transaction) {
    temp_dir dir;
    auto o = make_options(dir);
    o.batch_max = 10;
    commit_log log;
    ledger l(o);
    l.on_commit(log.callback());
    for (int i = 0; i < 100; ++i) l.push(make_record("r" + std::to_string(i)));
    l.flush();
    BOOST_TEST(l.transactions() >= 10u);
    BOOST_TEST(log.batches == l.transactions());
    BOOST_TEST(log.ids.size() == 100u);
}

BOOST_AUTO_TEST_CASE(lone_record_is_committed_without_flush) {
    temp_dir dir;
    auto o = make_options(dir);
    o.flush_interval = 20ms;
    commit_log log;
    ledger l(o);
    l.on_commit(log.callback());
    l.push(make_record("alone"));
    // The writer gathers for at most flush_interval; generous bound for a loaded machine.
    BOOST_TEST(log.wait_for_count(1, 5s));
    BOOST_TEST(l.transactions() == 1u);
}

BOOST_AUTO_TEST_CASE(failed_write_is_retried_and_loses_nothing) {
    temp_dir dir;
    auto o = make_options(dir);
    o.busy_timeout = 20ms;
    o.queue_capacity = 50;
    commit_log log;
    ledger l(o);
    l.on_commit(log.callback());
    l.push(make_record("before"));
    l.flush();
    BOOST_TEST(l.healthy());

    db_handle locker(o.database);
    locker.exec("BEGIN EXCLUSIVE");  // the writer's BEGIN IMMEDIATE now gets SQLITE_BUSY
    for (int i = 0; i < 100; ++i) l.push(make_record("r" + std::to_string(i)));
    BOOST_TEST(eventually([&] { return !l.healthy(); }));
    BOOST_TEST(l.pending() == 100u);
    BOOST_TEST(l.saturated());
    BOOST_TEST(!l.flush_for(50ms));
    // Reads keep working while the writer is locked out.
    BOOST_TEST(l.aggregate({}).at(0).requests == 1u);
    locker.exec("COMMIT");

    l.flush();
    BOOST_TEST(l.healthy());
    BOOST_TEST(l.pending() == 0u);
    BOOST_TEST(!l.saturated());
    BOOST_TEST(locker.scalar("SELECT COUNT(*) FROM usage") == 101);
    BOOST_TEST(locker.scalar("SELECT COUNT(DISTINCT request_id) FROM usage") == 101);
    BOOST_TEST(read_lines(o.jsonl).size() == 101u);
    BOOST_TEST(log.ids.size() == 101u);
    BOOST_TEST(std::set<std::string>(log.ids.begin(), log.ids.end()).size() == 101u);
}

// What only the SQLite file shows (the same restart on both backends: store/backends_test).
BOOST_AUTO_TEST_CASE(sqlite_file_is_wal_with_the_utc_day_and_cached_tokens) {
    temp_dir dir;
    const auto o = make_options(dir);
    {
        ledger l(o);
        store::usage_record r = make_record("first");
        r.cached_tokens = 7;
        l.push(std::move(r));
        for (int i = 0; i < 9; ++i) l.push(make_record("r" + std::to_string(i)));
    }
    db_handle db(o.database);
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage") == 10);
    BOOST_TEST(db.scalar("SELECT cached_tokens FROM usage WHERE request_id = 'first'") == 7);
    BOOST_TEST(db.scalar("SELECT day = '2026-11-25' FROM usage WHERE request_id = 'first'") == 1);
    BOOST_TEST(db.scalar("SELECT journal_mode = 'wal' FROM pragma_journal_mode") == 1);
    BOOST_TEST(read_lines(o.jsonl).size() == 10u);
}

// A batch is stored whole or not at all, its per-key daily sums with it: a write that
// fails after its records went in (here the sums are refused) is rolled back and retried,
// and the sums count each record once.
BOOST_AUTO_TEST_CASE(daily_sums_fail_and_retry_with_their_records) {
    temp_dir dir;
    auto o = make_options(dir);
    o.busy_timeout = 20ms;
    ledger l(o);
    l.push(make_record("before"));
    l.flush();

    db_handle db(o.database);
    db.exec(
        "CREATE TABLE refuse (x); INSERT INTO refuse VALUES (1);"
        "CREATE TRIGGER refuse_sums BEFORE INSERT ON usage_daily WHEN EXISTS (SELECT 1 FROM "
        "refuse) BEGIN SELECT RAISE(FAIL, 'refused by the test'); END;");
    for (int i = 0; i < 40; ++i)
        l.push(make_record("r" + std::to_string(i), i % 2 ? "team-a" : "team-b"));
    BOOST_TEST(eventually([&] { return !l.healthy(); }));
    BOOST_TEST(l.pending() == 40u);
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage") == 1);  // the records rolled back too
    db.exec("DELETE FROM refuse");

    l.flush();
    BOOST_TEST(l.healthy());
    BOOST_TEST(db.scalar("SELECT COUNT(*) FROM usage") == 41);
    BOOST_TEST(db.scalar("SELECT SUM(requests) FROM usage_daily") == 41);
    BOOST_TEST(db.scalar("SELECT requests FROM usage_daily WHERE key_id = 'team-a'") == 21);
    BOOST_TEST(db.scalar("SELECT total_tokens FROM usage_daily WHERE key_id = 'team-b'") == 300);
    BOOST_TEST(l.totals_since("team-b", tollgate::test::nov25).tokens == 300u);
}

// A ledger file of the first schema (an index on usage (key_id, day), no usage_daily) is
// brought up to date when opened: the sums are made from its records, the index goes, and
// the reports and budgets read the same as before; new records add to the sums.
BOOST_AUTO_TEST_CASE(a_first_schema_ledger_gains_its_daily_sums) {
    temp_dir dir;
    const auto o = make_options(dir);
    std::vector<usage_record> records;
    for (int i = 0; i < 30; ++i) {
        usage_record r = make_record("old" + std::to_string(i), i % 3 ? "team-a" : "team-b",
                                     i % 2 ? "m1" : "m2", nov25 - day_ms + i * 3'600'000);
        r.total_tokens = i % 4 ? std::optional<std::uint64_t>(20 + i) : std::nullopt;
        r.cost_usd = i % 5 ? std::optional<double>(0.01 * i) : std::nullopt;
        records.push_back(r);
    }
    {
        ledger l(o);
        for (const auto& r : records) l.push(r);
    }
    {
        // As the first release left it.
        db_handle db(o.database);
        db.exec(
            "DROP TABLE usage_daily; CREATE INDEX usage_key_day ON usage(key_id, day);"
            "PRAGMA user_version=1");
    }
    store::usage_query by_key_day;
    by_key_day.by_key = by_key_day.by_day = by_key_day.by_model = true;
    // Two instances start on the file at once: one upgrades it, the other finds it done.
    std::optional<ledger> other;
    std::thread starting([&] { other.emplace(o); });
    ledger l(o);
    starting.join();
    other.reset();
    {
        db_handle db(o.database);
        BOOST_TEST(db.scalar("PRAGMA user_version") == 2);
        BOOST_TEST(db.scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'usage_key_day'") ==
                   0);
        BOOST_TEST(db.scalar("SELECT SUM(requests) FROM usage_daily") == 30);
    }
    auto rows = l.aggregate(by_key_day);
    std::uint64_t requests = 0, tokens = 0;
    for (const auto& row : rows) requests += row.requests, tokens += row.total_tokens;
    std::uint64_t want_tokens = 0;
    for (const auto& r : records) want_tokens += store::billable_tokens(r);
    BOOST_TEST(requests == 30u);
    BOOST_TEST(tokens == want_tokens);
    std::uint64_t want_b = 0;
    double want_b_usd = 0;
    for (const auto& r : records)
        if (r.key_id == "team-b" && r.ts_ms >= nov25)
            want_b += store::billable_tokens(r), want_b_usd += r.cost_usd.value_or(0);
    BOOST_TEST(l.totals_since("team-b", nov25).tokens == want_b);
    BOOST_TEST(l.totals_since("team-b", nov25).usd == want_b_usd,
               boost::test_tools::tolerance(1e-9));

    l.push(make_record("new", "team-b", "m1", nov25 + 1));
    l.flush();
    BOOST_TEST(l.totals_since("team-b", nov25).tokens == want_b + 15);
    BOOST_TEST(l.aggregate({}).at(0).requests == 31u);
}

BOOST_AUTO_TEST_SUITE_END()
