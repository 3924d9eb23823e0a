// The PostgreSQL storage of the usage ledger and of the admin-created keys, against a real
// PostgreSQL server started by the postgres_server fixture (127.0.0.1, a temp dir):
// batching, the same /admin/usage answers as the SQLite ledger for the same records,
// budget seeding totals, a writer that outlives a server restart without losing or
// doubling a record, and key changes seen by a second key store after refresh().
//
// Synchronisation: flush()/flush_for() (they return when the records committed) and
// bounded poll loops (poll_until) for what can only be observed.
#define BOOST_TEST_MODULE pg_store
#include <boost/test/unit_test.hpp>

#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "policies/auth/key_store.hpp"
#include "policies/usage/ledger.hpp"
#include "store/usage_record.hpp"
#include "tests/support/fixtures.hpp"

namespace fs = std::filesystem;
namespace store = tollgate::store;
using namespace std::chrono_literals;
using tollgate::policies::key_store;
using tollgate::policies::ledger;
using tollgate::store::usage_query;
using tollgate::store::usage_record;
using tollgate::test::poll_until;
using tollgate::test::postgres_server;

namespace {

constexpr std::int64_t nov25_10h = 1795600800000;  // 2026-11-25T10:00:00Z
constexpr std::int64_t nov25 = 1795564800000;      // 2026-11-25T00:00:00Z
constexpr std::int64_t day_ms = 86'400'000;

// One server for the module (it takes about a second to start); each case makes its own
// database, so cases do not see each other's rows.
postgres_server& server() {
    static postgres_server s;
    return s;
}

std::string fresh_database() {
    static int n = 0;
    const std::string name = "case_" + std::to_string(++n);
    server().query("CREATE DATABASE " + name, "postgres");
    return name;
}

struct temp_dir {
    fs::path path;
    temp_dir() {
        std::string tmpl = (fs::temp_directory_path() / "tollgate-pg-XXXXXX").string();
        if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
        path = tmpl;
    }
    ~temp_dir() {
        std::error_code ec;
        fs::remove_all(path, ec);
    }
};

// Captures every spdlog line while alive (the ledger logs through the default logger).
struct log_capture {
    std::shared_ptr<std::ostringstream> out = std::make_shared<std::ostringstream>();
    std::shared_ptr<spdlog::logger> previous = spdlog::default_logger();
    log_capture() {
        auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(*out);
        spdlog::set_default_logger(std::make_shared<spdlog::logger>("capture", sink));
    }
    ~log_capture() { spdlog::set_default_logger(previous); }
    std::string text() {
        spdlog::default_logger()->flush();
        return out->str();
    }
};

store::usage_record make_record(std::string id, std::string key = "team-a",
                                std::string model = "m1", std::int64_t ts_ms = nov25_10h) {
    store::usage_record r;
    r.ts_ms = ts_ms;
    r.request_id = std::move(id);
    r.key_id = std::move(key);
    r.model = std::move(model);
    r.provider = "openai";
    r.upstream_model = "gpt-4o-mini-2024-07-18";
    r.status = 200;
    r.attempts = 1;
    r.prompt_tokens = 10;
    r.completion_tokens = 5;
    r.total_tokens = 15;
    r.cost_usd = 0.000005;
    r.latency_ms = 12.5;
    return r;
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
        for (int filter = 0; filter < 5; ++filter) {
            store::usage_query q;
            q.by_key = grouping & 1;
            q.by_model = grouping & 2;
            q.by_day = grouping & 4;
            q.by_hour = grouping & 8;
            if (filter == 1) q.key = "team-b";
            if (filter == 2) q.model = "Claude";
            if (filter == 3) q.since_ms = nov25, q.until_ms = nov25_10h;
            if (filter == 4) q.key = "_ops", q.since_ms = nov25_10h + 1;
            qs.push_back(q);
        }
    }
    store::usage_query nobody;
    nobody.key = "nobody";
    qs.push_back(nobody);
    return qs;
}

std::int64_t count_rows(const std::string& db, const std::string& where = "TRUE") {
    return std::stoll(server().query("SELECT count(*) FROM usage WHERE " + where, db));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

BOOST_AUTO_TEST_CASE(records_from_4_threads_land_once_each_in_batched_transactions) {
    const std::string db = fresh_database();
    ledger::options o;
    o.database = server().url(db);
    o.batch_max = 200;
    constexpr int threads = 4, per_thread = 2500, total = threads * per_thread;
    {
        ledger l(o);
        std::vector<std::thread> pushers;
        for (int t = 0; t < threads; ++t)
            pushers.emplace_back([&, t] {
                for (int i = 0; i < per_thread; ++i)
                    l.push(make_record("t" + std::to_string(t) + "-" + std::to_string(i)));
            });
        for (auto& p : pushers) p.join();
        l.flush();
        BOOST_TEST(l.pending() == 0u);
        BOOST_TEST(l.healthy());
        // Batches, not a transaction per record, and none over batch_max.
        BOOST_TEST(l.transactions() >= static_cast<std::uint64_t>(total / 200));
        BOOST_TEST(l.transactions() < static_cast<std::uint64_t>(total / 10));
        BOOST_TEST(l.aggregate({}).at(0).requests == static_cast<std::uint64_t>(total));
    }
    BOOST_TEST(count_rows(db) == total);
    BOOST_TEST(server().query("SELECT count(DISTINCT request_id) FROM usage", db) ==
               std::to_string(total));
    // Types as documented: booleans and the UTC day computed from the ms timestamp.
    BOOST_TEST(server().query("SELECT bool_and(NOT stream AND day = '2026-11-25' AND "
                              "ts_ms = 1795600800000 AND cost_usd = 0.000005) FROM usage",
                              db) == "t");
}

BOOST_AUTO_TEST_CASE(aggregate_answers_exactly_as_the_sqlite_ledger_for_the_same_records) {
    const std::string db = fresh_database();
    temp_dir dir;
    ledger::options sqlite_opts;
    sqlite_opts.database = (dir.path / "usage.db").string();
    ledger::options pg_opts;
    pg_opts.database = server().url(db);
    pg_opts.batch_max = 64;  // several transactions, several INSERT statements
    ledger lite(sqlite_opts);
    ledger pg(pg_opts);
    for (const auto& r : varied_records()) {
        lite.push(r);
        pg.push(r);
    }
    lite.flush();
    pg.flush();

    for (const store::usage_query& q : query_table()) {
        BOOST_TEST_CONTEXT("by_key " << q.by_key << " by_model " << q.by_model << " by_day "
                                     << q.by_day << " by_hour " << q.by_hour << " key "
                                     << q.key.value_or("-") << " model " << q.model.value_or("-")
                                     << " since " << q.since_ms.value_or(-1)) {
            BOOST_TEST(pg.aggregate_json(q) == lite.aggregate_json(q));
            const auto a = pg.aggregate(q), b = lite.aggregate(q);
            BOOST_TEST_REQUIRE(a.size() == b.size());
            for (std::size_t i = 0; i < a.size(); ++i)
                BOOST_TEST(a[i].cost_usd == b[i].cost_usd, boost::test_tools::tolerance(1e-12));
        }
    }
    for (const char* key : {"team-a", "team-b", "Team-C", "_ops", "nobody"})
        for (const std::int64_t since : {std::int64_t{0}, nov25, nov25_10h, nov25 + day_ms}) {
            BOOST_TEST_CONTEXT(key << " since " << since) {
                const auto p = pg.totals_since(key, since), s = lite.totals_since(key, since);
                BOOST_TEST(p.tokens == s.tokens);
                BOOST_TEST(p.usd == s.usd, boost::test_tools::tolerance(1e-12));
            }
        }
    // The record with a NUL and a stray byte was stored (as U+FFFD), not refused forever.
    BOOST_TEST(count_rows(db, "request_id LIKE 'bad%utf8'") == 1);
}

BOOST_AUTO_TEST_CASE(two_ledgers_on_one_database_read_each_others_records) {
    const std::string db = fresh_database();
    ledger::options o;
    o.database = server().url(db);
    ledger a(o);
    ledger b(o);  // schema creation is idempotent
    for (int i = 0; i < 30; ++i) a.push(make_record("a" + std::to_string(i), "team-a"));
    for (int i = 0; i < 12; ++i) b.push(make_record("b" + std::to_string(i), "team-b"));
    a.flush();
    b.flush();
    store::usage_query by_key;
    by_key.by_key = true;
    const std::string want =
        R"({"data":[{"key":"team-a","requests":30,"prompt_tokens":300,"completion_tokens":150,)"
        R"("total_tokens":450,"cost_usd":0.00015},{"key":"team-b","requests":12,)"
        R"("prompt_tokens":120,"completion_tokens":60,"total_tokens":180,"cost_usd":6e-05}]})";
    BOOST_TEST(a.aggregate_json(by_key) == want);
    BOOST_TEST(b.aggregate_json(by_key) == want);
    BOOST_TEST(b.totals_since("team-a", 0).tokens == 450u);
}

BOOST_AUTO_TEST_CASE(schema_creation_is_safe_when_instances_start_at_once) {
    const std::string db = fresh_database();
    ledger::options o;
    o.database = server().url(db);
    std::atomic<int> built{0}, failed{0};
    std::vector<std::thread> starters;
    for (int i = 0; i < 6; ++i)
        starters.emplace_back([&] {
            try {
                ledger l(o);
                key_store k(o.database);
                ++built;
            } catch (const std::exception& e) {
                ++failed;
                BOOST_TEST_MESSAGE("start failed: " << e.what());
            }
        });
    for (auto& t : starters) t.join();
    BOOST_TEST(built.load() == 6);
    BOOST_TEST(failed.load() == 0);
}

// The writer outlives the server going away: records pushed while it is down are kept,
// healthy() turns false, and after the server is back every record is in exactly once.
// Its own server: it is stopped and started.
BOOST_AUTO_TEST_CASE(writer_reconnects_after_a_server_restart_losing_and_doubling_nothing) {
    postgres_server own;
    log_capture logs;
    ledger::options o;
    o.database = own.url();
    o.batch_max = 50;
    ledger l(o);
    for (int i = 0; i < 120; ++i) l.push(make_record("before-" + std::to_string(i)));
    l.flush();
    BOOST_TEST(l.healthy());

    own.stop();
    for (int i = 0; i < 180; ++i) l.push(make_record("during-" + std::to_string(i)));
    BOOST_TEST(poll_until([&] { return !l.healthy(); }, 20s));
    BOOST_TEST(!l.flush_for(50ms));  // nothing can commit now
    BOOST_TEST(l.pending() > 0u);
    BOOST_CHECK_THROW(l.aggregate({}), std::runtime_error);

    own.start();
    BOOST_TEST(l.flush_for(60s));
    BOOST_TEST(l.healthy());
    for (int i = 0; i < 30; ++i) l.push(make_record("after-" + std::to_string(i)));
    l.flush();

    // The read connection reconnects too.
    BOOST_TEST(l.aggregate({}).at(0).requests == 330u);
    BOOST_TEST(own.query("SELECT count(*) FROM usage") == "330");
    BOOST_TEST(own.query("SELECT count(DISTINCT request_id) FROM usage") == "330");

    const std::string log = logs.text();
    BOOST_TEST(log.find("failed") != std::string::npos, log);
    BOOST_TEST(
        log.find("127.0.0.1:" + std::to_string(own.port()) + "/tollgate") != std::string::npos,
        log);
    BOOST_TEST(log.find(postgres_server::password) == std::string::npos, log);
}

// The writer's session is killed between batches (an idle connection dropped by a
// proxy, an administrator): the next batch reconnects without a failed attempt.
BOOST_AUTO_TEST_CASE(a_killed_idle_session_is_replaced_without_a_failed_write) {
    const std::string db = fresh_database();
    ledger::options o;
    o.database = server().url(db);
    ledger l(o);
    l.push(make_record("one"));
    l.flush();
    server().query(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '" + db +
            "' AND application_name = 'tollgate' AND pid <> pg_backend_pid()",
        "postgres");
    // Both sessions (writer and reader) are gone: the terminations complete asynchronously.
    BOOST_TEST(poll_until([&] {
        return server().query("SELECT count(*) FROM pg_stat_activity WHERE datname = '" + db +
                                  "' AND application_name = 'tollgate'",
                              "postgres") == "0";
    }));
    l.push(make_record("two"));
    l.flush();
    BOOST_TEST(l.healthy());
    BOOST_TEST(l.transactions() == 2u);  // no failed attempt in between
    BOOST_TEST(l.aggregate({}).at(0).requests == 2u);
}

BOOST_AUTO_TEST_CASE(keys_created_on_one_store_are_seen_by_another_after_refresh) {
    const std::string db = fresh_database();
    const std::string url = server().url(db);
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

BOOST_AUTO_TEST_CASE(key_store_refresh_recovers_after_a_server_restart) {
    postgres_server own;
    key_store a(own.url());
    key_store b(own.url());
    own.stop();
    BOOST_CHECK_THROW(b.refresh(), std::runtime_error);
    own.start();
    tollgate::config::key_config k;
    k.id = "after-restart";
    k.key_sha256 = std::string(64, 'b');
    // The first call after the restart reconnects (the refresher would have done it).
    BOOST_TEST((a.create(k, 1) == key_store::result::ok));
    BOOST_TEST(b.refresh());
    BOOST_TEST(b.current()->by_id.count("after-restart") == 1u);
}

BOOST_AUTO_TEST_SUITE_END()
