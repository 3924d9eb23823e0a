// Usage accounting, limits and budgets of the real gateway (full chain: auth, rate_limit,
// budget, router, usage) in front of the real mock upstream, with real SQLite and JSONL
// files: one correct record per request that went upstream whatever its ending, none for
// refused ones, exact admission counts under concurrent load, budgets that survive a
// restart and a SIGKILL, /admin/usage sums, and a ledger that outlives a locked database.
//
// Synchronisation: records are waited for through GET /admin/usage (it reads the ledger)
// in bounded poll loops, or the gateway is stopped with SIGTERM first (it flushes the
// ledger on exit) before the files are read.
#define BOOST_TEST_MODULE usage_integration
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <simdjson.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iterator>
#include <latch>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fixtures.hpp"
#include "tests/support/usage_records.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "adm-usage-test-token-4242424242";
constexpr const char* key_conc = "tg-test-key-conc-0123456789abcdef";
constexpr const char* key_rpm = "tg-test-key-rpm-0123456789abcdef";
constexpr const char* key_hdr = "tg-test-key-hdr-0123456789abcdef";
constexpr const char* key_budget = "tg-test-key-budget-0123456789abcdef";
constexpr const char* key_crash = "tg-test-key-crash-0123456789abcdef";
constexpr const char* key_limited = "tg-test-key-limited-0123456789abcdef";
constexpr const char* key_broke = "tg-test-key-broke-0123456789abcdef";

// gpt-4o-mini's price in standard_config.
constexpr double in_price = 0.15, out_price = 0.60;

// ---------------------------------------------------------------------------------------
// Small utilities

std::string utc_date(std::chrono::system_clock::time_point t) {
    const std::chrono::year_month_day ymd{std::chrono::floor<std::chrono::days>(t)};
    char buf[16];
    std::snprintf(buf, sizeof buf, "%04d-%02u-%02u", static_cast<int>(ymd.year()),
                  static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()));
    return buf;
}

// The mock's prompt_tokens rule: max(1, bytes of all message text / 4).
std::uint64_t mock_prompt_tokens(const std::string& content) {
    return std::max<std::size_t>(1, content.size() / 4);
}

// Content whose length is a multiple of 4, so that the gateway's estimate of the prompt
// (about 4 bytes a token, rounded up) and the mock's count (rounded down) agree.
std::string padded(const std::string& tail) {
    std::string s = tail;
    while (s.size() % 4 != 0 || s.size() < 16) s.insert(s.begin(), 'p');
    return s;
}

std::string body(const std::string& content, bool stream = false,
                 const std::string& model = "gpt-4o-mini", std::optional<int> max_tokens = {},
                 bool include_usage = false) {
    std::string b = R"({"model":")" + model + R"(","messages":[{"role":"user","content":")" +
                    content + R"("}])";
    if (stream) b += R"(,"stream":true)";
    if (include_usage) b += R"(,"stream_options":{"include_usage":true})";
    if (max_tokens) b += R"(,"max_tokens":)" + std::to_string(*max_tokens);
    return b + "}";
}

http_response chat(std::uint16_t port, const std::string& b, const std::string& key = client_key_a,
                   header_map extra = {}) {
    auto h = auth_headers(key);
    h.insert(h.end(), extra.begin(), extra.end());
    return http_request(port, "POST", "/v1/chat/completions", h, b);
}

long mock_requests(const mock_upstream& m) {
    static const std::regex re(R"re("requests":(\d+))re");
    std::smatch sm;
    const std::string s = m.stats();
    return std::regex_search(s, sm, re) ? std::stol(sm[1]) : -1;
}

bool has_error(const std::string& b, const std::string& type, const std::string& code) {
    return b.find(R"("type":")" + type + "\"") != std::string::npos &&
           b.find(R"("code":")" + code + "\"") != std::string::npos;
}

// ---------------------------------------------------------------------------------------
// /admin/usage rows

struct usage_row {
    std::vector<std::string> fields;
    std::optional<std::string> key, model, day, hour;
    std::uint64_t requests = 0, prompt_tokens = 0, completion_tokens = 0, total_tokens = 0;
    double cost_usd = -1;
};

std::optional<std::vector<usage_row>> parse_usage(const std::string& b) {
    simdjson::dom::parser parser;
    simdjson::dom::array data;
    if (parser.parse(b)["data"].get_array().get(data) != simdjson::SUCCESS) return std::nullopt;
    std::vector<usage_row> rows;
    for (auto el : data) {
        simdjson::dom::object o;
        if (el.get_object().get(o) != simdjson::SUCCESS) return std::nullopt;
        usage_row row;
        for (auto f : o) {
            const std::string k(f.key);
            row.fields.push_back(k);
            std::string_view s;
            std::uint64_t n = 0;
            double d = 0;
            if (k == "key" && f.value.get_string().get(s) == simdjson::SUCCESS)
                row.key = std::string(s);
            if (k == "model" && f.value.get_string().get(s) == simdjson::SUCCESS)
                row.model = std::string(s);
            if (k == "day" && f.value.get_string().get(s) == simdjson::SUCCESS)
                row.day = std::string(s);
            if (k == "hour" && f.value.get_string().get(s) == simdjson::SUCCESS)
                row.hour = std::string(s);
            if (k == "requests" && f.value.get_uint64().get(n) == simdjson::SUCCESS)
                row.requests = n;
            if (k == "prompt_tokens" && f.value.get_uint64().get(n) == simdjson::SUCCESS)
                row.prompt_tokens = n;
            if (k == "completion_tokens" && f.value.get_uint64().get(n) == simdjson::SUCCESS)
                row.completion_tokens = n;
            if (k == "total_tokens" && f.value.get_uint64().get(n) == simdjson::SUCCESS)
                row.total_tokens = n;
            if (k == "cost_usd" && f.value.get_double().get(d) == simdjson::SUCCESS)
                row.cost_usd = d;
        }
        rows.push_back(std::move(row));
    }
    return rows;
}

std::uint64_t sum_requests(const std::vector<usage_row>& rows) {
    std::uint64_t n = 0;
    for (const auto& r : rows) n += r.requests;
    return n;
}

// ---------------------------------------------------------------------------------------
// SQLite (read side of the test)

struct sqlite_handle {
    sqlite3* db = nullptr;
    explicit sqlite_handle(const std::string& path, int flags = SQLITE_OPEN_READONLY) {
        if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK)
            throw std::runtime_error("cannot open " + path + ": " + sqlite3_errmsg(db));
        sqlite3_busy_timeout(db, 10000);
    }
    ~sqlite_handle() { sqlite3_close_v2(db); }
    bool exec(const char* sql) {
        return sqlite3_exec(db, sql, nullptr, nullptr, nullptr) == SQLITE_OK;
    }
};

// request_id → number of rows in the ledger (its table `usage`, column `request_id`).
std::map<std::string, int> db_request_ids(const std::string& path) {
    std::map<std::string, int> out;
    sqlite_handle h(path);
    sqlite3_stmt* s = nullptr;
    if (sqlite3_prepare_v2(h.db, "SELECT request_id FROM usage", -1, &s, nullptr) != SQLITE_OK) {
        BOOST_ERROR("cannot query the ledger's usage table: " << sqlite3_errmsg(h.db));
        return out;
    }
    while (sqlite3_step(s) == SQLITE_ROW) {
        const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
        ++out[t ? t : "<null>"];
    }
    sqlite3_finalize(s);
    return out;
}

// ---------------------------------------------------------------------------------------
// The environment: a mock, and a gateway with the full chain, an admin listener and a
// ledger in a directory of the test's own (so it outlives gateway restarts).

struct usage_env {
    std::filesystem::path dir = make_temp_dir();
    mock_upstream mock;
    config_options opts;
    std::unique_ptr<gateway_process> gw;

    explicit usage_env(config_options o = {}) : opts(std::move(o)) {
        opts.policies = "[auth, rate_limit, budget, router, usage]";
        opts.top_extra += std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token +
                          "}\nusage: {database: \"" + db_path() + "\", jsonl: \"" + jsonl_path() +
                          "\"}\n";
        start();
    }
    ~usage_env() {
        gw.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    std::string db_path() const { return (dir / "usage.db").string(); }
    std::string jsonl_path() const { return (dir / "usage.jsonl").string(); }
    std::uint16_t port() const { return gw->port(); }

    void start() {
        gw = std::make_unique<gateway_process>(standard_config(mock.port(), opts));
        gw->admin_port();
    }
    // SIGTERM: the gateway flushes the ledger and must exit 0.
    void stop() {
        const int code = gw->stop(SIGTERM);
        check_clean_exit("tollgate", code, gw->process().output());
    }
    void restart() {
        stop();
        start();
    }

    http_response admin(const std::string& target,
                        std::optional<std::string> token = std::string(admin_token)) {
        header_map h;
        if (token) h.emplace_back("authorization", "Bearer " + *token);
        return http_request(gw->admin_port(), "GET", target, h);
    }
    std::vector<usage_row> usage(const std::string& query) {
        auto r = admin("/admin/usage" + (query.empty() ? "" : "?" + query));
        BOOST_TEST_REQUIRE(r.status == 200, "GET /admin/usage?" << query << ": " << r.body);
        auto rows = parse_usage(r.body);
        BOOST_TEST_REQUIRE(rows.has_value(), "not SPEC's shape: " << r.body);
        return *rows;
    }
    // Bounded wait until the ledger holds `n` records matching `query` (each iteration a
    // real GET /admin/usage). Returns what it last saw.
    std::uint64_t wait_recorded(std::uint64_t n, const std::string& query = "") {
        std::uint64_t seen = 0;
        poll_until([&] { return (seen = sum_requests(usage(query))) >= n; });
        return seen;
    }
    std::vector<record> records() const { return read_records(jsonl_path()); }
};

// One request per thread, every thread with its own connection, all started together.
struct concurrent_result {
    int status = -1;
    std::string retry_after, limit_requests, remaining_requests, body, error;
};

std::vector<concurrent_result> run_concurrently(std::uint16_t port, int n,
                                                const std::string& request_body,
                                                const std::string& key) {
    std::vector<concurrent_result> out(static_cast<std::size_t>(n));
    std::latch start(n);
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] {
            auto& res = out[static_cast<std::size_t>(i)];
            std::unique_ptr<http_connection> c;
            try {
                c = std::make_unique<http_connection>(port, 30s);
            } catch (const std::exception& e) {
                res.error = e.what();
            }
            start.arrive_and_wait();  // connected: now all at once
            if (!c) return;
            try {
                auto r =
                    c->request("POST", "/v1/chat/completions", auth_headers(key), request_body);
                res.status = r.status;
                res.retry_after = r.header("retry-after");
                res.limit_requests = r.header("x-ratelimit-limit-requests");
                res.remaining_requests = r.header("x-ratelimit-remaining-requests");
                res.body = std::move(r.body);
            } catch (const std::exception& e) {
                res.error = e.what();
            }
        });
    }
    for (auto& t : threads) t.join();
    return out;
}

std::string key_line(const std::string& id, const std::string& key, const std::string& more) {
    return "  - id: " + id + "\n    key: " + key + "\n" + more;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

// ---------------------------------------------------------------------------------------
// 1. Every ending leaves exactly one correct record

BOOST_AUTO_TEST_CASE(non_streamed_success_leaves_one_record_with_the_upstream_usage) {
    usage_env e;
    const std::string content = "how many tokens is this? #mock chunks=5";
    const long before = mock_requests(e.mock);
    auto r = chat(e.port(), body(content));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(r.body.find(R"("completion_tokens":5)") != std::string::npos);
    const std::string rid = r.header("x-request-id");
    BOOST_REQUIRE(!rid.empty());
    const long upstream_requests = mock_requests(e.mock) - before;
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 1u);
    const auto mine = with_id(all, rid);
    BOOST_REQUIRE(mine.size() == 1u);
    const auto& rec = mine[0];
    check_shape(rec);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST(str(rec.key_id) == "team-a");
        BOOST_TEST(str(rec.model) == "gpt-4o-mini");
        BOOST_TEST(str(rec.provider) == "mock");
        BOOST_TEST(str(rec.upstream_model) == "mock-gpt");
        BOOST_TEST(rec.status == 200);
        BOOST_TEST((rec.stream == false));
        BOOST_TEST(rec.attempts == upstream_requests);
        BOOST_TEST(rec.attempts == 1);
        BOOST_TEST(num(rec.prompt_tokens) ==
                   static_cast<std::int64_t>(mock_prompt_tokens(content)));
        BOOST_TEST(num(rec.completion_tokens) == 5);
        BOOST_TEST(str(rec.usage_source) == "upstream");
        BOOST_TEST(!rec.error.has_value());
        check_cost(rec, in_price, out_price);
    }
    // The database holds the same single record.
    const auto ids = db_request_ids(e.db_path());
    BOOST_TEST(ids.size() == 1u);
    BOOST_TEST(ids.count(rid) == 1u);
}

BOOST_AUTO_TEST_CASE(
    stream_without_include_usage_records_upstream_usage_and_hides_the_usage_chunk) {
    usage_env e;
    const std::string content = "stream me please #mock chunks=7";
    auto r = chat(e.port(), body(content, true));
    BOOST_TEST(r.status == 200);
    const auto events = sse_data(r.body);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    for (const auto& ev : events) {
        BOOST_TEST(ev.find(R"("choices":[])") == std::string::npos);
        BOOST_TEST(ev.find(R"("completion_tokens")") == std::string::npos);
    }
    // The gateway asked the upstream for the usage it then hid.
    BOOST_TEST(e.mock.last_request().find(R"(\"include_usage\":true)") != std::string::npos);
    const std::string rid = r.header("x-request-id");
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 1u);
    const auto mine = with_id(all, rid);
    BOOST_REQUIRE(mine.size() == 1u);
    const auto& rec = mine[0];
    check_shape(rec);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST((rec.stream == true));
        BOOST_TEST(rec.status == 200);
        BOOST_TEST(str(rec.usage_source) == "upstream");
        BOOST_TEST(num(rec.prompt_tokens) ==
                   static_cast<std::int64_t>(mock_prompt_tokens(content)));
        BOOST_TEST(num(rec.completion_tokens) == 7);
        BOOST_TEST(rec.attempts == 1);
        BOOST_TEST(!rec.error.has_value());
        BOOST_TEST(rec.ttft_ms.has_value());
        if (rec.ttft_ms && rec.latency_ms) BOOST_TEST(*rec.ttft_ms <= *rec.latency_ms);
        check_cost(rec, in_price, out_price);
    }
}

BOOST_AUTO_TEST_CASE(stream_with_include_usage_shows_the_usage_chunk_and_records_once) {
    usage_env e;
    const std::string content = "usage please #mock chunks=3";
    auto r = chat(e.port(), body(content, true, "gpt-4o-mini", {}, true));
    BOOST_TEST(r.status == 200);
    int usage_chunks = 0;
    for (const auto& ev : sse_data(r.body))
        if (ev.find(R"("choices":[])") != std::string::npos &&
            ev.find(R"("completion_tokens":3)") != std::string::npos)
            ++usage_chunks;
    BOOST_TEST(usage_chunks == 1);
    const std::string rid = r.header("x-request-id");
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 1u);
    const auto mine = with_id(all, rid);
    BOOST_REQUIRE(mine.size() == 1u);
    check_shape(mine[0]);
    BOOST_TEST_CONTEXT("record: " << mine[0].line) {
        BOOST_TEST(str(mine[0].usage_source) == "upstream");
        BOOST_TEST(num(mine[0].completion_tokens) == 3);
        BOOST_TEST(num(mine[0].prompt_tokens) ==
                   static_cast<std::int64_t>(mock_prompt_tokens(content)));
        BOOST_TEST((mine[0].stream == true));
        check_cost(mine[0], in_price, out_price);
    }
}

BOOST_AUTO_TEST_CASE(client_abort_mid_stream_leaves_one_estimated_499_record) {
    usage_env e;
    std::string rid;
    {
        http_connection c(e.port());
        c.send_request("POST", "/v1/chat/completions", auth_headers(),
                       body("abort me #mock chunks=200 delay_ms=50", true));
        auto head = c.read_head();
        BOOST_TEST(head.status == 200);
        rid = head.header("x-request-id");
        std::string got;
        while (got.find("word2") == std::string::npos) {
            const auto piece = c.read_body_some();
            BOOST_REQUIRE(!piece.empty());
            got += piece;
        }
        c.close();
    }
    BOOST_REQUIRE(!rid.empty());
    BOOST_TEST(e.mock.wait_for("streams_aborted", 1, 10000));
    BOOST_TEST(e.wait_recorded(1) == 1u);
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 1u);
    const auto mine = with_id(all, rid);
    BOOST_REQUIRE(mine.size() == 1u);
    const auto& rec = mine[0];
    check_shape(rec);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST(rec.status == 499);
        BOOST_TEST(str(rec.error) == "client_closed");
        BOOST_TEST(str(rec.usage_source) == "estimated");
        BOOST_TEST((rec.stream == true));
        BOOST_TEST(num(rec.completion_tokens) > 0);
        BOOST_TEST(num(rec.completion_tokens) < 200);
        BOOST_TEST(num(rec.prompt_tokens) > 0);
        BOOST_TEST(str(rec.provider) == "mock");
        BOOST_TEST(rec.attempts == 1);
        check_cost(rec, in_price, out_price);
    }
}

BOOST_AUTO_TEST_CASE(upstream_reset_mid_stream_leaves_one_estimated_record) {
    usage_env e;
    auto r = chat(e.port(), body("cut short #mock chunks=10 reset_after=3", true));
    BOOST_TEST(r.status == 200);  // the head went out before the reset
    const auto events = sse_data(r.body);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back().find("upstream_unavailable") != std::string::npos);
    const std::string rid = r.header("x-request-id");
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 1u);
    const auto mine = with_id(all, rid);
    BOOST_REQUIRE(mine.size() == 1u);
    const auto& rec = mine[0];
    check_shape(rec);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST(rec.status == 200);  // SPEC: the HTTP status the client got
        BOOST_TEST(str(rec.error) == "upstream_unavailable");
        BOOST_TEST(str(rec.usage_source) == "estimated");
        BOOST_TEST(num(rec.completion_tokens) > 0);
        BOOST_TEST(num(rec.completion_tokens) < 10);
        BOOST_TEST(num(rec.prompt_tokens) > 0);
        BOOST_TEST(rec.attempts == 1);
        check_cost(rec, in_price, out_price);
    }
}

BOOST_AUTO_TEST_CASE(upstream_500_leaves_one_502_record_per_request) {
    usage_env e;
    long before = mock_requests(e.mock);
    auto plain = chat(e.port(), body("fail #mock status=500"));
    const long plain_attempts = mock_requests(e.mock) - before;
    before = mock_requests(e.mock);
    auto streamed = chat(e.port(), body("fail too #mock status=500", true));
    const long stream_attempts = mock_requests(e.mock) - before;
    BOOST_TEST(plain.status == 502);
    BOOST_TEST(has_error(plain.body, "upstream_error", "upstream_unavailable"));
    BOOST_TEST(streamed.status == 502);
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 2u);
    for (const auto& [resp, stream, attempts] : {std::tuple{&plain, false, plain_attempts},
                                                 std::tuple{&streamed, true, stream_attempts}}) {
        const auto mine = with_id(all, resp->header("x-request-id"));
        BOOST_REQUIRE(mine.size() == 1u);
        const auto& rec = mine[0];
        check_shape(rec);
        BOOST_TEST_CONTEXT("record: " << rec.line) {
            BOOST_TEST(rec.status == 502);
            BOOST_TEST(str(rec.error) == "upstream_unavailable");
            BOOST_TEST((rec.stream == stream));
            BOOST_TEST(rec.attempts == attempts);
            BOOST_TEST(str(rec.provider) == "mock");
            BOOST_TEST(str(rec.upstream_model) == "mock-gpt");
            BOOST_TEST(str(rec.model) == "gpt-4o-mini");
            check_cost(rec, in_price, out_price);
        }
    }
}

BOOST_AUTO_TEST_CASE(failed_attempt_then_fallback_leaves_one_record_counting_both_attempts) {
    // A second provider with nothing listening; `fallback-model` has only that target and
    // falls back to gpt-4o-mini (same price, so the cost holds whichever model prices it).
    config_options o;
    o.provider_extra = "  dead:\n    kind: openai\n    base_url: http://127.0.0.1:" +
                       std::to_string(closed_port()) + "/v1\n";
    o.models_extra =
        "  fallback-model:\n    targets: [{provider: dead, model: dead-gpt}]\n"
        "    fallbacks: [gpt-4o-mini]\n    price: {input_per_mtok: 0.15, output_per_mtok: 0.60}\n";
    usage_env e(o);
    const std::string content = "try twice #mock chunks=6";
    const long before = mock_requests(e.mock);
    auto r = chat(e.port(), body(content, false, "fallback-model"));
    BOOST_TEST(r.status == 200);
    BOOST_TEST(mock_requests(e.mock) - before == 1);
    const std::string rid = r.header("x-request-id");
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 1u);  // one record per client request, not per attempt
    const auto mine = with_id(all, rid);
    BOOST_REQUIRE(mine.size() == 1u);
    const auto& rec = mine[0];
    check_shape(rec);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST(rec.status == 200);
        BOOST_TEST(rec.attempts == 2);
        BOOST_TEST(str(rec.model) == "fallback-model");  // the name the client asked for
        BOOST_TEST(str(rec.provider) == "mock");         // the one that served
        BOOST_TEST(str(rec.upstream_model) == "mock-gpt");
        BOOST_TEST(str(rec.usage_source) == "upstream");
        BOOST_TEST(num(rec.completion_tokens) == 6);  // counted once
        BOOST_TEST(num(rec.prompt_tokens) ==
                   static_cast<std::int64_t>(mock_prompt_tokens(content)));
        BOOST_TEST(!rec.error.has_value());
        check_cost(rec, in_price, out_price);
    }
}

BOOST_AUTO_TEST_CASE(refused_requests_leave_no_record) {
    config_options o;
    o.keys_extra = key_line("team-limited", key_limited, "    limits: {rpm: 1}\n") +
                   key_line("team-broke", key_broke, "    budget: {tokens: 1, period: day}\n");
    usage_env e(o);
    const long before = mock_requests(e.mock);
    auto id = [](const std::string& s) { return header_map{{"x-request-id", s}}; };

    auto unauth =
        http_request(e.port(), "POST", "/v1/chat/completions", id("refused-401a"), body("no key"));
    auto wrong = chat(e.port(), body("wrong key"), "tg-not-a-key-000000000000", id("refused-401b"));
    auto forbidden =
        chat(e.port(), body("hi", false, "other-model"), client_key_b, id("refused-403"));
    auto unknown =
        chat(e.port(), body("hi", false, "no-such-model"), client_key_a, id("refused-404"));
    auto first = chat(e.port(), body("admitted once"), key_limited, id("admitted-rpm"));
    auto limited = chat(e.port(), body("over rpm"), key_limited, id("refused-429-rpm"));
    // A key with nothing spent is admitted (SPEC); its first request spends the budget.
    auto broke_first = chat(e.port(), body("first on budget"), key_broke, id("admitted-budget"));
    auto broke = chat(e.port(), body("over budget"), key_broke, id("refused-429-budget"));

    BOOST_TEST(unauth.status == 401);
    BOOST_TEST(wrong.status == 401);
    BOOST_TEST(forbidden.status == 403);
    BOOST_TEST(unknown.status == 404);
    BOOST_TEST(first.status == 200);
    BOOST_TEST(limited.status == 429);
    BOOST_TEST(has_error(limited.body, "rate_limit_error", "rate_limit_exceeded"));
    BOOST_TEST(broke_first.status == 200);
    BOOST_TEST(broke.status == 429);
    BOOST_TEST(has_error(broke.body, "insufficient_quota", "budget_exceeded"));
    BOOST_TEST(mock_requests(e.mock) - before == 2);  // only the admitted ones went upstream
    e.stop();

    const auto all = e.records();
    BOOST_TEST(all.size() == 2u);
    BOOST_TEST(with_id(all, "admitted-rpm").size() == 1u);
    BOOST_TEST(with_id(all, "admitted-budget").size() == 1u);
    const auto ids = db_request_ids(e.db_path());
    BOOST_TEST(ids.size() == 2u);
    BOOST_TEST(ids.count("admitted-rpm") == 1u);
    BOOST_TEST(ids.count("admitted-budget") == 1u);
    for (const char* refused : {"refused-401a", "refused-401b", "refused-403", "refused-404",
                                "refused-429-rpm", "refused-429-budget"}) {
        BOOST_TEST(with_id(all, refused).empty(), refused);
        BOOST_TEST(ids.count(refused) == 0u, refused);
    }
}

// ---------------------------------------------------------------------------------------
// 2. JSONL shape, and no secret in any file or log

BOOST_AUTO_TEST_CASE(jsonl_lines_have_exactly_the_spec_keys_and_no_secret_is_stored_or_logged) {
    usage_env e;
    std::vector<std::string> ids;
    // Every header form of the client key, a stream, an error and an abort-free cut.
    for (const auto& [b, h] : std::vector<std::pair<std::string, header_map>>{
             {body("secret check"), {{"authorization", std::string("Bearer ") + client_key_a}}},
             {body("secret check #mock chunks=4", true), {{"x-api-key", client_key_a}}},
             {body("secret check #mock status=500"), {{"api-key", client_key_a}}},
             {body("secret check #mock chunks=6 reset_after=2", true),
              {{"x-api-key", client_key_b}}}}) {
        auto r = http_request(e.port(), "POST", "/v1/chat/completions", h, b);
        BOOST_TEST((r.status == 200 || r.status == 502));
        ids.push_back(r.header("x-request-id"));
    }
    BOOST_TEST(e.wait_recorded(4) == 4u);
    // While the gateway runs (WAL not yet checkpointed) and after it stopped.
    const std::vector<std::string> secrets = {provider_key, client_key_a, client_key_b,
                                              admin_token};
    auto check_files = [&](const char* when) {
        for (const auto& f :
             {std::string("usage.db"), std::string("usage.db-wal"), std::string("usage.jsonl")}) {
            if (!std::filesystem::exists(e.dir / f)) continue;
            const std::string bytes = read_file(e.dir / f);
            for (const auto& s : secrets)
                BOOST_TEST(bytes.find(s) == std::string::npos,
                           when << ": " << f << " holds a secret");
        }
    };
    check_files("running");
    e.stop();
    check_files("stopped");
    const std::string log = e.gw->process().output();
    for (const auto& s : secrets)
        BOOST_TEST(log.find(s) == std::string::npos, "log holds a secret");

    const auto all = e.records();
    BOOST_TEST(all.size() == 4u);
    for (const auto& rec : all) check_shape(rec);
    for (const auto& id : ids) BOOST_TEST(with_id(all, id).size() == 1u, id);
    // A raw look too: the first key, and exactly 17 top-level keys.
    for (const auto& rec : all) {
        BOOST_TEST(rec.line.rfind(R"({"ts":")", 0) == 0u);
        BOOST_TEST(rec.keys.size() == 17u);
    }
}

// ---------------------------------------------------------------------------------------
// 3. Cost arithmetic

BOOST_AUTO_TEST_CASE(cost_follows_the_model_price_per_million_tokens) {
    config_options o;
    o.models_extra =
        "  priced-model:\n    targets: [{provider: mock, model: mock-priced}]\n"
        "    price: {input_per_mtok: 1.0, output_per_mtok: 2.0, cached_input_per_mtok: 0.5}\n";
    usage_env e(o);
    const std::string c1 = "price me #mock chunks=9";
    const std::string c2 = "price me big #mock chunks=13 prompt_tokens=1000000";
    const std::string c3 = "price me streamed #mock chunks=11";
    auto r1 = chat(e.port(), body(c1, false, "priced-model"));
    auto r2 = chat(e.port(), body(c2, false, "priced-model"));
    auto r3 = chat(e.port(), body(c3, true, "priced-model"));
    BOOST_TEST(r1.status == 200);
    BOOST_TEST(r2.status == 200);
    BOOST_TEST(r3.status == 200);
    BOOST_TEST(e.wait_recorded(3) == 3u);
    // The mock reports cached_tokens 0: the plain arithmetic applies.
    const double p1 = static_cast<double>(mock_prompt_tokens(c1)),
                 p3 = static_cast<double>(mock_prompt_tokens(c3));
    const double cost1 = (p1 * 1.0 + 9 * 2.0) / 1e6;
    const double cost2 = (1000000 * 1.0 + 13 * 2.0) / 1e6;  // 1.000026
    const double cost3 = (p3 * 1.0 + 11 * 2.0) / 1e6;
    const auto rows = e.usage("model=priced-model");
    BOOST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].requests == 3u);
    BOOST_TEST(std::fabs(rows[0].cost_usd - (cost1 + cost2 + cost3)) <= 1e-9);
    e.stop();

    const auto all = e.records();
    for (const auto& [resp, expected, prompt, completion] :
         {std::tuple{&r1, cost1, p1, 9.0}, std::tuple{&r2, cost2, 1000000.0, 13.0},
          std::tuple{&r3, cost3, p3, 11.0}}) {
        const auto mine = with_id(all, resp->header("x-request-id"));
        BOOST_REQUIRE(mine.size() == 1u);
        BOOST_TEST_CONTEXT("record: " << mine[0].line) {
            BOOST_TEST(str(mine[0].model) == "priced-model");
            BOOST_TEST(str(mine[0].upstream_model) == "mock-priced");
            BOOST_TEST(static_cast<double>(mine[0].prompt_tokens.value_or(0)) == prompt);
            BOOST_TEST(static_cast<double>(mine[0].completion_tokens.value_or(0)) == completion);
            BOOST_REQUIRE(mine[0].cost_usd.has_value());
            BOOST_TEST(std::fabs(*mine[0].cost_usd - expected) <= 1e-12 * std::max(1.0, expected));
            check_cost(mine[0], 1.0, 2.0);
        }
    }
}

// ---------------------------------------------------------------------------------------
// 4. Rate limits under concurrent load

BOOST_AUTO_TEST_CASE(concurrency_limit_admits_exactly_ten_of_fifty_concurrent_streams) {
    config_options o;
    o.keys_extra = key_line("team-conc", key_conc, "    limits: {concurrency: 10}\n");
    usage_env e(o);
    const long before = mock_requests(e.mock);
    const auto results =
        run_concurrently(e.port(), 50, body("hold on #mock chunks=20 delay_ms=50", true), key_conc);
    int ok = 0, limited = 0;
    for (const auto& r : results) {
        BOOST_TEST(r.error.empty(), r.error);
        if (r.status == 200) {
            ++ok;
            const auto events = sse_data(r.body);
            BOOST_TEST((!events.empty() && events.back() == "[DONE]"));
        } else if (r.status == 429) {
            ++limited;
            BOOST_TEST(has_error(r.body, "rate_limit_error", "rate_limit_exceeded"), r.body);
            BOOST_TEST(!r.retry_after.empty());
            BOOST_TEST(r.retry_after.find_first_not_of("0123456789") == std::string::npos);
            if (!r.retry_after.empty()) BOOST_TEST(std::stoll(r.retry_after) >= 1);
        }
    }
    BOOST_TEST(ok == 10);
    BOOST_TEST(limited == 40);
    BOOST_TEST(mock_requests(e.mock) - before == 10);
    BOOST_TEST(e.wait_recorded(10, "key=team-conc") == 10u);
    // And the key works again once the streams ended (every slot was given back).
    BOOST_TEST(chat(e.port(), body("after"), key_conc).status == 200);
    e.stop();
    std::size_t records = 0;
    for (const auto& rec : e.records()) records += rec.key_id == "team-conc";
    BOOST_TEST(records == 11u);
}

BOOST_AUTO_TEST_CASE(a_request_gives_its_concurrency_slot_back_before_its_answer_is_written) {
    // A request holds its key's slot while its upstream works on it, not while a slow
    // client takes its answer: it settles before the answer's last write. So does every
    // request, which is why a client sending one request after another (to whichever
    // worker) never finds its previous one still in flight. Here the answer (~10 MB) is far
    // more than the sockets hold, so its one write stays pending until the client reads.
    config_options o;
    o.keys_extra = key_line("team-conc", key_conc, "    limits: {concurrency: 1}\n");
    usage_env e(o);
    const long before = mock_requests(e.mock);
    http_connection slow(e.port(), 60s, false, 8192);
    slow.send_request("POST", "/v1/chat/completions", auth_headers(key_conc),
                      body("big #mock chunks=900000"));
    BOOST_REQUIRE(e.mock.wait_for("requests", static_cast<int>(before) + 1));
    // The key's one slot comes back once the gateway has the whole upstream answer, while
    // the client has read none of it.
    BOOST_TEST(poll_until([&] { return chat(e.port(), body("next"), key_conc).status == 200; }, 20s,
                          20ms));
    const auto big = slow.read_response();
    BOOST_TEST(big.status == 200);
    BOOST_TEST(big.body.size() > 9'000'000u);
    BOOST_TEST(big.body.find("\"completion_tokens\":900000") != std::string::npos);
    // The cap still holds for a request in flight.
    http_connection held(e.port(), 30s);
    held.send_request("POST", "/v1/chat/completions", auth_headers(key_conc),
                      body("slow #mock head_delay_ms=2000"));
    BOOST_REQUIRE(e.mock.wait_for("requests", static_cast<int>(before) + 3));
    BOOST_TEST(chat(e.port(), body("refused"), key_conc).status == 429);
    BOOST_TEST(held.read_response().status == 200);
}

BOOST_AUTO_TEST_CASE(rpm_limit_admits_exactly_twenty_of_sixty_concurrent_requests) {
    config_options o;
    o.keys_extra = key_line("team-rpm", key_rpm, "    limits: {rpm: 20}\n");
    usage_env e(o);
    const auto results = run_concurrently(e.port(), 60, body("quick #mock chunks=1"), key_rpm);
    int ok = 0, limited = 0;
    std::multiset<long long> remaining;
    for (const auto& r : results) {
        BOOST_TEST(r.error.empty(), r.error);
        if (r.status == 200) {
            ++ok;
            BOOST_TEST(r.limit_requests == "20");
            BOOST_TEST(!r.remaining_requests.empty());
            if (!r.remaining_requests.empty()) remaining.insert(std::stoll(r.remaining_requests));
        } else if (r.status == 429) {
            ++limited;
            BOOST_TEST(has_error(r.body, "rate_limit_error", "rate_limit_exceeded"), r.body);
            BOOST_TEST(!r.retry_after.empty());
            if (!r.retry_after.empty()) {
                BOOST_TEST(std::stoll(r.retry_after) >= 1);
                BOOST_TEST(std::stoll(r.retry_after) <= 60);
            }
            BOOST_TEST(r.limit_requests == "20");
            BOOST_TEST(r.remaining_requests == "0");
        }
    }
    BOOST_TEST(ok == 20);
    BOOST_TEST(limited == 40);
    // Each admission took one slot atomically: the remaining counts are 19, 18, ..., 0.
    std::multiset<long long> expected;
    for (int i = 0; i < 20; ++i) expected.insert(i);
    BOOST_TEST((remaining == expected));
    BOOST_TEST(e.wait_recorded(20, "key=team-rpm") == 20u);
}

BOOST_AUTO_TEST_CASE(ratelimit_headers_count_down_on_admitted_answers) {
    config_options o;
    o.keys_extra = key_line("team-hdr", key_hdr, "    limits: {rpm: 3, tpm: 100000}\n");
    usage_env e(o);
    std::vector<long long> remaining;
    for (int i = 0; i < 3; ++i) {
        // One of them streamed: the headers come with the stream's head.
        auto r = chat(e.port(), body("count down #mock chunks=2", i == 1), key_hdr);
        BOOST_TEST(r.status == 200);
        BOOST_TEST(r.header("x-ratelimit-limit-requests") == "3");
        BOOST_TEST(!r.header("x-ratelimit-reset-requests").empty());
        BOOST_TEST(r.header("x-ratelimit-limit-tokens") == "100000");
        BOOST_TEST(!r.header("x-ratelimit-remaining-tokens").empty());
        const auto rem = r.header("x-ratelimit-remaining-requests");
        BOOST_TEST(!rem.empty());
        remaining.push_back(rem.empty() ? -1 : std::stoll(rem));
    }
    BOOST_TEST(remaining == (std::vector<long long>{2, 1, 0}), boost::test_tools::per_element());
    auto refused = chat(e.port(), body("one too many"), key_hdr);
    BOOST_TEST(refused.status == 429);
    BOOST_TEST(has_error(refused.body, "rate_limit_error", "rate_limit_exceeded"));
    const auto ra = refused.header("retry-after");
    BOOST_TEST(!ra.empty());
    if (!ra.empty()) {
        BOOST_TEST(std::stoll(ra) >= 1);
        BOOST_TEST(std::stoll(ra) <= 60);
    }
    BOOST_TEST(refused.header("x-ratelimit-remaining-requests") == "0");
}

// ---------------------------------------------------------------------------------------
// 5. Budgets: spent is spent, across a restart and across SIGKILL

BOOST_AUTO_TEST_CASE(token_budget_admits_until_spent_and_survives_a_restart) {
    // Each request costs exactly `per` tokens, and reserves exactly that much too
    // (prompt estimate == the mock's count, max_tokens == chunks).
    const std::string content = padded("budget me #mock chunks=4");
    const std::uint64_t per = mock_prompt_tokens(content) + 4;
    config_options o;
    o.keys_extra = key_line("team-budget", key_budget,
                            "    budget: {tokens: " + std::to_string(5 * per) + ", period: day}\n");
    usage_env e(o);
    const std::string b = body(content, false, "gpt-4o-mini", 4);
    for (int i = 0; i < 5; ++i)
        BOOST_TEST(chat(e.port(), b, key_budget).status == 200, "request " << i);
    auto spent = chat(e.port(), b, key_budget);
    BOOST_TEST(spent.status == 429);
    BOOST_TEST(has_error(spent.body, "insufficient_quota", "budget_exceeded"), spent.body);
    // Other keys are not affected.
    BOOST_TEST(chat(e.port(), b).status == 200);

    e.restart();  // SIGTERM, same database
    auto after = chat(e.port(), b, key_budget);
    BOOST_TEST(after.status == 429);
    BOOST_TEST(has_error(after.body, "insufficient_quota", "budget_exceeded"), after.body);
    const auto rows = e.usage("key=team-budget");
    BOOST_REQUIRE(rows.size() == 1u);
    BOOST_TEST(rows[0].requests == 5u);
    BOOST_TEST(rows[0].total_tokens == 5 * per);
}

BOOST_AUTO_TEST_CASE(a_reload_that_changes_a_budget_period_keeps_the_spend_in_the_ledger) {
    // SPEC "Shared spend is never lost": day → total on reload must count the spend the
    // ledger holds from before today (memory backend).
    config_options o;
    o.keys_extra = key_line("team-budget", key_budget, "    budget: {tokens: 5000, period: day}\n");
    usage_env e(o);
    BOOST_TEST(chat(e.port(), body("today"), key_budget).status == 200);
    BOOST_TEST(e.wait_recorded(1, "key=team-budget") == 1u);
    {
        // 5,000 tokens spent by the key on 2025-01-01: the record and the key's sums for
        // the day, in one transaction, as the ledger writes them.
        sqlite_handle db(e.db_path(), SQLITE_OPEN_READWRITE);
        BOOST_REQUIRE(
            db.exec("BEGIN; INSERT INTO usage (ts_ms, day, request_id, key_id, model, provider, "
                    "upstream_model, status, stream, attempts, prompt_tokens, completion_tokens, "
                    "total_tokens, cached_tokens, estimated, cost_usd, latency_ms) VALUES "
                    "(1735689600000, '2025-01-01', 'old', 'team-budget', 'gpt-4o-mini', 'mock', "
                    "'mock-gpt', 200, 0, 1, 4000, 1000, 5000, 0, 0, 0.001, 10);"
                    "INSERT INTO usage_daily VALUES ('team-budget', '2025-01-01', 'gpt-4o-mini', "
                    "1, 4000, 1000, 5000, 0.001); COMMIT"));
    }
    // The day's budget knows nothing of last year.
    BOOST_TEST(chat(e.port(), body("still today"), key_budget).status == 200);

    const auto config_path = e.gw->dir() / "tollgate.yaml";
    std::string yaml;
    {
        std::ifstream in(config_path);
        yaml.assign(std::istreambuf_iterator<char>(in), {});
    }
    const std::string day = "budget: {tokens: 5000, period: day}";
    const auto at = yaml.find(day);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    yaml.replace(at, day.size(), "budget: {tokens: 5000, period: total}");
    std::ofstream(config_path) << yaml;
    const auto reloaded = http_request(e.gw->admin_port(), "POST", "/admin/reload",
                                       {{"authorization", std::string("Bearer ") + admin_token}});
    BOOST_TEST_REQUIRE(reloaded.status == 200, reloaded.body);
    // Total: 5,000 from last year plus today's: spent.
    const auto r = chat(e.port(), body("after the reload"), key_budget);
    BOOST_TEST(r.status == 429, r.body);
    BOOST_TEST(has_error(r.body, "insufficient_quota", "budget_exceeded"), r.body);
}

BOOST_AUTO_TEST_CASE(budget_after_sigkill_counts_every_committed_record_and_leaks_no_reservation) {
    // Each quick request takes >= 10 ms upstream, so the load lasts across several
    // ledger commits.
    const std::string content = padded("crash me #mock chunks=4 head_delay_ms=10");
    const std::uint64_t per = mock_prompt_tokens(content) + 4;
    const std::uint64_t budget = 40 * per;
    config_options o;
    o.keys_extra =
        key_line("team-crash", key_crash,
                 "    budget: {tokens: " + std::to_string(budget) + ", period: total}\n");
    usage_env e(o);
    const std::string quick = body(content, false, "gpt-4o-mini", 4);
    for (int i = 0; i < 4; ++i) BOOST_TEST(chat(e.port(), quick, key_crash).status == 200);
    BOOST_TEST(e.wait_recorded(4, "key=team-crash") == 4u);

    // Load at the moment of the kill: two streams in flight (reserving budget), and a
    // client sending more quick requests.
    std::vector<std::unique_ptr<http_connection>> streams;
    for (int i = 0; i < 2; ++i) {
        auto c = std::make_unique<http_connection>(e.port(), 20s);
        c->send_request(
            "POST", "/v1/chat/completions", auth_headers(key_crash),
            body("crash stream #mock chunks=100 delay_ms=100", true, "gpt-4o-mini", 20));
        BOOST_TEST(c->read_head().status == 200);
        streams.push_back(std::move(c));
    }
    std::atomic<int> answered{0}, sent{0};
    std::atomic<bool> hammer_done{false};
    const std::uint16_t port = e.port();
    std::thread hammer([&] {
        for (int i = 0; i < 20; ++i) {
            try {
                ++sent;
                if (chat(port, quick, key_crash).status != 200) break;
                ++answered;
            } catch (const std::exception&) {
                break;
            }
        }
        hammer_done = true;
    });
    // Kill once some of the hammer's records are durable, while it still sends.
    BOOST_TEST(poll_until(
        [&] { return hammer_done.load() || sum_requests(e.usage("key=team-crash")) >= 6; }, 10s,
        1ms));
    const int code = e.gw->stop(SIGKILL);
    hammer.join();
    streams.clear();
    BOOST_TEST(code == 128 + SIGKILL);

    e.start();  // same database
    const auto rows = e.usage("key=team-crash");
    BOOST_REQUIRE(rows.size() == 1u);
    const std::uint64_t committed = rows[0].requests;
    BOOST_TEST(committed >= 6u);  // everything the ledger had reported survived
    BOOST_TEST(committed <= 4u + static_cast<std::uint64_t>(sent.load()));
    BOOST_TEST(rows[0].total_tokens == committed * per);  // the killed streams left nothing
    // The budget counts exactly the committed records: the in-flight reservations of the
    // killed process are not carried over, nothing committed is forgotten.
    const std::uint64_t expected_left = (budget - rows[0].total_tokens) / per;
    BOOST_TEST_MESSAGE("committed before the kill: "
                       << committed << " records; quick requests sent " << sent.load()
                       << ", answered " << answered.load() << "; left: " << expected_left);
    std::uint64_t admitted = 0;
    for (int i = 0; i < 50; ++i) {
        auto r = chat(e.port(), quick, key_crash);
        if (r.status != 200) {
            BOOST_TEST(r.status == 429);
            BOOST_TEST(has_error(r.body, "insufficient_quota", "budget_exceeded"), r.body);
            break;
        }
        ++admitted;
    }
    BOOST_TEST(admitted == expected_left);
}

// ---------------------------------------------------------------------------------------
// 6. GET /admin/usage

BOOST_AUTO_TEST_CASE(admin_usage_groups_and_filters_known_requests) {
    usage_env e;
    const auto day_before = utc_date(std::chrono::system_clock::now());
    struct sent {
        std::string key_id, key, model, content;
        std::uint64_t chunks;
        double in, out;
    };
    const std::vector<sent> reqs = {
        {"team-a", client_key_a, "gpt-4o-mini", "first of four #mock chunks=3", 3, in_price,
         out_price},
        {"team-a", client_key_a, "gpt-4o-mini", "second of the four #mock chunks=5", 5, in_price,
         out_price},
        {"team-a", client_key_a, "other-model", "third #mock chunks=2", 2, 0, 0},
        {"team-b", client_key_b, "gpt-4o-mini", "fourth and last one #mock chunks=4", 4, in_price,
         out_price},
    };
    for (const auto& s : reqs)
        BOOST_TEST(chat(e.port(), body(s.content, false, s.model), s.key).status == 200);
    BOOST_TEST(e.wait_recorded(4) == 4u);
    const auto day_after = utc_date(std::chrono::system_clock::now());

    struct sums {
        std::uint64_t requests = 0, prompt = 0, completion = 0;
        double cost = 0;
    };
    auto expect = [&](const std::function<bool(const sent&)>& pick) {
        sums s;
        for (const auto& r : reqs) {
            if (!pick(r)) continue;
            const auto p = mock_prompt_tokens(r.content);
            ++s.requests;
            s.prompt += p;
            s.completion += r.chunks;
            s.cost += (static_cast<double>(p) * r.in + static_cast<double>(r.chunks) * r.out) / 1e6;
        }
        return s;
    };
    auto check_row = [](const usage_row& row, const sums& s) {
        BOOST_TEST(row.requests == s.requests);
        BOOST_TEST(row.prompt_tokens == s.prompt);
        BOOST_TEST(row.completion_tokens == s.completion);
        BOOST_TEST(row.total_tokens == s.prompt + s.completion);
        BOOST_TEST(std::fabs(row.cost_usd - s.cost) <= 1e-9);
    };
    const std::vector<std::string> totals = {"requests", "prompt_tokens", "completion_tokens",
                                             "total_tokens", "cost_usd"};

    {  // by key
        const auto rows = e.usage("group_by=key");
        BOOST_REQUIRE(rows.size() == 2u);
        std::map<std::string, usage_row> by;
        for (const auto& r : rows) by[str(r.key)] = r;
        BOOST_REQUIRE(by.count("team-a") == 1u);
        BOOST_REQUIRE(by.count("team-b") == 1u);
        check_row(by["team-a"], expect([](const sent& s) { return s.key_id == "team-a"; }));
        check_row(by["team-b"], expect([](const sent& s) { return s.key_id == "team-b"; }));
        for (const auto& r : rows) {
            std::vector<std::string> want = {"key"};
            want.insert(want.end(), totals.begin(), totals.end());
            std::vector<std::string> got = r.fields;
            std::sort(want.begin(), want.end());
            std::sort(got.begin(), got.end());
            BOOST_TEST(got == want, boost::test_tools::per_element());  // model, day omitted
        }
    }
    {  // by model
        const auto rows = e.usage("group_by=model");
        BOOST_REQUIRE(rows.size() == 2u);
        std::map<std::string, usage_row> by;
        for (const auto& r : rows) by[str(r.model)] = r;
        check_row(by["gpt-4o-mini"],
                  expect([](const sent& s) { return s.model == "gpt-4o-mini"; }));
        check_row(by["other-model"],
                  expect([](const sent& s) { return s.model == "other-model"; }));
    }
    std::string today;
    {  // by day: every request today
        const auto rows = e.usage("group_by=day");
        BOOST_REQUIRE(rows.size() == 1u);
        today = str(rows[0].day);
        BOOST_TEST((today == day_before || today == day_after), today);
        check_row(rows[0], expect([](const sent&) { return true; }));
    }
    {  // by hour (the console's last-24-hours chart): hours of today, in UTC, adding up
        const auto rows = e.usage("group_by=hour");
        BOOST_REQUIRE(rows.size() >= 1u);  // two if the test ran across an hour's end
        usage_row sum;
        sum.cost_usd = 0;
        for (const auto& r : rows) {
            const std::string h = str(r.hour);
            BOOST_TEST(h.size() == 13u, h);
            BOOST_TEST(h.substr(0, 10) == today, h);
            BOOST_TEST(h[10] == 'T', h);
            BOOST_TEST(r.fields.front() == "hour");
            BOOST_TEST(!r.day.has_value());
            sum.requests += r.requests;
            sum.prompt_tokens += r.prompt_tokens;
            sum.completion_tokens += r.completion_tokens;
            sum.total_tokens += r.total_tokens;
            sum.cost_usd += r.cost_usd;
        }
        check_row(sum, expect([](const sent&) { return true; }));
    }
    {  // by key, model, day
        const auto rows = e.usage("group_by=key,model,day");
        BOOST_TEST(rows.size() == 3u);
        for (const auto& r : rows) {
            BOOST_TEST(str(r.day) == today);
            const std::string k = str(r.key), m = str(r.model);
            check_row(r, expect([&](const sent& s) { return s.key_id == k && s.model == m; }));
        }
    }
    {  // filters
        const auto b = e.usage("key=team-b");
        BOOST_REQUIRE(b.size() == 1u);
        BOOST_TEST(!b[0].key.has_value());  // not grouped on: omitted
        check_row(b[0], expect([](const sent& s) { return s.key_id == "team-b"; }));
        const auto m = e.usage("model=other-model&group_by=key");
        BOOST_REQUIRE(m.size() == 1u);
        BOOST_TEST(str(m[0].key) == "team-a");
        check_row(m[0], expect([](const sent& s) { return s.model == "other-model"; }));
        const auto km = e.usage("key=team-a&model=gpt-4o-mini");
        BOOST_REQUIRE(km.size() == 1u);
        check_row(km[0], expect([](const sent& s) {
                      return s.key_id == "team-a" && s.model == "gpt-4o-mini";
                  }));
    }
    {  // since / until
        const std::chrono::year_month_day ymd{[&] {
            int y = 0;
            unsigned mo = 0, d = 0;
            std::sscanf(today.c_str(), "%d-%u-%u", &y, &mo, &d);
            return std::chrono::year{y} / std::chrono::month{mo} / std::chrono::day{d};
        }()};
        const auto sd = std::chrono::sys_days{ymd};
        const std::string yesterday = utc_date(sd - std::chrono::days{1});
        const std::string tomorrow = utc_date(sd + std::chrono::days{1});
        BOOST_TEST(sum_requests(e.usage("since=" + today)) == 4u);
        BOOST_TEST(sum_requests(e.usage("since=" + today + "&until=" + tomorrow)) == 4u);
        BOOST_TEST(sum_requests(
                       e.usage("since=" + yesterday + "&until=" + tomorrow + "&key=team-a")) == 3u);
        BOOST_TEST(sum_requests(e.usage("since=" + tomorrow)) == 0u);
        BOOST_TEST(sum_requests(e.usage("until=" + yesterday)) == 0u);
        BOOST_TEST(sum_requests(e.usage("since=" + today + "T00:00:00Z&group_by=key")) == 4u);
        BOOST_TEST(sum_requests(e.usage("until=" + tomorrow + "T00:00:00Z&group_by=model")) == 4u);
    }
    {  // the admin token, and bad parameters
        auto none = e.admin("/admin/usage", std::nullopt);
        BOOST_TEST(none.status == 401);
        BOOST_TEST(none.body.find("4242") == std::string::npos);
        auto wrong = e.admin("/admin/usage", std::string("not-the-admin-token"));
        BOOST_TEST((wrong.status == 401 || wrong.status == 403), wrong.status);
        auto client =
            e.admin("/admin/usage", std::string(client_key_a));  // a client key is no admin token
        BOOST_TEST((client.status == 401 || client.status == 403), client.status);
        auto bad_group = e.admin("/admin/usage?group_by=provider");
        BOOST_TEST(bad_group.status == 400);
        BOOST_TEST(bad_group.body.find(R"("error")") != std::string::npos);
        auto bad_since = e.admin("/admin/usage?since=yesterday");
        BOOST_TEST(bad_since.status == 400);
        // The admin API is not on the main listener.
        auto main_listener =
            http_request(e.port(), "GET", "/admin/usage",
                         {{"authorization", std::string("Bearer ") + admin_token}});
        BOOST_TEST(main_listener.status != 200);
        BOOST_TEST(main_listener.body.find(R"("data")") == std::string::npos);
    }
}

// ---------------------------------------------------------------------------------------
// 7. The ledger survives a write failure

BOOST_AUTO_TEST_CASE(ledger_survives_a_locked_database_and_readyz_reports_it) {
    usage_env e;
    auto warm = chat(e.port(), body("warm up"));
    BOOST_TEST(warm.status == 200);
    BOOST_TEST(e.wait_recorded(1) == 1u);
    BOOST_TEST(http_request(e.port(), "GET", "/readyz").status == 200);

    std::vector<std::string> ids{warm.header("x-request-id")};
    bool saw_503 = false;
    {
        sqlite_handle lock(e.db_path(), SQLITE_OPEN_READWRITE);
        BOOST_REQUIRE(lock.exec("BEGIN EXCLUSIVE"));
        // Requests are answered while the ledger cannot write: no disk I/O on the
        // request path.
        for (int i = 0; i < 5; ++i) {
            const auto t0 = std::chrono::steady_clock::now();
            auto r = chat(e.port(), body("while locked #mock chunks=3", i % 2 == 1));
            BOOST_TEST(r.status == 200);
            BOOST_TEST((std::chrono::steady_clock::now() - t0 < 2s));
            ids.push_back(r.header("x-request-id"));
        }
        saw_503 = poll_until([&] { return http_request(e.port(), "GET", "/readyz").status == 503; },
                             15s, 50ms);
        BOOST_TEST(saw_503);
        // Nothing is reported before it is durable.
        BOOST_TEST(sum_requests(e.usage("")) == 1u);
        BOOST_REQUIRE(lock.exec("ROLLBACK"));
    }
    BOOST_TEST(poll_until([&] { return http_request(e.port(), "GET", "/readyz").status == 200; },
                          10s, 20ms));
    BOOST_TEST(e.wait_recorded(6) == 6u);
    e.stop();

    const auto in_db = db_request_ids(e.db_path());
    BOOST_TEST(in_db.size() == 6u);
    for (const auto& id : ids) {
        const auto it = in_db.find(id);
        BOOST_TEST((it != in_db.end() && it->second == 1), "request " << id << " in the db once");
    }
    const auto all = e.records();
    BOOST_TEST(all.size() == 6u);
    for (const auto& id : ids)
        BOOST_TEST(with_id(all, id).size() == 1u, "request " << id << " in the JSONL once");
}

BOOST_AUTO_TEST_CASE(sigterm_with_the_database_locked_spills_and_the_next_start_applies_it_once) {
    // SPEC "Shutdown with the ledger unreachable": exit within drain_timeout + 10 s, the
    // records not durable go to a spill file beside the ledger, applied exactly once at the
    // next start before it serves.
    config_options o;
    o.server_extra = "  drain_timeout: 2s\n";
    usage_env e(o);
    const std::string spill = e.db_path() + ".spill";
    auto warm = chat(e.port(), body("warm up"));
    BOOST_TEST(warm.status == 200);
    BOOST_TEST(e.wait_recorded(1) == 1u);
    std::vector<std::string> ids{warm.header("x-request-id")};

    sqlite_handle lock(e.db_path(), SQLITE_OPEN_READWRITE);
    BOOST_REQUIRE(lock.exec("BEGIN EXCLUSIVE"));
    for (int i = 0; i < 5; ++i) {
        auto r = chat(e.port(), body("while locked #mock chunks=3", i % 2 == 1));
        BOOST_TEST(r.status == 200);
        ids.push_back(r.header("x-request-id"));
    }
    // Exits by itself within drain_timeout (2 s) + 10 s; stop() kills it (and reports
    // 128 + 9) if it has not exited 5 s after that.
    const int code = e.gw->stop(SIGTERM, 17s);
    BOOST_TEST(code == 0, "exit code " << code << "\n" << e.gw->process().output());
    BOOST_TEST(e.gw->process().output().find("spill file") != std::string::npos);
    BOOST_REQUIRE(std::filesystem::exists(spill));
    std::size_t spilled = 0;
    {
        std::ifstream in(spill);
        std::string line;
        while (std::getline(in, line))
            if (line.find("\"request_id\"") != std::string::npos) ++spilled;
    }
    BOOST_TEST(spilled == 5u);
    BOOST_REQUIRE(lock.exec("ROLLBACK"));
    BOOST_TEST(db_request_ids(e.db_path()).size() == 1u);  // nothing else reached the db
    // A copy, to play "the process died after storing the spill but before removing it".
    const std::string copy = spill + ".copy";
    std::filesystem::copy_file(spill, copy);

    // Applied before the gateway serves: the first answer of /admin/usage has them all.
    e.start();
    BOOST_TEST(!std::filesystem::exists(spill));
    BOOST_TEST(sum_requests(e.usage("")) == 6u);
    e.stop();
    // The same spill once more: every batch id is already in the ledger, nothing is added.
    std::filesystem::rename(copy, spill);
    e.start();
    BOOST_TEST(!std::filesystem::exists(spill));
    BOOST_TEST(sum_requests(e.usage("")) == 6u);
    e.stop();

    const auto in_db = db_request_ids(e.db_path());
    BOOST_TEST(in_db.size() == 6u);
    for (const auto& id : ids) {
        const auto it = in_db.find(id);
        BOOST_TEST((it != in_db.end() && it->second == 1), "request " << id << " in the db once");
    }
    const auto all = e.records();
    BOOST_TEST(all.size() == 6u);
    for (const auto& id : ids)
        BOOST_TEST(with_id(all, id).size() == 1u, "request " << id << " in the JSONL once");
}

BOOST_AUTO_TEST_SUITE_END()
