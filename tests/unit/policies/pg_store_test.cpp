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
#include "tests/support/sample_record.hpp"

namespace fs = std::filesystem;
namespace store = tollgate::store;
using namespace std::chrono_literals;
using tollgate::policies::key_store;
using tollgate::policies::ledger;
using tollgate::store::usage_query;
using tollgate::store::usage_record;
using tollgate::test::poll_until;
using tollgate::test::postgres_server;

using tollgate::test::day_ms;
using tollgate::test::make_record;
using tollgate::test::nov25;
using tollgate::test::nov25_10h;

namespace {

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

std::int64_t count_rows(const std::string& db, const std::string& where = "TRUE") {
    return std::stoll(server().query("SELECT count(*) FROM usage WHERE " + where, db));
}

}  // namespace

BOOST_AUTO_TEST_SUITE(unit)

// What only PostgreSQL shows (the shared cases run on both backends: store/backends_test):
// the documented column types, the UTC day computed from the ms timestamp, and a record
// with a NUL and a stray byte stored (as U+FFFD) rather than refused forever.
BOOST_AUTO_TEST_CASE(postgres_columns_have_their_documented_types) {
    const std::string db = fresh_database();
    ledger::options o;
    o.database = server().url(db);
    {
        ledger l(o);
        l.push(make_record("plain"));
        l.push(make_record(std::string("bad\xff\0utf8", 9)));
        l.flush();
    }
    BOOST_TEST(server().query("SELECT bool_and(NOT stream AND day = '2026-11-25' AND "
                              "ts_ms = 1795600800000 AND cost_usd = 0.000005) FROM usage",
                              db) == "t");
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
