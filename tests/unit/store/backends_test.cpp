#define BOOST_TEST_MODULE store_backends
// The ledger and the key store against each storage backend, the same cases for both:
// SQLite (a file) and PostgreSQL (a real server this test starts: tests/support's
// postgres_server). What only one backend has (SQLite's locking and WAL, PostgreSQL's
// reconnects and concurrent schema creation) is tested in ledger_test and pg_store_test.
#include <stdlib.h>
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <ostream>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "policies/auth/key_store.hpp"
#include "policies/usage/ledger.hpp"
#include "store/usage_record.hpp"
#include "tests/support/fixtures.hpp"
#include "tests/support/sample_record.hpp"

namespace bdata = boost::unit_test::data;
namespace fs = std::filesystem;
namespace store = tollgate::store;
using namespace std::chrono_literals;
using tollgate::policies::key_store;
using tollgate::policies::ledger;
using tollgate::test::postgres_server;

using tollgate::test::day_ms;
using tollgate::test::make_record;
using tollgate::test::nov25;
using tollgate::test::nov25_10h;

namespace {

enum class backend { sqlite, postgres };
std::ostream& operator<<(std::ostream& os, backend b) {
    return os << (b == backend::sqlite ? "sqlite" : "postgres");
}
const std::vector<backend> backends{backend::sqlite, backend::postgres};

// One PostgreSQL server for the module (it takes about a second to start), started only
// when a PostgreSQL case runs.
postgres_server& server() {
    static postgres_server s;
    return s;
}

// A fresh, empty usage database of the backend: a file in a temporary directory, or a
// new database on the server.
struct database {
    fs::path dir;
    std::string url;
    explicit database(backend b) {
        std::string tmpl = (fs::temp_directory_path() / "tollgate-store-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        dir = tmpl;
        if (b == backend::sqlite) {
            url = (dir / "data" / "usage.db").string();
        } else {
            static int n = 0;
            const std::string name = "backends_" + std::to_string(++n);
            server().query("CREATE DATABASE " + name, "postgres");
            url = server().url(name);
        }
    }
    ~database() {
        std::error_code ec;
        fs::remove_all(dir, ec);
    }
    ledger::options options() const {
        ledger::options o;
        o.database = url;
        o.jsonl = (dir / "usage.jsonl").string();
        o.spill_path = (dir / "usage.spill").string();
        return o;
    }
};

// Reference aggregation, computed the obvious way, for comparing with the SQL.
std::vector<store::usage_row> reference_aggregate(const std::vector<store::usage_record>& records,
                                                  const store::usage_query& q) {
    using group_key = std::tuple<std::string, std::string, std::string, std::string>;
    std::map<group_key, store::usage_row> groups;
    for (const auto& r : records) {
        if (q.key && r.key_id != *q.key) continue;
        if (q.model && r.model != *q.model) continue;
        if (q.since_ms && r.ts_ms < *q.since_ms) continue;
        if (q.until_ms && r.ts_ms >= *q.until_ms) continue;
        const std::string day = tollgate::store::utc_day(r.ts_ms);
        const std::string hour = tollgate::store::utc_hour(r.ts_ms);
        group_key g{q.by_key ? r.key_id : "", q.by_model ? r.model : "", q.by_day ? day : "",
                    q.by_hour ? hour : ""};
        store::usage_row& row = groups[g];
        if (q.by_key) row.key = r.key_id;
        if (q.by_model) row.model = r.model;
        if (q.by_day) row.day = day;
        if (q.by_hour) row.hour = hour;
        ++row.requests;
        row.prompt_tokens += r.prompt_tokens.value_or(0);
        row.completion_tokens += r.completion_tokens.value_or(0);
        row.total_tokens += tollgate::store::billable_tokens(r);
        row.cost_usd += r.cost_usd.value_or(0);
    }
    std::vector<store::usage_row> rows;
    for (auto& [g, row] : groups) rows.push_back(row);
    if (rows.empty() && !q.by_key && !q.by_model && !q.by_day && !q.by_hour) rows.emplace_back();
    return rows;
}

// Hand-made records: two keys, two models, three days, some unknown counts.
std::vector<store::usage_record> sample_records() {
    std::vector<store::usage_record> rs;
    auto add = [&](std::string key, std::string model, std::int64_t ts,
                   std::optional<std::uint64_t> p, std::optional<std::uint64_t> c,
                   std::optional<std::uint64_t> t, std::optional<double> cost) {
        store::usage_record r = make_record("r" + std::to_string(rs.size()), key, model, ts);
        r.prompt_tokens = p;
        r.completion_tokens = c;
        r.total_tokens = t;
        r.cost_usd = cost;
        rs.push_back(std::move(r));
    };
    add("team-a", "m1", nov25 - day_ms + 1000, 100, 50, 150, 0.1);  // 11-24
    add("team-a", "m1", nov25, 200, 100, 300, 0.2);                 // 11-25 00:00:00.000
    add("team-a", "m2", nov25_10h, 1000, 10, 1010, 1.5);
    add("team-a", "m2", nov25_10h + 1, std::nullopt, std::nullopt, std::nullopt, std::nullopt);
    add("team-b", "m1", nov25_10h, 7, 3, std::nullopt, 0.25);  // total falls back to 10
    add("team-b", "m1", nov25 + day_ms, 1, 1, 2, 0.001);       // 11-26
    add("team-b", "m2", nov25 + day_ms + 5, 40, std::nullopt, 40, std::nullopt);
    return rs;
}

// group_by as bits (1 key, 2 model, 4 day, 8 hour) and one of six filters.
store::usage_query make_query(int grouping, int filter) {
    store::usage_query q;
    q.by_key = grouping & 1;
    q.by_model = grouping & 2;
    q.by_day = grouping & 4;
    q.by_hour = grouping & 8;
    if (filter == 1) q.key = "team-a";
    if (filter == 2) q.model = "m1";
    if (filter == 3) q.since_ms = nov25;      // inclusive: the 00:00:00.000 record counts
    if (filter == 4) q.until_ms = nov25_10h;  // exclusive: the 10:00 records do not
    if (filter == 5) {
        q.key = "team-b";
        q.since_ms = nov25_10h;
        q.until_ms = nov25 + day_ms + 5;  // excludes the record at exactly that instant
    }
    return q;
}

void check_rows_equal(const std::vector<store::usage_row>& got,
                      const std::vector<store::usage_row>& want) {
    BOOST_TEST_REQUIRE(got.size() == want.size());
    for (std::size_t i = 0; i < got.size(); ++i) {
        BOOST_TEST_CONTEXT("row " << i) {
            BOOST_TEST((got[i].key == want[i].key));
            BOOST_TEST((got[i].model == want[i].model));
            BOOST_TEST((got[i].day == want[i].day));
            BOOST_TEST((got[i].hour == want[i].hour));
            BOOST_TEST(got[i].requests == want[i].requests);
            BOOST_TEST(got[i].prompt_tokens == want[i].prompt_tokens);
            BOOST_TEST(got[i].completion_tokens == want[i].completion_tokens);
            BOOST_TEST(got[i].total_tokens == want[i].total_tokens);
            BOOST_TEST(got[i].cost_usd == want[i].cost_usd, boost::test_tools::tolerance(1e-9));
        }
    }
}

// Varied records: keys and models that sort differently by locale ("B" < "a" in bytes),
// three days, unknown counts, costs whose float sums need rounding, odd bytes.
std::vector<store::usage_record> varied_records() {
    std::vector<store::usage_record> rs;
    const char* keys[] = {"team-a", "team-b", "Team-C", "_ops"};
    const char* models[] = {"m1", "gpt-4o-mini", "Claude"};
    for (int i = 0; i < 300; ++i) {
        store::usage_record r =
            make_record("req-" + std::to_string(i), keys[i % 4], models[i % 3],
                        nov25 - day_ms + static_cast<std::int64_t>(i) * 900'000);
        r.prompt_tokens = 100 + i;
        r.completion_tokens = i % 7 == 0 ? std::nullopt : std::optional<std::uint64_t>(i);
        r.total_tokens =
            i % 5 == 0 ? std::nullopt : std::optional<std::uint64_t>(100 + i + (i % 7 ? i : 0));
        r.cost_usd = i % 11 == 0 ? std::nullopt : std::optional<double>(0.1 * (i % 13) + 1e-7);
        r.stream = i % 2 == 0;
        r.estimated = i % 9 == 0;
        r.ttft_ms = i % 3 == 0 ? std::nullopt : std::optional<double>(i * 1.25);
        if (i % 17 == 0) r.error = "upstream_timeout";
        if (i == 42) r.request_id = std::string("bad\xff\0utf8", 9);  // NUL and a stray byte
        rs.push_back(std::move(r));
    }
    return rs;
}

std::vector<store::usage_query> query_table() {
    std::vector<store::usage_query> qs;
    for (int grouping = 0; grouping < 16; ++grouping) {
        for (int filter = 0; filter < 8; ++filter) {
            store::usage_query q;
            q.by_key = grouping & 1;
            q.by_model = grouping & 2;
            q.by_day = grouping & 4;
            q.by_hour = grouping & 8;
            if (filter == 1) q.key = "team-b";
            if (filter == 2) q.model = "Claude";
            if (filter == 3) q.since_ms = nov25, q.until_ms = nov25_10h;
            if (filter == 4) q.key = "_ops", q.since_ms = nov25_10h + 1;
            // Whole days with part of a day at both edges, and with whole days only.
            if (filter == 5) q.since_ms = nov25 - day_ms / 2, q.until_ms = nov25 + day_ms + 7;
            if (filter == 6)
                q.model = "m1", q.since_ms = nov25 - day_ms, q.until_ms = nov25 + 2 * day_ms;
            if (filter == 7) q.key = "Team-C", q.until_ms = nov25 + day_ms / 3;
            qs.push_back(q);
        }
    }
    store::usage_query nobody;
    nobody.key = "nobody";
    qs.push_back(nobody);
    // Bounds past the year 9999 (whose days no longer sort as text) and before 1970.
    for (const std::int64_t far : {std::int64_t{253'402'300'800'000}, std::int64_t{-1}}) {
        store::usage_query q;
        q.since_ms = far;
        qs.push_back(q);
        q.by_day = true;
        qs.push_back(q);
        q = {};
        q.until_ms = far;
        qs.push_back(q);
        q.key = "team-a";
        qs.push_back(q);
    }
    return qs;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_DATA_TEST_CASE(records_from_threads_land_once_each_in_batched_transactions,
                     bdata::make(backends), b) {
    const database db(b);
    auto o = db.options();
    o.batch_max = 200;
    constexpr int threads = 4, per_thread = 2500, total = threads * per_thread;
    std::set<std::string> committed;
    std::mutex committed_mutex;
    ledger l(o);
    l.on_commit([&](std::span<const store::usage_record> batch) {
        std::lock_guard lock(committed_mutex);
        for (const auto& r : batch) committed.insert(r.request_id);
    });
    // A reader beside the writer sees a growing, consistent count. (Boost.Test assertions
    // are not thread-safe: the reader only counts problems.)
    std::atomic<bool> done{false};
    std::atomic<int> reader_errors{0};
    std::thread reader([&] {
        std::uint64_t last = 0;
        while (!done.load()) {
            try {
                const auto rows = l.aggregate({});
                if (rows.size() != 1 || rows[0].requests < last) ++reader_errors;
                if (!rows.empty()) last = rows[0].requests;
            } catch (const std::exception&) {
                ++reader_errors;
            }
        }
    });
    std::vector<std::thread> pushers;
    for (int t = 0; t < threads; ++t)
        pushers.emplace_back([&l, t] {
            for (int i = 0; i < per_thread; ++i)
                l.push(make_record("t" + std::to_string(t) + "-" + std::to_string(i)));
        });
    for (auto& p : pushers) p.join();
    l.flush();
    done = true;
    reader.join();
    BOOST_TEST(reader_errors.load() == 0);
    BOOST_TEST(l.pending() == 0u);
    BOOST_TEST(l.healthy());
    // Batches, not a transaction per record, and none over batch_max.
    BOOST_TEST(l.transactions() >= static_cast<std::uint64_t>(total / 200));
    BOOST_TEST(l.transactions() < static_cast<std::uint64_t>(total / 10));
    BOOST_TEST(l.aggregate({}).at(0).requests == static_cast<std::uint64_t>(total));
    std::lock_guard lock(committed_mutex);
    BOOST_TEST(committed.size() == static_cast<std::size_t>(total));
}

BOOST_DATA_TEST_CASE(records_survive_a_restart, bdata::make(backends), b) {
    const database db(b);
    const auto o = db.options();
    {
        ledger l(o);
        for (int i = 0; i < 10; ++i) l.push(make_record("r" + std::to_string(i)));
        // No flush: the destructor must write everything.
    }
    ledger l(o);
    BOOST_TEST(l.aggregate({}).at(0).requests == 10u);
    l.push(make_record("after-restart"));
    l.flush();
    BOOST_TEST(l.aggregate({}).at(0).requests == 11u);
    BOOST_TEST(l.totals_since("team-a", 0).tokens == 165u);
}

BOOST_DATA_TEST_CASE(aggregate_matches_reference_for_every_grouping_and_filter,
                     bdata::make(backends), b) {
    const database db(b);
    const auto records = sample_records();
    ledger l(db.options());
    for (const auto& r : records) l.push(r);
    l.flush();
    for (int grouping = 0; grouping < 16; ++grouping)
        for (int filter = 0; filter < 6; ++filter) {
            BOOST_TEST_CONTEXT("grouping " << grouping << " filter " << filter) {
                const store::usage_query q = make_query(grouping, filter);
                check_rows_equal(l.aggregate(q), reference_aggregate(records, q));
            }
        }
}

// Keys and models that sort differently by locale ("B" < "a" in bytes), three days,
// unknown counts, costs whose float sums need rounding, odd bytes; several batches.
BOOST_DATA_TEST_CASE(varied_records_aggregate_as_the_reference_says, bdata::make(backends), b) {
    const database db(b);
    auto o = db.options();
    o.batch_max = 64;
    const auto records = varied_records();
    ledger l(o);
    for (const auto& r : records) l.push(r);
    l.flush();
    for (const store::usage_query& q : query_table()) {
        BOOST_TEST_CONTEXT("by_key " << q.by_key << " by_model " << q.by_model << " by_day "
                                     << q.by_day << " by_hour " << q.by_hour << " key "
                                     << q.key.value_or("-") << " model " << q.model.value_or("-")
                                     << " since " << q.since_ms.value_or(-1)) {
            check_rows_equal(l.aggregate(q), reference_aggregate(records, q));
        }
    }
    for (const char* key : {"team-a", "team-b", "Team-C", "_ops", "nobody"})
        for (const std::int64_t since : {std::int64_t{0}, nov25, nov25_10h, nov25 + day_ms,
                                         std::int64_t{-1}, std::int64_t{253'402'300'800'000}}) {
            BOOST_TEST_CONTEXT(key << " since " << since) {
                store::usage_query q;
                q.key = key;
                q.since_ms = since;
                const auto want = reference_aggregate(records, q).at(0);
                const auto got = l.totals_since(key, since);
                BOOST_TEST(got.tokens == want.total_tokens);
                BOOST_TEST(got.usd == want.cost_usd, boost::test_tools::tolerance(1e-9));
            }
        }
}

BOOST_DATA_TEST_CASE(aggregate_json_has_spec_shape, bdata::make(backends), b) {
    const database db(b);
    ledger l(db.options());
    for (const auto& r : sample_records()) l.push(r);
    l.flush();

    store::usage_query all;
    BOOST_TEST(l.aggregate_json(all) ==
               R"({"data":[{"requests":7,"prompt_tokens":1348,"completion_tokens":164,)"
               R"("total_tokens":1512,"cost_usd":2.051}]})");

    store::usage_query by_key;
    by_key.by_key = true;
    BOOST_TEST(l.aggregate_json(by_key) ==
               R"({"data":[{"key":"team-a","requests":4,"prompt_tokens":1300,)"
               R"("completion_tokens":160,"total_tokens":1460,"cost_usd":1.8},)"
               R"({"key":"team-b","requests":3,"prompt_tokens":48,"completion_tokens":4,)"
               R"("total_tokens":52,"cost_usd":0.251}]})");

    store::usage_query full;
    full.by_key = full.by_model = full.by_day = true;
    full.key = "team-a";
    full.model = "m1";
    BOOST_TEST(l.aggregate_json(full) ==
               R"({"data":[{"key":"team-a","model":"m1","day":"2026-11-24","requests":1,)"
               R"("prompt_tokens":100,"completion_tokens":50,"total_tokens":150,"cost_usd":0.1},)"
               R"({"key":"team-a","model":"m1","day":"2026-11-25","requests":1,)"
               R"("prompt_tokens":200,"completion_tokens":100,"total_tokens":300,)"
               R"("cost_usd":0.2}]})");

    store::usage_query none;
    none.by_model = true;
    none.key = "nobody";
    BOOST_TEST(l.aggregate_json(none) == R"({"data":[]})");
}

BOOST_DATA_TEST_CASE(totals_since_sums_one_key_from_an_instant, bdata::make(backends), b) {
    const database db(b);
    ledger l(db.options());
    for (const auto& r : sample_records()) l.push(r);
    l.flush();

    auto t = l.totals_since("team-a", nov25);  // inclusive: 300 + 1010 + 0
    BOOST_TEST(t.tokens == 1310u);
    BOOST_TEST(t.usd == 1.7, boost::test_tools::tolerance(1e-9));
    t = l.totals_since("team-a", 0);
    BOOST_TEST(t.tokens == 1460u);
    t = l.totals_since("team-b", nov25_10h);  // 10 (fallback from 7 + 3) + 2 + 40
    BOOST_TEST(t.tokens == 52u);
    BOOST_TEST(t.usd == 0.251, boost::test_tools::tolerance(1e-9));
    t = l.totals_since("team-b", nov25_10h + 1);
    BOOST_TEST(t.tokens == 42u);
    t = l.totals_since("nobody", 0);
    BOOST_TEST(t.tokens == 0u);
    BOOST_TEST(t.usd == 0.0);
}

BOOST_DATA_TEST_CASE(keys_created_on_one_store_are_seen_by_another_after_refresh,
                     bdata::make(backends), be) {
    const database db(be);
    const std::string& url = db.url;
    if (be == backend::sqlite) fs::create_directories(fs::path(url).parent_path());
    key_store a(url);
    key_store b(url);
    std::vector<std::string> seen;
    b.set_listener(
        [&](const tollgate::config::key_config* before, const tollgate::config::key_config& now) {
            seen.push_back((before ? "changed " : "new ") + now.id);
        });
    BOOST_TEST(!b.refresh());  // nothing changed yet

    tollgate::config::key_config k;
    k.id = "svc-1";
    k.key_sha256 = std::string(64, 'a');
    k.models = std::vector<std::string>{"gpt-4o-mini", "other"};
    k.limits.rpm = 60;
    tollgate::config::budget_config budget;
    budget.tokens = 1000;
    budget.usd = 2.5;
    budget.period = tollgate::config::budget_period::day;
    k.budget = budget;
    k.allowed_cidrs =
        std::vector<tollgate::config::cidr>{*tollgate::config::parse_cidr("10.0.0.0/8"),
                                            *tollgate::config::parse_cidr("2001:db8::/32")};
    BOOST_TEST((a.create(k, 1795600800000) == key_store::result::ok));
    BOOST_TEST(b.refresh());
    {
        const auto t = b.current();
        BOOST_TEST_REQUIRE(t->by_id.count("svc-1") == 1u);
        const auto& e = t->by_id.at("svc-1");
        BOOST_TEST(e.created_at_ms == 1795600800000);
        BOOST_TEST((e.key->models == k.models));
        BOOST_TEST((e.key->limits.rpm == std::optional<std::uint64_t>(60)));
        BOOST_TEST(!e.key->limits.tpm.has_value());
        BOOST_TEST_REQUIRE(e.key->budget.has_value());
        BOOST_TEST(e.key->budget->usd.value_or(0) == 2.5);
        BOOST_TEST((e.key->budget->period == tollgate::config::budget_period::day));
        BOOST_TEST_REQUIRE(e.key->allowed_cidrs.has_value());
        BOOST_TEST((*e.key->allowed_cidrs == *k.allowed_cidrs));
        BOOST_TEST((*e.key->allowed_cidrs)[1].text == "2001:db8::/32");
        BOOST_TEST(t->by_digest.size() == 1u);
    }
    BOOST_TEST(!b.refresh());  // no change since

    // The same id or the same secret from the other store: exists.
    BOOST_TEST((b.create(k, 1) == key_store::result::exists));
    tollgate::config::key_config same_secret = k;
    same_secret.id = "svc-2";
    BOOST_TEST((b.create(same_secret, 1) == key_store::result::exists));

    k.limits.rpm = 5;
    k.models.reset();
    k.allowed_cidrs.reset();
    BOOST_TEST((a.update(k) == key_store::result::ok));
    BOOST_TEST(b.refresh());
    BOOST_TEST((b.current()->by_id.at("svc-1").key->limits.rpm == std::optional<std::uint64_t>(5)));
    BOOST_TEST(!b.current()->by_id.at("svc-1").key->models.has_value());
    BOOST_TEST(!b.current()->by_id.at("svc-1").key->allowed_cidrs.has_value());

    BOOST_TEST((b.remove("svc-1") == key_store::result::ok));
    BOOST_TEST(a.refresh());
    BOOST_TEST(a.current()->by_id.empty());
    BOOST_TEST((a.update(k) == key_store::result::not_found));
    BOOST_TEST((seen == std::vector<std::string>{"new svc-1", "changed svc-1"}));

    // A third store opening the database later loads what is there.
    BOOST_TEST((a.create(same_secret, 7) == key_store::result::ok));
    key_store c(url);
    BOOST_TEST(c.current()->by_id.count("svc-2") == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
