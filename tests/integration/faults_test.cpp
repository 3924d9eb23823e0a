// Faults: the real gateway (full chain: auth, rate_limit, budget, router, usage; a SQLite
// ledger and a JSONL log; an admin listener for /metrics) against a real mock upstream that
// misbehaves on purpose (bench/mock_upstream's fault directives), and against hostile clients
// on raw sockets.
//
// For every upstream fault the test checks what the client gets (SPEC "Errors": 502
// upstream_unavailable / 504 upstream_timeout in the OpenAI shape before any byte of an
// answer; after a streamed 200 head, one final `data: {"error":...}` event and the end of the
// stream), the usage record written for it, that the upstream pool returns to its baseline
// (no active connection, and every connection the pool counts is one the mock still has open:
// nothing leaked, nothing half-dead kept), and that the gateway still serves right after.
//
// Synchronisation: bounded poll loops on real state (the JSONL file, /metrics, the mock's
// /mock/wait and /mock/stats); no sleep stands in for an event, and nothing asserts timing.
// The gateway runs one worker, so that one upstream pool serves every request of a test and a
// follow-up request meets whatever connection the fault left behind.
#define BOOST_TEST_MODULE faults_integration
#include <boost/test/unit_test.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fixtures.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "adm-faults-test-token-7373737373737373";

// ---------------------------------------------------------------------------------------
// Small utilities

std::string expected_content(int chunks) {
    std::string s;
    for (int i = 0; i < chunks; ++i) s += "word" + std::to_string(i) + " ";
    return s;
}

// Concatenates delta.content of each chunk (the mock's content has no escapes).
std::string reassemble(const std::vector<std::string>& events) {
    std::string out;
    for (const auto& e : events) {
        const std::string key = R"("delta":{"content":")";
        auto p = e.find(key);
        if (p == std::string::npos) continue;
        p += key.size();
        out += e.substr(p, e.find('"', p) - p);
    }
    return out;
}

// A chat body; `content` may carry #mock directives.
std::string body(const std::string& content, bool stream = false, bool include_usage = false) {
    std::string b =
        R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":")" + content + R"("}])";
    if (stream) b += R"(,"stream":true)";
    if (include_usage) b += R"(,"stream_options":{"include_usage":true})";
    return b + "}";
}

// The mock's prompt_tokens rule: max(1, bytes of all message text / 4).
std::uint64_t mock_prompt_tokens(const std::string& content) {
    return std::max<std::size_t>(1, content.size() / 4);
}

// SPEC's error shape, non-streamed.
bool openai_error(const http_response& r, const std::string& type, const std::string& code) {
    return r.header("content-type") == "application/json" &&
           r.body.find(R"({"error":{"message":")") == 0 &&
           r.body.find(R"("type":")" + type + "\"") != std::string::npos &&
           r.body.find(R"("code":")" + code + "\"") != std::string::npos &&
           r.body.find(R"("param":null)") != std::string::npos;
}

bool is_error_event(const std::string& data) {
    return data.rfind(R"({"error":)", 0) == 0;
}

std::size_t error_events(const std::vector<std::string>& events) {
    return static_cast<std::size_t>(std::count_if(events.begin(), events.end(), is_error_event));
}

// After a 200 head: the stream's last data event is SPEC's error event with `code`, and it
// is the only error event.
void check_stream_error(const http_response& r, const std::string& code) {
    BOOST_TEST_CONTEXT("stream body:\n" << r.body) {
        BOOST_TEST(r.status == 200);
        const auto events = sse_data(r.body);
        BOOST_TEST_REQUIRE(!events.empty());
        BOOST_TEST(is_error_event(events.back()));
        BOOST_TEST(events.back().find(R"("type":"upstream_error")") != std::string::npos);
        BOOST_TEST(events.back().find(R"("code":")" + code + "\"") != std::string::npos);
        BOOST_TEST(error_events(events) == 1u);
        BOOST_TEST(r.body.find("[DONE]") == std::string::npos);
        BOOST_TEST(r.body.find(provider_key) == std::string::npos);
    }
}

// Every `name{labels} value` sample whose labels include all of `want`, summed; nullopt if
// there is none.
std::optional<double> metric(const std::string& text, const std::string& name,
                             const std::vector<std::pair<std::string, std::string>>& want) {
    std::optional<double> sum;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        if (line.empty() || line[0] == '#') continue;
        if (line.compare(0, name.size(), name) != 0) continue;
        std::string labels;
        std::size_t after = name.size();
        if (after < line.size() && line[after] == '{') {
            const auto close = line.find('}', after);
            if (close == std::string::npos) continue;
            labels = "," + line.substr(after + 1, close - after - 1) + ",";
            after = close + 1;
        }
        if (after >= line.size() || line[after] != ' ') continue;
        bool match = true;
        for (const auto& [k, v] : want)
            if (labels.find("," + k + "=\"" + v + "\",") == std::string::npos) match = false;
        if (!match) continue;
        sum = sum.value_or(0) + std::stod(line.substr(line.rfind(' ') + 1));
    }
    return sum;
}

// ---------------------------------------------------------------------------------------
// JSONL usage records

struct record {
    std::string line;
    std::string request_id, key_id, provider, usage_source;
    std::optional<std::string> error;
    std::int64_t status = -1, attempts = -1;
    std::optional<bool> stream;
    std::optional<std::uint64_t> prompt_tokens, completion_tokens;
};

std::string str(const std::optional<std::string>& v) {
    return v ? *v : "<null>";
}

std::optional<record> parse_record(const std::string& line) {
    simdjson::dom::parser parser;
    simdjson::dom::object o;
    if (parser.parse(line).get_object().get(o) != simdjson::SUCCESS) return std::nullopt;
    record r;
    r.line = line;
    std::string_view s;
    std::int64_t i = 0;
    std::uint64_t u = 0;
    bool b = false;
    if (o["request_id"].get_string().get(s) == simdjson::SUCCESS) r.request_id = s;
    if (o["key_id"].get_string().get(s) == simdjson::SUCCESS) r.key_id = s;
    if (o["provider"].get_string().get(s) == simdjson::SUCCESS) r.provider = s;
    if (o["usage_source"].get_string().get(s) == simdjson::SUCCESS) r.usage_source = s;
    if (o["error"].get_string().get(s) == simdjson::SUCCESS) r.error = std::string(s);
    if (o["status"].get_int64().get(i) == simdjson::SUCCESS) r.status = i;
    if (o["attempts"].get_int64().get(i) == simdjson::SUCCESS) r.attempts = i;
    if (o["stream"].get_bool().get(b) == simdjson::SUCCESS) r.stream = b;
    if (o["prompt_tokens"].get_uint64().get(u) == simdjson::SUCCESS) r.prompt_tokens = u;
    if (o["completion_tokens"].get_uint64().get(u) == simdjson::SUCCESS) r.completion_tokens = u;
    return r;
}

// ---------------------------------------------------------------------------------------
// A raw TCP client for hostile behaviour the HTTP client does not do: byte-at-a-time heads,
// half-closes, never reading. Never raises SIGPIPE.

class raw_client {
  public:
    // rcvbuf > 0: a small receive buffer (set before connect, so the window stays small).
    explicit raw_client(std::uint16_t port, int rcvbuf = 0) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0) throw std::runtime_error("socket() failed");
        if (rcvbuf > 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_port = htons(port);
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
            throw std::runtime_error("connect() failed");
    }
    ~raw_client() { ::close(fd_); }
    raw_client(const raw_client&) = delete;
    raw_client& operator=(const raw_client&) = delete;

    // False once the peer is gone (EPIPE, ECONNRESET).
    bool send_all(std::string_view bytes) {
        while (!bytes.empty()) {
            const auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                return false;
            }
            bytes.remove_prefix(static_cast<std::size_t>(n));
        }
        return true;
    }
    void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

    enum class got { data, closed, nothing };
    // Waits up to `timeout` for bytes (appended to `into`) or the end of the connection.
    got read_some(std::string& into, std::chrono::milliseconds timeout) {
        pollfd p{fd_, POLLIN, 0};
        const int r = ::poll(&p, 1, static_cast<int>(timeout.count()));
        if (r == 0) return got::nothing;
        char buf[16384];
        const auto n = ::recv(fd_, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            into.append(buf, static_cast<std::size_t>(n));
            return got::data;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return got::nothing;
        return got::closed;  // EOF or reset
    }
    // Reads until the peer closes, at most `bound`; true if it closed.
    bool read_until_closed(std::string& into, std::chrono::milliseconds bound) {
        const auto deadline = std::chrono::steady_clock::now() + bound;
        while (std::chrono::steady_clock::now() < deadline)
            if (read_some(into, 100ms) == got::closed) return true;
        return false;
    }

  private:
    int fd_ = -1;
};

// ---------------------------------------------------------------------------------------
// The environment

std::string next_id(const std::string& what) {
    static std::atomic<int> n{0};
    return "faults-" + what + "-" + std::to_string(++n);
}

struct faults_env {
    std::filesystem::path dir = make_temp_dir();
    mock_upstream mock;
    std::uint16_t dead_port = closed_port();  // provider `dead`: nothing listens there
    std::unique_ptr<gateway_process> gw;

    explicit faults_env(config_options o = {}) {
        o.policies = "[auth, rate_limit, budget, router, usage]";
        o.top_extra += std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token +
                       "}\nusage: {database: \"" + (dir / "usage.db").string() + "\", jsonl: \"" +
                       jsonl_path().string() + "\"}\n";
        o.models_extra += "  dead-model:\n    targets: [{provider: dead, model: nothing}]\n";
        std::string y = standard_config(mock.port(), o);
        // One worker, hence one pool per provider (see the file comment).
        const std::string two = "  threads: 2\n";
        const auto t = y.find(two);
        BOOST_TEST_REQUIRE(t != std::string::npos);
        y.replace(t, two.size(), "  threads: 1\n");
        const std::string anchor = "providers:\n";
        const auto p = y.find(anchor);
        BOOST_TEST_REQUIRE(p != std::string::npos);
        y.insert(p + anchor.size(), "  dead:\n    kind: openai\n    base_url: http://127.0.0.1:" +
                                        std::to_string(dead_port) + "/v1\n");
        gw = std::make_unique<gateway_process>(y);
        gw->admin_port();
    }
    ~faults_env() {
        gw.reset();  // SIGTERM; its exit is checked
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    std::filesystem::path jsonl_path() const { return dir / "usage.jsonl"; }
    std::uint16_t port() const { return gw->port(); }

    http_response chat(const std::string& id, const std::string& b) {
        auto h = auth_headers();
        h.emplace_back("x-request-id", id);
        return http_request(port(), "POST", "/v1/chat/completions", h, b);
    }

    std::string metrics() {
        auto r = http_request(gw->admin_port(), "GET", "/metrics");
        BOOST_TEST_REQUIRE(r.status == 200, "GET /metrics: " << r.status);
        return r.body;
    }
    double failures(const std::string& provider, const std::string& reason = {}) {
        std::vector<std::pair<std::string, std::string>> want{{"provider", provider}};
        if (!reason.empty()) want.emplace_back("reason", reason);
        return metric(metrics(), "tollgate_upstream_failures_total", want).value_or(0);
    }
    double requests_with_status(int status) {
        return metric(metrics(), "tollgate_requests_total", {{"status", std::to_string(status)}})
            .value_or(0);
    }
    // A request is counted just after its last byte went out, so a test that read the
    // answer may look a moment early: wait (bounded) for `read` to reach `want`, then
    // return what it reads (the test compares it with `want`).
    double settled(const std::function<double()>& read, double want) {
        double v = read();
        for (int i = 0; i < 500 && v < want; ++i) {
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            v = read();
        }
        return v;
    }

    // The record of request `id`, waited for in the JSONL log (bounded); exactly one.
    record record_of(const std::string& id) {
        std::vector<record> found;
        poll_until([&] {
            found.clear();
            std::istringstream in(read_file(jsonl_path()));
            for (std::string line; std::getline(in, line);)
                if (auto r = parse_record(line); r && r->request_id == id) found.push_back(*r);
            return !found.empty();
        });
        BOOST_TEST_REQUIRE(found.size() == 1u, "usage records for " << id << ": " << found.size());
        return found.front();
    }
    bool has_record(const std::string& id) {
        std::istringstream in(read_file(jsonl_path()));
        for (std::string line; std::getline(in, line);)
            if (auto r = parse_record(line); r && r->request_id == id) return true;
        return false;
    }

    // The pool is back to its baseline: no active connection, and the pool's open
    // connections (active + idle) are exactly the ones the mock still holds open (minus the
    // connection asking /mock/stats). Bounded poll, then asserted.
    void expect_pool_baseline() {
        double active = -1, idle = -1;
        long mock_open = -1;
        poll_until(
            [&] {
                const auto text = metrics();
                // No sample yet: no pool has opened a connection to the mock.
                active = metric(text, "tollgate_upstream_connections",
                                {{"provider", "mock"}, {"state", "active"}})
                             .value_or(0);
                idle = metric(text, "tollgate_upstream_connections",
                              {{"provider", "mock"}, {"state", "idle"}})
                           .value_or(0);
                mock_open = mock.counter("connections_open") - 1;
                return active == 0 && active + idle == static_cast<double>(mock_open);
            },
            10s, 20ms);
        BOOST_TEST(active == 0, "active upstream connections: " << active);
        BOOST_TEST(active + idle == static_cast<double>(mock_open),
                   "the pool counts " << active + idle << " connections, the mock has " << mock_open
                                      << " open");
    }

    // A normal request, plain and streamed, right after a fault: both succeed and are
    // recorded with the upstream's usage. (Their records are written after those of every
    // earlier request, so a record still missing then is missing for good.)
    void expect_serving() {
        const std::string content = "after the fault #mock chunks=3";
        const auto id = next_id("after");
        auto r = chat(id, body(content));
        BOOST_TEST(r.status == 200, "follow-up request: " << r.status << " " << r.body);
        BOOST_TEST(r.body.find(expected_content(3)) != std::string::npos);
        auto s = chat(id + "-s", body(content, true));
        BOOST_TEST(s.status == 200, "follow-up stream: " << s.status << " " << s.body);
        const auto events = sse_data(s.body);
        BOOST_TEST(reassemble(events) == expected_content(3));
        BOOST_TEST(error_events(events) == 0u);
        BOOST_TEST((!events.empty() && events.back() == "[DONE]"));
        for (const auto& [rid, status] :
             {std::pair{id, r.status}, std::pair{id + "-s", s.status}}) {
            const auto rec = record_of(rid);
            if (status != 200) continue;  // already failed above; spare the details
            BOOST_TEST_CONTEXT("record: " << rec.line) {
                BOOST_TEST(rec.status == 200);
                BOOST_TEST(!rec.error.has_value());
                BOOST_TEST(rec.usage_source == "upstream");
                BOOST_TEST(rec.completion_tokens.value_or(0) == 3u);
                BOOST_TEST(rec.prompt_tokens.value_or(0) == mock_prompt_tokens(content));
            }
        }
    }
};

// What every fault ends with.
void expect_recovered(faults_env& e) {
    e.expect_pool_baseline();
    e.expect_serving();
    e.expect_pool_baseline();
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

// ---------------------------------------------------------------------------------------
// Upstream faults before any byte of an answer

BOOST_AUTO_TEST_CASE(connection_refused_is_502_and_leaves_no_record) {
    faults_env e;
    const auto id = next_id("refused");
    auto r = e.chat(id, R"({"model":"dead-model","messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST(r.status == 502);
    BOOST_TEST(openai_error(r, "upstream_error", "upstream_unavailable"), r.body);
    BOOST_TEST(r.header("x-request-id") == id);
    BOOST_TEST(r.body.find(provider_key) == std::string::npos);
    // Streamed: no head was sent yet, so the same JSON error.
    const auto sid = next_id("refused-s");
    auto s = e.chat(
        sid, R"({"model":"dead-model","stream":true,"messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST(s.status == 502);
    BOOST_TEST(openai_error(s, "upstream_error", "upstream_unavailable"), s.body);
    BOOST_TEST(e.settled([&] { return e.failures("dead", "connect_error"); }, 2) == 2);
    BOOST_TEST(e.settled([&] { return e.requests_with_status(502); }, 2) == 2);

    expect_recovered(e);
    // SPEC: a record for each request that "was sent upstream"; these never were (the
    // follow-ups' records, written after theirs would have been, are there).
    BOOST_TEST(!e.has_record(id));
    BOOST_TEST(!e.has_record(sid));
}

BOOST_AUTO_TEST_CASE(reset_before_the_head_is_502_and_recorded) {
    faults_env e;
    for (bool stream : {false, true}) {
        BOOST_TEST_CONTEXT("stream: " << stream) {
            const auto id = next_id("rst-head");
            auto r = e.chat(id, body("x #mock reset_before_head=1", stream));
            BOOST_TEST(r.status == 502);
            BOOST_TEST(openai_error(r, "upstream_error", "upstream_unavailable"), r.body);
            const auto rec = e.record_of(id);
            BOOST_TEST_CONTEXT("record: " << rec.line) {
                BOOST_TEST(rec.status == 502);
                BOOST_TEST(str(rec.error) == "upstream_unavailable");
                BOOST_TEST(rec.stream.value_or(!stream) == stream);
                BOOST_TEST(rec.attempts == 1);
                BOOST_TEST(rec.provider == "mock");
                BOOST_TEST(rec.key_id == "team-a");
            }
        }
    }
    BOOST_TEST(e.settled([&] { return e.failures("mock"); }, 2) == 2);
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(stalled_head_is_504_upstream_timeout_and_recorded) {
    faults_env e({.provider_extra = "    first_byte_timeout: 1s\n"});
    for (bool stream : {false, true}) {
        BOOST_TEST_CONTEXT("stream: " << stream) {
            const auto id = next_id("stall-head");
            auto r = e.chat(id, body("x #mock head_delay_ms=5000", stream));
            BOOST_TEST(r.status == 504);
            BOOST_TEST(openai_error(r, "upstream_error", "upstream_timeout"), r.body);
            const auto rec = e.record_of(id);
            BOOST_TEST_CONTEXT("record: " << rec.line) {
                BOOST_TEST(rec.status == 504);
                BOOST_TEST(str(rec.error) == "upstream_timeout");
            }
        }
    }
    BOOST_TEST(e.settled([&] { return e.failures("mock", "timeout"); }, 2) == 2);
    // The streamed one: the gateway closed the connection, the mock saw the stream go.
    BOOST_TEST(e.mock.wait_for("streams_aborted", 1));
    expect_recovered(e);
}

// ---------------------------------------------------------------------------------------
// Upstream faults in the middle of an answer

BOOST_AUTO_TEST_CASE(reset_mid_stream_ends_with_one_error_event_and_an_estimated_record) {
    faults_env e;
    const auto id = next_id("rst-mid");
    auto r = e.chat(id, body("cut #mock chunks=10 reset_after=3", true));
    check_stream_error(r, "upstream_unavailable");
    BOOST_TEST(reassemble(sse_data(r.body)) == expected_content(3));
    const auto rec = e.record_of(id);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST(rec.status == 200);  // what the client got
        BOOST_TEST(str(rec.error) == "upstream_unavailable");
        BOOST_TEST(rec.stream.value_or(false));
        // No usage from the upstream: what was seen, estimated.
        BOOST_TEST(rec.usage_source == "estimated");
        BOOST_TEST(rec.completion_tokens.value_or(0) > 0u);
        BOOST_TEST(rec.prompt_tokens.value_or(0) > 0u);
    }
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(truncated_chunked_encoding_is_502_or_ends_the_stream_with_an_error_event) {
    faults_env e;
    // Non-streamed: the one chunk promises 64 bytes more than arrive, then FIN.
    const auto id = next_id("trunc");
    auto r = e.chat(id, body("x #mock chunks=3 chunk_truncate=1"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(openai_error(r, "upstream_error", "upstream_unavailable"), r.body);
    auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 502, rec.line);
    BOOST_TEST(str(rec.error) == "upstream_unavailable", rec.line);

    // Streamed: after 3 content chunks a chunk promising a whole event carries half of it.
    const auto sid = next_id("trunc-s");
    auto s = e.chat(sid, body("x #mock chunks=10 chunk_truncate=3", true));
    check_stream_error(s, "upstream_unavailable");
    // The half event is not relayed.
    BOOST_TEST(reassemble(sse_data(s.body)) == expected_content(3));
    BOOST_TEST(s.body.find("truncated") == std::string::npos);
    rec = e.record_of(sid);
    BOOST_TEST(rec.status == 200, rec.line);
    BOOST_TEST(str(rec.error) == "upstream_unavailable", rec.line);

    // The half event and the FIN often reach the gateway as one readiness event, after
    // reads that told the event loop the socket was drained: the FIN must still be seen
    // (not waited on until idle_timeout, which would end the stream as upstream_timeout).
    for (int i = 0; i < 20; ++i) {
        const auto lid = next_id("trunc-loop");
        auto ls = e.chat(lid, body("x #mock chunks=30 chunk_truncate=25", true));
        check_stream_error(ls, "upstream_unavailable");
        BOOST_TEST(reassemble(sse_data(ls.body)) == expected_content(25));
    }
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(content_length_longer_than_the_body_is_502) {
    faults_env e;
    const auto id = next_id("cl-long");
    auto r = e.chat(id, body("x #mock chunks=3 cl_long=50"));
    BOOST_TEST(r.status == 502);
    BOOST_TEST(openai_error(r, "upstream_error", "upstream_unavailable"), r.body);
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 502, rec.line);
    BOOST_TEST(str(rec.error) == "upstream_unavailable", rec.line);
    expect_recovered(e);
}

// The gateway cannot know the declared length is a lie: it relays exactly the declared bytes
// (or refuses the answer as 502); either way the record says what the client got.
BOOST_AUTO_TEST_CASE(content_length_shorter_than_the_body_relays_only_the_declared_bytes) {
    faults_env e;
    const auto id = next_id("cl-short");
    auto r = e.chat(id, body("x #mock chunks=3 cl_short=10"));
    BOOST_TEST_CONTEXT("answer: " << r.status << " " << r.body) {
        if (r.status == 200) {
            // The mock's body ends in `"prompt_tokens_details":{"cached_tokens":0}}}`; ten
            // bytes less ends inside it.
            const std::string tail = R"("prompt_tokens_details":{"cached_to)";
            BOOST_TEST(r.body.size() >= tail.size());
            BOOST_TEST(r.body.compare(r.body.size() - tail.size(), tail.size(), tail) == 0);
            BOOST_TEST(r.body.rfind(R"({"id":"chatcmpl-mock)", 0) == 0u);
        } else {
            BOOST_TEST(r.status == 502);
            BOOST_TEST(openai_error(r, "upstream_error", "upstream_unavailable"));
        }
    }
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == r.status, rec.line);
    expect_recovered(e);
}

// Bytes that follow the declared end of an answer and are still unread when it is relayed
// (the body is ~89 KB, its Content-Length 60000 bytes short) must not become the "answer"
// to the next request sent on that connection: a connection whose answer was not cleanly
// framed is not reused.
BOOST_AUTO_TEST_CASE(bytes_past_the_declared_content_length_do_not_poison_the_next_request) {
    faults_env e;
    const auto id = next_id("cl-short-big");
    auto r = e.chat(id, body("x #mock chunks=10000 cl_short=60000"));
    BOOST_TEST((r.status == 200 || r.status == 502), r.status);
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == r.status, rec.line);
    expect_recovered(e);
}

// An upstream that writes on a kept-alive connection while it sits idle in the pool
// (here a whole answer nobody asked for, as a desynchronised server would send): the
// connection is not used again, and the next request gets its own answer, not that one.
BOOST_AUTO_TEST_CASE(an_answer_sent_on_an_idle_pooled_connection_never_reaches_the_next_request) {
    faults_env e;
    const auto id = next_id("stray");
    auto r = e.chat(id, body("x #mock chunks=3 stray_after=1"));
    BOOST_TEST(r.status == 200, r.body);
    BOOST_TEST_REQUIRE(e.mock.wait_for("strays_sent", 1));
    auto s = e.chat(id + "-next", body("y #mock chunks=3"));
    BOOST_TEST_CONTEXT("next answer: " << s.status << " " << s.body) {
        BOOST_TEST(s.status == 200);
        BOOST_TEST(s.body.find("stray") == std::string::npos);
        BOOST_TEST(s.body.find(expected_content(3)) != std::string::npos);
    }
    expect_recovered(e);
}

// An upstream that closes a kept-alive connection right after an answer without saying so
// (its keep-alive time ran out). The FIN arrives with the answer's last bytes (the mock
// sends them in one segment), where the read that takes those bytes does not see it. The
// pooled connection's idle wait does, and the connection is not used again; were it
// missed, the next request on it would fail before any byte of an answer and be sent
// again on a new connection. Either way no client sees the close. Each closing answer
// comes on a connection reused once; streamed and whole answers.
BOOST_AUTO_TEST_CASE(an_upstream_that_closes_after_its_answers_costs_no_request) {
    faults_env e;
    for (int i = 0; i < 24; ++i) {
        const bool closes = i % 2 == 1;
        const bool stream = i / 2 % 2 == 1;
        auto r =
            e.chat(next_id("quiet"),
                   body(closes ? "x #mock chunks=2 quiet_close=1" : "x #mock chunks=2", stream));
        BOOST_TEST_REQUIRE(r.status == 200, "answer " << i << ": " << r.body);
        const auto whole = stream ? std::string("data: [DONE]") : expected_content(2);
        BOOST_TEST(r.body.find(whole) != std::string::npos, r.body);
    }
    // One more, ordinary: the pool then holds only the connection that served it.
    BOOST_TEST(e.chat(next_id("quiet"), body("y #mock chunks=3")).status == 200);
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(response_head_split_byte_by_byte_is_relayed_whole) {
    faults_env e;
    const std::string content = "slow #mock chunks=4 slow_head=1";
    const auto id = next_id("slow-head");
    auto r = e.chat(id, body(content));
    BOOST_TEST(r.status == 200, r.body);
    BOOST_TEST(r.body.find(R"("content":")" + expected_content(4) + "\"") != std::string::npos);
    const auto sid = next_id("slow-head-s");
    auto s = e.chat(sid, body(content, true));
    BOOST_TEST(s.status == 200);
    const auto events = sse_data(s.body);
    BOOST_TEST(reassemble(events) == expected_content(4));
    BOOST_TEST(error_events(events) == 0u);
    BOOST_TEST((!events.empty() && events.back() == "[DONE]"));
    for (const auto& rid : {id, sid}) {
        const auto rec = e.record_of(rid);
        BOOST_TEST_CONTEXT("record: " << rec.line) {
            BOOST_TEST(rec.status == 200);
            BOOST_TEST(rec.usage_source == "upstream");
            BOOST_TEST(rec.completion_tokens.value_or(0) == 4u);
            BOOST_TEST(rec.prompt_tokens.value_or(0) == mock_prompt_tokens(content));
        }
    }
    expect_recovered(e);
}

// The gateway's behaviour for events that are not what an OpenAI client expects: it relays
// every event it can frame as it came (it is a relay, not a validator), counts usage only
// from the well-formed usage chunk, and neither fails nor ends the stream early.
BOOST_AUTO_TEST_CASE(garbage_sse_is_relayed_as_is_and_usage_still_comes_from_the_upstream) {
    faults_env e;
    const std::string content = "junk #mock chunks=3 sse_garbage=1";
    const auto id = next_id("garbage");
    auto r = e.chat(id, body(content, true));
    BOOST_TEST(r.status == 200);
    const auto events = sse_data(r.body);
    BOOST_TEST(reassemble(events) == expected_content(3));
    BOOST_TEST(error_events(events) == 0u);
    BOOST_TEST((!events.empty() && events.back() == "[DONE]"));
    BOOST_TEST(r.body.find("data: not json {{{\n\n") != std::string::npos);
    BOOST_TEST(r.body.find("a line without a colon\n\n") != std::string::npos);
    BOOST_TEST(r.body.find("\x01\x7f\xc3 stray bytes\n\n") != std::string::npos);
    // The truncated usage object does not count; the real usage chunk does (and, not asked
    // for by the client, is not relayed).
    BOOST_TEST(r.body.find(R"("usage":{"prompt_tokens":)" +
                           std::to_string(mock_prompt_tokens(content))) == std::string::npos);
    const auto rec = e.record_of(id);
    BOOST_TEST_CONTEXT("record: " << rec.line) {
        BOOST_TEST(rec.status == 200);
        BOOST_TEST(!rec.error.has_value());
        BOOST_TEST(rec.usage_source == "upstream");
        BOOST_TEST(rec.completion_tokens.value_or(0) == 3u);
        BOOST_TEST(rec.prompt_tokens.value_or(0) == mock_prompt_tokens(content));
    }
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(sse_event_over_max_event_bytes_ends_the_stream_with_an_error_event) {
    faults_env e({.provider_extra = "    max_event_bytes: 64KiB\n"});
    const auto id = next_id("huge");
    auto r = e.chat(id, body("big #mock chunks=3 sse_huge=200000", true));
    check_stream_error(r, "upstream_unavailable");
    BOOST_TEST(r.body.find(std::string(1000, 'x')) == std::string::npos);  // nothing of it
    BOOST_TEST(reassemble(sse_data(r.body)).empty());
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 200, rec.line);
    BOOST_TEST(str(rec.error) == "upstream_unavailable", rec.line);
    // Just under the bound: relayed whole.
    const auto ok_id = next_id("huge-ok");
    auto ok = e.chat(ok_id, body("big #mock chunks=3 sse_huge=60000", true));
    BOOST_TEST(ok.status == 200);
    const auto events = sse_data(ok.body);
    BOOST_TEST(error_events(events) == 0u);
    BOOST_TEST(reassemble(events) == expected_content(3));
    BOOST_TEST(ok.body.find("data: " + std::string(60000, 'x') + "\n\n") != std::string::npos);
    BOOST_TEST(str(e.record_of(ok_id).error) == "<null>");
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(event_lines_comments_and_the_empty_choices_usage_chunk_are_handled) {
    faults_env e;
    const std::string content = "named #mock chunks=4 sse_events=1 comments=1";
    for (bool include_usage : {false, true}) {
        BOOST_TEST_CONTEXT("include_usage: " << include_usage) {
            const auto id = next_id("events");
            auto r = e.chat(id, body(content, true, include_usage));
            BOOST_TEST(r.status == 200);
            const auto events = sse_data(r.body);
            BOOST_TEST(reassemble(events) == expected_content(4));
            BOOST_TEST(error_events(events) == 0u);
            BOOST_TEST((!events.empty() && events.back() == "[DONE]"));
            BOOST_TEST(r.body.find("event: completion\ndata: ") != std::string::npos);
            BOOST_TEST(r.body.find(": ping\n\n") != std::string::npos);
            // The usage chunk (empty choices): the client gets it only if it asked.
            const std::string usage = R"("choices":[],"usage":{"prompt_tokens":)" +
                                      std::to_string(mock_prompt_tokens(content));
            BOOST_TEST((r.body.find(usage) != std::string::npos) == include_usage);
            const auto rec = e.record_of(id);
            BOOST_TEST_CONTEXT("record: " << rec.line) {
                BOOST_TEST(rec.status == 200);
                BOOST_TEST(rec.usage_source == "upstream");
                BOOST_TEST(rec.completion_tokens.value_or(0) == 4u);
                BOOST_TEST(rec.prompt_tokens.value_or(0) == mock_prompt_tokens(content));
            }
        }
    }
    expect_recovered(e);
}

// [DONE] missing, without the space, with CRLF, or without its blank line at the end of the
// body: the stream completes normally each time, with the upstream's usage.
BOOST_AUTO_TEST_CASE(done_marker_variants_end_the_stream_cleanly) {
    faults_env e;
    for (int v = 0; v < 4; ++v) {
        BOOST_TEST_CONTEXT("done=" << v) {
            const std::string content = "done #mock chunks=2 done=" + std::to_string(v);
            const auto id = next_id("done");
            auto r = e.chat(id, body(content, true));
            BOOST_TEST(r.status == 200);
            const auto events = sse_data(r.body);
            BOOST_TEST(reassemble(events) == expected_content(2));
            BOOST_TEST(error_events(events) == 0u);
            if (v != 0) BOOST_TEST((!events.empty() && events.back() == "[DONE]"), r.body);
            const auto rec = e.record_of(id);
            BOOST_TEST_CONTEXT("record: " << rec.line) {
                BOOST_TEST(rec.status == 200);
                BOOST_TEST(!rec.error.has_value());
                BOOST_TEST(rec.usage_source == "upstream");
                BOOST_TEST(rec.completion_tokens.value_or(0) == 2u);
            }
        }
    }
    expect_recovered(e);
}

// The upstream's own error event inside a 200 stream is the one error event the client
// gets (not a second one from the gateway), and it counts as a failure of the target.
BOOST_AUTO_TEST_CASE(error_event_inside_a_200_stream_is_relayed_once_and_counted) {
    faults_env e;
    const auto id = next_id("sse-error");
    auto r = e.chat(id, body("err #mock chunks=4 sse_error=2", true));
    BOOST_TEST(r.status == 200);
    const auto events = sse_data(r.body);
    BOOST_TEST(reassemble(events) == expected_content(2));
    BOOST_TEST(error_events(events) == 1u);
    BOOST_TEST_REQUIRE(!events.empty());
    BOOST_TEST(is_error_event(events.back()));
    BOOST_TEST(events.back().find("mock_sse_error") != std::string::npos);
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 200, rec.line);
    BOOST_TEST(rec.usage_source == "estimated", rec.line);  // it never sent usage
    BOOST_TEST(e.settled([&] { return e.failures("mock", "stream_error"); }, 1) == 1);
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(stalled_stream_ends_with_an_upstream_timeout_event) {
    faults_env e({.provider_extra = "    idle_timeout: 1s\n"});
    const auto id = next_id("stall");
    auto r = e.chat(id, body("slow #mock chunks=3 delay_ms=5000", true));
    check_stream_error(r, "upstream_timeout");
    BOOST_TEST(reassemble(sse_data(r.body)).empty());
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 200, rec.line);
    BOOST_TEST(str(rec.error) == "upstream_timeout", rec.line);
    // The gateway closed the upstream connection: the mock saw the stream go.
    BOOST_TEST(e.mock.wait_for("streams_aborted", 1));
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(storm_of_503_answers_is_502_each_without_retry_storm_or_leak) {
    faults_env e;
    constexpr int n = 30;
    std::vector<http_response> got(n);
    std::vector<std::string> ids(n);
    for (auto& id : ids) id = next_id("storm");
    {
        std::vector<std::jthread> threads;
        for (int i = 0; i < n; ++i)
            threads.emplace_back([&, i] {
                try {
                    got[i] = e.chat(ids[i], body("storm #mock status=503"));
                } catch (const std::exception& ex) {
                    got[i].status = -1;
                    got[i].body = ex.what();
                }
            });
    }
    for (int i = 0; i < n; ++i) {
        BOOST_TEST_CONTEXT("request " << i << ": " << got[i].status << " " << got[i].body) {
            BOOST_TEST(got[i].status == 502);
            BOOST_TEST(openai_error(got[i], "upstream_error", "upstream_unavailable"));
        }
    }
    // One attempt each: the model has one target, and a cooling target still gets one.
    BOOST_TEST(e.mock.counter("requests") == n);
    BOOST_TEST(e.settled([&] { return e.failures("mock", "status_5xx"); }, n) == n);
    for (const auto& id : ids) {
        const auto rec = e.record_of(id);
        BOOST_TEST(rec.status == 502, rec.line);
        BOOST_TEST(str(rec.error) == "upstream_unavailable", rec.line);
    }
    expect_recovered(e);
}

// A stream the upstream ended with its own error event failed, and its record says so
// (`error` is a code, not null), as it does for every other way a stream breaks after its
// head; otherwise the ledger shows a failed answer as a success.
BOOST_AUTO_TEST_CASE(stream_ended_by_an_upstream_error_event_is_recorded_with_an_error) {
    faults_env e;
    const auto id = next_id("sse-error-rec");
    auto r = e.chat(id, body("err #mock chunks=4 sse_error=2", true));
    BOOST_TEST(r.status == 200);
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 200, rec.line);
    BOOST_TEST(rec.error.has_value(), "record: " << rec.line);
    expect_recovered(e);
}

// Every way a stream can break after its 200 head is a failed upstream attempt, counted in
// tollgate_upstream_failures_total like the errors before a head (SPEC "Metrics"; routing
// counts failures per target and attempt): an upstream reset, a truncated chunk, an event over
// max_event_bytes, a stall past idle_timeout.
BOOST_AUTO_TEST_CASE(mid_stream_upstream_failures_are_counted_as_upstream_failures) {
    faults_env e({.provider_extra = "    idle_timeout: 1s\n    max_event_bytes: 64KiB\n"});
    const std::vector<std::string> faults = {"reset_after=2", "chunk_truncate=2", "sse_huge=200000",
                                             "delay_ms=5000"};
    double expected = 0;
    for (const auto& f : faults) {
        BOOST_TEST_CONTEXT(f) {
            const double before = e.settled([&] { return e.failures("mock"); }, expected);
            auto r = e.chat(next_id("mid"), body("x #mock chunks=4 " + f, true));
            BOOST_TEST(r.status == 200);
            const auto events = sse_data(r.body);
            BOOST_TEST((!events.empty() && is_error_event(events.back())));
            BOOST_TEST(before == expected);
            expected += 1;
            BOOST_TEST(e.settled([&] { return e.failures("mock"); }, expected) == expected);
        }
    }
    expect_recovered(e);
}

// ---------------------------------------------------------------------------------------
// Hostile clients

// A head sent one byte at a time, slower than header_timeout allows in total: the gateway
// closes the connection at the deadline without an answer (nothing to answer to yet).
BOOST_AUTO_TEST_CASE(slowloris_head_is_closed_at_header_timeout_without_an_answer) {
    faults_env e({.server_extra = "  header_timeout: 1s\n"});
    const std::string b = body("never");
    const std::string head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
        std::string(client_key_a) +
        "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
        "\r\n\r\n";
    raw_client c(e.port());
    std::string received;
    bool closed = false;
    // One byte per 100 ms: the whole head would take ~15 s; the gateway allows 1 s.
    for (std::size_t i = 0; i < head.size() && !closed; ++i) {
        if (!c.send_all(head.substr(i, 1))) {
            closed = true;
            break;
        }
        closed = c.read_some(received, 100ms) == raw_client::got::closed;
    }
    if (!closed) closed = c.read_until_closed(received, 5s);
    BOOST_TEST(closed);
    BOOST_TEST(received.empty(), "answered: " << received);
    BOOST_TEST(e.mock.counter("requests") == 0);
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(request_body_that_stalls_is_closed_at_idle_timeout_and_a_slow_one_served) {
    faults_env e({.server_extra = "  idle_timeout: 1s\n"});
    const std::string b = body("slow body #mock chunks=2");
    const std::string head =
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
        std::string(client_key_a) +
        "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
        "\r\n\r\n";
    {
        // Half the body, then nothing: closed at idle_timeout, unanswered, never forwarded.
        raw_client c(e.port());
        BOOST_TEST(c.send_all(head + b.substr(0, b.size() / 2)));
        std::string received;
        BOOST_TEST(c.read_until_closed(received, 10s));
        BOOST_TEST(received.empty(), "answered: " << received);
        BOOST_TEST(e.mock.counter("requests") == 0);
    }
    {
        // The body in pieces 50 ms apart (each gap well inside idle_timeout): served.
        http_connection c(e.port());
        c.send_raw(head);
        for (std::size_t at = 0; at < b.size(); at += 16) {
            std::this_thread::sleep_for(50ms);  // the client's pace, not a synchronisation
            c.send_raw(b.substr(at, 16));
        }
        auto r = c.read_response();
        BOOST_TEST(r.status == 200, r.body);
        BOOST_TEST(r.body.find(expected_content(2)) != std::string::npos);
    }
    expect_recovered(e);
}

// A client that asks for a long stream and never reads: once the gateway cannot write for
// write_timeout, it ends the request, cancels the upstream stream and records it.
BOOST_AUTO_TEST_CASE(client_that_never_reads_a_stream_is_cut_and_the_upstream_cancelled) {
    faults_env e({.server_extra = "  write_timeout: 1s\n"});
    const std::string b = body("flood #mock chunks=100000 pad=16384", true);
    const auto id = next_id("no-read");
    {
        raw_client c(e.port(), 4096);
        BOOST_TEST(c.send_all(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
            std::string(client_key_a) + "\r\nx-request-id: " + id +
            "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
            "\r\n\r\n" + b));
        BOOST_TEST(e.mock.wait_for("streams_started", 1));
        // Not reading: the stream must be cut from the gateway's side.
        BOOST_TEST(e.mock.wait_for("streams_aborted", 1, 30000), e.mock.stats());
        BOOST_TEST(e.mock.counter("streams_completed") == 0);
        const auto rec = e.record_of(id);
        BOOST_TEST_CONTEXT("record: " << rec.line) {
            BOOST_TEST(rec.status == 499);
            BOOST_TEST(str(rec.error) == "client_closed");
            BOOST_TEST(rec.stream.value_or(false));
        }
    }
    expect_recovered(e);
}

// A client that sends its request and then shuts down its sending side (a FIN, reading
// still open). The gateway takes the FIN for a client that went away (as nginx does by
// default): it cancels the upstream request, answers nothing, records a 499, and lives on.
// (A warm pooled connection makes the request reach the mock before the FIN is seen; on a
// cold pool the gateway may notice the FIN while connecting, and then nothing is sent.)
BOOST_AUTO_TEST_CASE(half_closed_client_is_taken_as_gone) {
    faults_env e;
    BOOST_TEST(e.chat(next_id("warm"), body("warm #mock chunks=1")).status == 200);
    const std::string b = body("half #mock chunks=2 head_delay_ms=1000", true);
    const auto id = next_id("half");
    raw_client c(e.port());
    BOOST_TEST(c.send_all(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
        std::string(client_key_a) + "\r\nx-request-id: " + id +
        "\r\ncontent-type: application/json\r\ncontent-length: " + std::to_string(b.size()) +
        "\r\n\r\n" + b));
    c.shutdown_write();
    std::string received;
    BOOST_TEST(c.read_until_closed(received, 20s));
    BOOST_TEST(received.empty(), "answered: " << received);
    const auto rec = e.record_of(id);
    BOOST_TEST(rec.status == 499, rec.line);
    BOOST_TEST(str(rec.error) == "client_closed", rec.line);
    // The upstream request was stopped: the gateway closed that upstream connection
    // (expect_recovered: no connection active, the pool's count equal to what the mock
    // still holds). The mock's own stream counters are not asserted: pausing in its head
    // delay it may not notice the close and count the stream as written.
    expect_recovered(e);
}

// x-request-id is echoed only when it is printable ASCII: a value the HTTP grammar allows but
// that is not (HTAB, obs-text) is replaced by a generated id; DEL, bare CR / LF and obs-fold
// are refused (400) or, at most, split into separate header lines, never echoed raw. No case puts a
// header of the client's making into the response or the upstream request.
BOOST_AUTO_TEST_CASE(control_characters_in_x_request_id_are_never_echoed) {
    faults_env e;
    const std::string b = body("id #mock chunks=1");
    struct variant {
        std::string name, header;
        bool must_answer;  // true: 200 with a generated id; false: 200 or 400
    };
    const std::vector<variant> variants = {
        {"htab", "x-request-id: abc\tx-injected: yes\r\n", true},
        {"obs-text",
         "x-request-id: abc\xe9"
         "def\r\n",
         true},
        {"del",
         "x-request-id: abc\x7f"
         "def\r\n",
         false},
        {"bare cr", "x-request-id: abc\rx-injected: yes\r\n", false},
        {"bare lf", "x-request-id: abc\nx-injected: yes\r\n", false},
        {"obs-fold", "x-request-id: abc\r\n x-injected: yes\r\n", false},
    };
    for (const auto& v : variants) {
        BOOST_TEST_CONTEXT(v.name) {
            http_connection c(e.port());
            c.send_raw("POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\nauthorization: Bearer " +
                       std::string(client_key_a) + "\r\n" + v.header +
                       "content-type: application/json\r\ncontent-length: " +
                       std::to_string(b.size()) + "\r\n\r\n" + b);
            auto r = c.read_response();
            BOOST_TEST(r.headers.count("x-injected") == 0u);
            const auto rid = r.header("x-request-id");
            BOOST_TEST(!rid.empty());
            for (unsigned char ch : rid) BOOST_TEST((ch > 0x20 && ch < 0x7f), "byte " << int(ch));
            if (v.must_answer) {
                BOOST_TEST(r.status == 200);
                BOOST_TEST(rid.size() == 32u, rid);
            } else {
                BOOST_TEST((r.status == 200 || r.status == 400), r.status);
                if (r.status == 200) BOOST_TEST(rid.find("x-injected") == std::string::npos);
            }
        }
    }
    const auto last = e.mock.last_request();
    BOOST_TEST(last.find("x-injected") == std::string::npos, last);
    expect_recovered(e);
}

BOOST_AUTO_TEST_CASE(invalid_utf8_in_the_json_body_is_400_and_never_forwarded) {
    faults_env e;
    const std::vector<std::pair<std::string, std::string>> bad = {
        {"0xff 0xfe", "\xff\xfe"},
        {"overlong '/'", "\xc0\xaf"},
        {"lone surrogate", "\xed\xa0\x80"},
        {"truncated sequence", "ab\xe2\x82"},
        {"continuation byte alone", "\x80x"},
    };
    std::vector<std::string> ids;
    for (const auto& [name, bytes] : bad) {
        BOOST_TEST_CONTEXT(name) {
            ids.push_back(next_id("utf8"));
            auto r = e.chat(ids.back(), body("text " + bytes));
            BOOST_TEST(r.status == 400);
            BOOST_TEST(openai_error(r, "invalid_request_error", "invalid_request"), r.body);
        }
    }
    // In the model name too.
    auto m = e.chat(next_id("utf8"), R"({"model":"gpt-)" + std::string("\xff") +
                                         R"(","messages":[{"role":"user","content":"x"}]})");
    BOOST_TEST(m.status == 400);
    BOOST_TEST(e.mock.counter("requests") == 0);
    expect_recovered(e);
    for (const auto& id : ids) BOOST_TEST(!e.has_record(id), id);
}

BOOST_AUTO_TEST_CASE(json_nested_128_deep_is_accepted_and_129_deep_refused) {
    faults_env e;
    // The top-level object is level 1, so `n` more levels make 1 + n.
    auto with = [](const std::string& nest) {
        return R"({"model":"gpt-4o-mini","messages":[{"role":"user","content":"deep #mock chunks=1"}],"x":)" +
               nest + "}";
    };
    auto arrays = [](int n) { return std::string(n, '[') + std::string(n, ']'); };
    auto objects = [](int n) {
        std::string s;
        for (int i = 0; i < n; ++i) s += R"({"a":)";
        s += "1";
        return s + std::string(n, '}');
    };
    for (const auto& [name, make] :
         std::vector<std::pair<std::string, std::function<std::string(int)>>>{
             {"arrays", arrays}, {"objects", objects}}) {
        BOOST_TEST_CONTEXT(name) {
            auto ok = e.chat(next_id("deep"), with(make(127)));
            BOOST_TEST(ok.status == 200, ok.body);
            auto deep = e.chat(next_id("deep"), with(make(128)));
            BOOST_TEST(deep.status == 400);
            BOOST_TEST(openai_error(deep, "invalid_request_error", "invalid_request"), deep.body);
        }
    }
    // Brackets inside a string are not nesting.
    auto str_ok = e.chat(next_id("deep"), body(std::string(300, '[') + " #mock chunks=1"));
    BOOST_TEST(str_ok.status == 200, str_ok.body);
    BOOST_TEST(e.mock.counter("requests") == 3);
    expect_recovered(e);
}

BOOST_AUTO_TEST_SUITE_END()
