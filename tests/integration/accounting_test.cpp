// The accounting matrix: every client endpoint × target kind × streamed or not × way a
// request can end, through the real gateway and the real mock upstream, each usage record
// compared with what the mock says it generated (GET /mock/last). Then the admission cases
// of the accounting issue: fallback to a dearer model under a USD budget, estimates that
// are upper bounds under tpm, a first request on a small budget, and settling whatever the
// order of `policies:`.
//
// Synchronisation: each request carries its own x-request-id and its record is awaited in
// the JSONL log (bounded poll); a client "gone" is awaited through the mock's counters
// (/mock/wait) or the deltas the client itself has read, never by sleeping.
#define BOOST_TEST_MODULE accounting_integration
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <signal.h>
#include <simdjson.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "tests/support/fixtures.hpp"
#include "tests/support/usage_records.hpp"

using namespace tollgate::test;
using namespace std::chrono_literals;
namespace bdata = boost::unit_test::data;

namespace {

constexpr const char* client_key = "tg-accounting-key-0123456789abcdef";
constexpr int chunks = 40;

enum class api { chat, messages, responses };
// compat: an OpenAI-compatible server with `responses: translate` (the Responses API
// through chat completions); its cells are the Responses API's only.
enum class kind { openai, azure, anthropic, compat };
enum class ending {
    complete,      // the whole answer
    gone_early,    // the client leaves before any byte of the answer
    gone_midway,   // the client leaves after reading a few deltas
    reset_midway,  // the upstream resets the connection after 20 deltas
    error_event,   // the upstream sends an error event after 20 deltas
    idle_timeout,  // the upstream stalls longer than the provider's idle_timeout
    no_usage,      // the upstream reports no usage at all
    drain,         // the client leaves midway; on_client_disconnect: drain
};

const char* name(api a) {
    return a == api::chat ? "chat" : a == api::messages ? "messages" : "responses";
}
const char* name(kind k) {
    return k == kind::openai      ? "openai"
           : k == kind::azure     ? "azure"
           : k == kind::anthropic ? "anthropic"
                                  : "compat";
}
const char* name(ending e) {
    switch (e) {
        case ending::complete:
            return "complete";
        case ending::gone_early:
            return "gone_early";
        case ending::gone_midway:
            return "gone_midway";
        case ending::reset_midway:
            return "reset_midway";
        case ending::error_event:
            return "error_event";
        case ending::idle_timeout:
            return "idle_timeout";
        case ending::no_usage:
            return "no_usage";
        case ending::drain:
            return "drain";
    }
    return "?";
}

struct cell {
    api client;
    kind target;
    bool stream;
    ending end;
};
std::ostream& operator<<(std::ostream& os, const cell& c) {
    return os << name(c.client) << "/" << name(c.target) << "/" << (c.stream ? "stream" : "json")
              << "/" << name(c.end);
}

std::vector<cell> matrix() {
    std::vector<cell> out;
    for (api a : {api::chat, api::messages, api::responses})
        for (kind k : {kind::openai, kind::azure, kind::anthropic, kind::compat})
            for (bool stream : {true, false})
                for (ending e : {ending::complete, ending::gone_early, ending::gone_midway,
                                 ending::reset_midway, ending::error_event, ending::idle_timeout,
                                 ending::no_usage, ending::drain}) {
                    if (k == kind::compat && a != api::responses) continue;
                    // A whole answer has no middle: these endings are the stream's.
                    if (!stream && (e == ending::gone_midway || e == ending::reset_midway ||
                                    e == ending::error_event || e == ending::idle_timeout))
                        continue;
                    out.push_back({a, k, stream, e});
                }
    return out;
}

// Prices per model (per million tokens), so a record priced at the wrong model shows.
struct price {
    double in, out;
};
price price_of(kind k) {
    return k == kind::openai      ? price{1.0, 2.0}
           : k == kind::azure     ? price{3.0, 5.0}
           : k == kind::anthropic ? price{7.0, 11.0}
                                  : price{0.5, 1.5};
}

std::string gateway_yaml(std::uint16_t mock_port, const std::filesystem::path& dir, bool drain) {
    const std::string base = "http://127.0.0.1:" + std::to_string(mock_port);
    std::string y = "server:\n  listen: [\"127.0.0.1:0\"]\n  threads: 2\n";
    y += "providers:\n";
    y += "  p-openai:\n    kind: openai\n    base_url: " + base +
         "/v1\n    api_key: sk-a\n    idle_timeout: 500ms\n";
    y += "  p-azure:\n    kind: azure\n    base_url: " + base +
         "\n    api_key: sk-b\n    api_version: \"2024-10-21\"\n    idle_timeout: 500ms\n";
    y += "  p-anthropic:\n    kind: anthropic\n    base_url: " + base +
         "\n    api_key: sk-c\n    idle_timeout: 500ms\n";
    y += "  p-compat:\n    kind: openai\n    base_url: " + base +
         "/v1\n    api_key: sk-d\n    idle_timeout: 500ms\n    responses: translate\n";
    y += "models:\n";
    for (kind k : {kind::openai, kind::azure, kind::anthropic, kind::compat}) {
        const auto p = price_of(k);
        y += std::string("  m-") + name(k) + ":\n    targets: [{provider: p-" + name(k) +
             ", model: up-" + name(k) + "}]\n    price: {input_per_mtok: " + std::to_string(p.in) +
             ", output_per_mtok: " + std::to_string(p.out) + "}\n";
    }
    y += std::string("keys:\n  - id: team-m\n    key: ") + client_key + "\n";
    y += std::string("routing:\n  retries: 0\n  on_client_disconnect: ") +
         (drain ? "drain" : "cancel") + "\n  drain_limit: 20s\n";
    y += "usage:\n  database: \"" + (dir / "usage.db").string() + "\"\n  jsonl: \"" +
         (dir / "usage.jsonl").string() + "\"\n";
    y += "policies: [auth, rate_limit, budget, router, usage]\n";
    return y;
}

struct gateway_env {
    std::filesystem::path dir = make_temp_dir();
    gateway_process gw;
    gateway_env(std::uint16_t mock_port, bool drain) : gw(gateway_yaml(mock_port, dir, drain)) {}
    ~gateway_env() {
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::filesystem::path jsonl() const { return dir / "usage.jsonl"; }
};

// One mock and two gateways (cancel, drain) for the whole matrix.
struct matrix_env {
    mock_upstream mock;
    gateway_env cancel{mock.port(), false};
    gateway_env drain{mock.port(), true};
};
matrix_env* env = nullptr;
struct matrix_fixture {
    matrix_fixture() { env = new matrix_env(); }
    ~matrix_fixture() {
        delete env;
        env = nullptr;
    }
};
BOOST_TEST_GLOBAL_FIXTURE(matrix_fixture);

// The record of `id`, once the ledger wrote it (bounded).
std::optional<record> await_record(const std::filesystem::path& jsonl, const std::string& id) {
    std::optional<record> found;
    poll_until(
        [&] {
            if (!std::filesystem::exists(jsonl)) return false;
            const auto all = with_id(read_records(jsonl), id);
            if (all.empty()) return false;
            found = all.front();
            return true;
        },
        20s);
    return found;
}

// What the mock generated for the last request.
struct mock_truth {
    std::uint64_t prompt = 0, completion = 0;
};
mock_truth last_truth(const mock_upstream& m) {
    const std::string last = m.last_request();
    static const std::regex p(R"re("prompt_tokens":(\d+),"completion_tokens":(\d+))re");
    std::smatch sm;
    mock_truth t;
    if (std::regex_search(last, sm, p)) {
        t.prompt = std::stoull(sm[1]);
        t.completion = std::stoull(sm[2]);
    }
    return t;
}

std::string directives_for(ending e) {
    switch (e) {
        case ending::complete:
            return "";
        case ending::gone_early:
            return " head_delay_ms=3000";
        case ending::gone_midway:
        case ending::drain:
            return " delay_ms=20";
        case ending::reset_midway:
            return " reset_after=20";
        case ending::error_event:
            return " sse_error=20";
        case ending::idle_timeout:
            return " delay_ms=3000";
        case ending::no_usage:
            return " no_usage=1";
    }
    return "";
}

std::string request_body(const cell& c) {
    const std::string content =
        "Tell me about accounting, please, in some words. #mock chunks=" + std::to_string(chunks) +
        directives_for(c.end) + (!c.stream && c.end == ending::drain ? " head_delay_ms=800" : "");
    std::string b = std::string(R"({"model":"m-)") + name(c.target) + "\"";
    if (c.client == api::responses) {
        b += R"(,"max_output_tokens":300)";
        if (c.stream) b += R"(,"stream":true)";
        return b + R"(,"input":")" + content + R"("})";
    }
    if (c.client == api::messages) b += R"(,"max_tokens":300)";
    if (c.stream) b += R"(,"stream":true)";
    b += R"(,"messages":[{"role":"user","content":")" + content + R"("}]})";
    return b;
}

std::size_t count_of(const std::string& s, const std::string& what) {
    std::size_t n = 0;
    for (auto p = s.find(what); p != std::string::npos; p = s.find(what, p + what.size())) ++n;
    return n;
}

}  // namespace

BOOST_AUTO_TEST_SUITE(integration)

BOOST_DATA_TEST_CASE(every_ending_is_billed_from_the_truth, bdata::make(matrix()), c) {
    auto& gw = c.end == ending::drain ? env->drain : env->cancel;
    auto& mock = env->mock;
    static std::atomic<int> seq{0};
    std::ostringstream id_stream;
    id_stream << "acct-" << seq++ << "-" << c;
    std::string id = id_stream.str();
    std::replace(id.begin(), id.end(), '/', '-');
    const std::string path = c.client == api::chat       ? "/v1/chat/completions"
                             : c.client == api::messages ? "/v1/messages"
                                                         : "/v1/responses";
    header_map h = auth_headers(client_key);
    h.emplace_back("x-request-id", id);
    h.emplace_back("content-type", "application/json");
    if (c.client == api::messages) h.emplace_back("anthropic-version", "2023-06-01");

    const long requests_before = mock.counter("requests");
    std::string client_body;
    std::size_t deltas_seen = 0;
    const bool leaves_midway = c.end == ending::gone_midway || (c.end == ending::drain && c.stream);
    const bool leaves_early = c.end == ending::gone_early || (c.end == ending::drain && !c.stream);
    {
        http_connection conn(gw.gw.port(), 30s);
        conn.send_request("POST", path, h, request_body(c));
        if (leaves_early) {
            // Gone once the upstream has the request and before it answers.
            BOOST_TEST_REQUIRE(mock.wait_for("requests", static_cast<int>(requests_before + 1)));
            conn.close();
        } else if (leaves_midway) {
            const auto head = conn.read_head();
            BOOST_TEST_REQUIRE(head.status == 200);
            while (deltas_seen < 5) {
                const auto piece = conn.read_body_some();
                BOOST_TEST_REQUIRE(!piece.empty());
                client_body += piece;
                deltas_seen = count_of(client_body, "word");
            }
            conn.close();
        } else {
            const auto r = conn.read_response();
            client_body = r.body;
            if (c.end == ending::complete || c.end == ending::no_usage)
                BOOST_TEST(r.status == 200, r.body);
            deltas_seen = count_of(client_body, "word");
        }
    }
    const auto rec = await_record(gw.jsonl(), id);
    BOOST_TEST_REQUIRE(rec.has_value(), "no record for " << id);
    const auto truth = last_truth(mock);
    const auto p = price_of(c.target);
    const bool anthropic_upstream = c.target == kind::anthropic;

    BOOST_TEST_CONTEXT("record: " << rec->line << "\nclient saw: " << client_body.substr(0, 600)) {
        check_shape(*rec);
        check_cost(*rec, p.in, p.out);  // at the serving model's price
        BOOST_TEST(str(rec->provider) == std::string("p-") + name(c.target));
        BOOST_TEST(rec->stream.value_or(!c.stream) == c.stream);
        const auto prompt = num(rec->prompt_tokens);
        const auto completion = num(rec->completion_tokens);
        switch (c.end) {
            case ending::complete:
            case ending::drain:
                // Final figures arrived (drained, when the client left): exact.
                BOOST_TEST(str(rec->usage_source) == "upstream");
                BOOST_TEST(prompt == static_cast<std::int64_t>(truth.prompt));
                BOOST_TEST(completion == static_cast<std::int64_t>(truth.completion));
                BOOST_TEST(rec->status == (c.end == ending::drain ? 499 : 200));
                break;
            case ending::gone_early:
                BOOST_TEST(str(rec->usage_source) == "estimated");
                BOOST_TEST(prompt > 0);
                BOOST_TEST(rec->status == 499);
                break;
            case ending::gone_midway:
            case ending::reset_midway:
            case ending::error_event:
            case ending::idle_timeout:
            case ending::no_usage: {
                // No final figures: estimated, never zero, never below what the upstream
                // said provisionally (Anthropic's message_start: the prompt, 1 output token),
                // and at least a token per delta the gateway relayed.
                BOOST_TEST(str(rec->usage_source) == "estimated");
                BOOST_TEST(prompt > 0);
                if (anthropic_upstream && (c.stream || c.end != ending::no_usage))
                    BOOST_TEST(prompt >= static_cast<std::int64_t>(truth.prompt));
                const std::int64_t relayed = c.end == ending::gone_midway    ? 5
                                             : c.end == ending::idle_timeout ? 0
                                             : c.end == ending::no_usage     ? chunks
                                                                             : 20;
                BOOST_TEST(completion >= relayed);
                if (anthropic_upstream && c.stream) BOOST_TEST(completion >= 1);
                break;
            }
        }
        if (c.end == ending::error_event) BOOST_TEST(str(rec->error) == "upstream_unavailable");
        if (c.end == ending::idle_timeout) BOOST_TEST(str(rec->error) == "upstream_timeout");
        if (c.end == ending::gone_midway || c.end == ending::gone_early)
            BOOST_TEST(str(rec->error) == "client_closed");
        // What the client sees is what a direct client would see: usage only the gateway
        // asked for leaves no trace in an OpenAI client's stream.
        if (c.client == api::chat && c.stream)
            BOOST_TEST(client_body.find("usage") == std::string::npos);
    }
}

// ---------------------------------------------------------------------------------------
// Admission (SPEC "Admission against a budget or tpm"): one estimate, an upper bound,
// reserved while below the limit and settled to the final usage.

namespace {

// A gateway on the shared mock with extra models/keys/providers and its own ledger.
struct admission_env {
    std::filesystem::path dir = make_temp_dir();
    std::unique_ptr<gateway_process> gw;
    admission_env(const std::string& providers_extra, const std::string& models,
                  const std::string& keys,
                  const std::string& policies = "[auth, rate_limit, budget, router, usage]") {
        const std::string base = "http://127.0.0.1:" + std::to_string(env->mock.port());
        std::string y = "server:\n  listen: [\"127.0.0.1:0\"]\n  threads: 2\n";
        y += "providers:\n  p-openai:\n    kind: openai\n    base_url: " + base +
             "/v1\n    api_key: sk-a\n" + providers_extra;
        y += "models:\n" + models;
        y += "keys:\n" + keys;
        y += "usage:\n  database: \"" + (dir / "usage.db").string() + "\"\n  jsonl: \"" +
             (dir / "usage.jsonl").string() + "\"\n";
        y += "policies: " + policies + "\n";
        gw = std::make_unique<gateway_process>(y);
    }
    ~admission_env() {
        gw.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }
    std::uint16_t port() const { return gw->port(); }
    // SIGTERM flushes the ledger; then every record is in the JSONL file.
    std::vector<record> stop_and_read() {
        const int code = gw->stop(SIGTERM);
        check_clean_exit("tollgate", code, gw->process().output());
        return read_records(dir / "usage.jsonl");
    }
};

std::string key_yaml(const std::string& id, const std::string& key, const std::string& terms) {
    return "  - id: " + id + "\n    key: " + key + "\n" + terms;
}

http_response post(std::uint16_t port, const std::string& path, const std::string& key,
                   const std::string& body) {
    return http_request(port, "POST", path, auth_headers(key), body);
}

// `n` requests at once (bounded: one thread each, every socket with a timeout).
std::vector<http_response> concurrently(int n, const std::function<http_response()>& f) {
    std::vector<http_response> out(static_cast<std::size_t>(n));
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i)
        threads.emplace_back([&, i] { out[static_cast<std::size_t>(i)] = f(); });
    for (auto& t : threads) t.join();
    return out;
}

int count_status(const std::vector<http_response>& rs, int status) {
    return static_cast<int>(std::count_if(
        rs.begin(), rs.end(), [&](const http_response& r) { return r.status == status; }));
}

std::string chat_request(const std::string& model, const std::string& content,
                         const std::string& extra = "") {
    return R"({"model":")" + model + R"(","messages":[{"role":"user","content":")" + content +
           R"("}])" + extra + "}";
}

}  // namespace

// Issue case 4: a cheap model whose target is down falls back to a pricey one. The USD
// reservation is priced at the dearest of the model and its fallbacks, so concurrent
// requests overshoot the budget by at most one request, and each is billed at the price of
// the model that served.
BOOST_AUTO_TEST_CASE(a_fallback_to_a_pricier_model_overshoots_a_usd_budget_by_one_request) {
    const std::string dead = "http://127.0.0.1:" + std::to_string(closed_port()) + "/v1";
    admission_env e(
        "  dead:\n    kind: openai\n    base_url: " + dead + "\n    connect_timeout: 2s\n",
        "  cheap:\n    targets: [{provider: dead, model: x}]\n    fallbacks: [pricey]\n"
        "    price: {input_per_mtok: 1, output_per_mtok: 1}\n"
        "  pricey:\n    targets: [{provider: p-openai, model: y}]\n"
        "    price: {input_per_mtok: 1000, output_per_mtok: 1000}\n",
        key_yaml("usd-team", client_key, "    budget: {usd: 0.20, period: day}\n"));
    // Each: ~12 prompt + 80 completion tokens at $0.001 = ~$0.09 real; reserved with
    // max_tokens 100 at the pricey price: ~$0.11. All ten in flight together.
    const std::string body =
        chat_request("cheap", "Say a lot about money #mock chunks=80 head_delay_ms=1500",
                     R"(,"max_tokens":100)");
    const auto rs =
        concurrently(10, [&] { return post(e.port(), "/v1/chat/completions", client_key, body); });
    const int ok = count_status(rs, 200);
    BOOST_TEST(ok >= 1);
    BOOST_TEST(ok <= 2);  // $0 and ~$0.11 held are below $0.20; ~$0.22 is not
    BOOST_TEST(count_status(rs, 429) == 10 - ok);
    const auto records = e.stop_and_read();
    BOOST_TEST(records.size() == static_cast<std::size_t>(ok));
    double total = 0, largest = 0;
    for (const auto& r : records) {
        BOOST_TEST(str(r.model) == "cheap");
        BOOST_TEST(str(r.provider) == "p-openai");
        BOOST_TEST(str(r.usage_source) == "upstream");
        check_cost(r, 1000, 1000);  // the fallback's own price
        total += r.cost_usd.value_or(0);
        largest = std::max(largest, r.cost_usd.value_or(0));
    }
    BOOST_TEST(total <= 0.20 + largest);
}

// Issue case 5: estimates that aim to be upper bounds reach admission. The reservation
// shows in x-ratelimit-remaining-tokens (limit minus what is held, this request included).
BOOST_AUTO_TEST_CASE(token_arrays_cjk_text_images_and_n_are_not_under_reserved) {
    const std::string terms = "    limits: {tpm: 100000}\n";
    admission_env e(
        "",
        "  m:\n    targets: [{provider: p-openai, model: up}]\n"
        "    price: {input_per_mtok: 1, output_per_mtok: 1}\n",
        key_yaml("arrays", "tg-acct-arrays-0123456789abcdef", terms) +
            key_yaml("cjk", "tg-acct-cjk-0123456789abcdef", terms) +
            key_yaml("images", "tg-acct-images-0123456789abcdef", "    limits: {tpm: 1000}\n") +
            key_yaml("choices", "tg-acct-choices-0123456789abcdef", terms));
    auto remaining = [](const http_response& r) {
        const auto v = r.header("x-ratelimit-remaining-tokens");
        return v.empty() ? -1L : std::stol(v);
    };
    // 600 token ids: 600 tokens (they counted 0 before).
    std::string ids;
    for (int i = 0; i < 600; ++i) ids += (i ? "," : "") + std::to_string(1000 + i);
    const auto arrays = post(e.port(), "/v1/embeddings", "tg-acct-arrays-0123456789abcdef",
                             R"({"model":"m","input":[)" + ids + "]}");
    BOOST_TEST(arrays.status == 200, arrays.body);
    BOOST_TEST(remaining(arrays) == 100000L - 600L);

    // 300 CJK characters (900 bytes): at least 300 tokens, not 225.
    std::string cjk;
    for (int i = 0; i < 100; ++i) cjk += "\xe4\xbd\xa0\xe5\xa5\xbd\xe5\x90\x97";
    const auto c = post(e.port(), "/v1/chat/completions", "tg-acct-cjk-0123456789abcdef",
                        chat_request("m", cjk, R"(,"max_tokens":10)"));
    BOOST_TEST(c.status == 200, c.body);
    BOOST_TEST(remaining(c) <= 100000L - 300L - 10L);

    // n choices of max_tokens each.
    const auto n = post(e.port(), "/v1/chat/completions", "tg-acct-choices-0123456789abcdef",
                        chat_request("m", "four answers please", R"(,"max_tokens":100,"n":4)"));
    BOOST_TEST(n.status == 200, n.body);
    BOOST_TEST(remaining(n) <= 100000L - 400L);

    // Six concurrent requests with an image each (a short URL, 1,600 tokens reserved) on
    // tpm 1000: the first is admitted, the rest wait (all six passed before).
    const std::string image_body =
        R"({"model":"m","max_tokens":10,"messages":[{"role":"user","content":[)"
        R"({"type":"text","text":"what is this #mock head_delay_ms=1500"},)"
        R"({"type":"image_url","image_url":{"url":"https://example.com/cat.png"}}]}]})";
    const auto rs = concurrently(6, [&] {
        return post(e.port(), "/v1/chat/completions", "tg-acct-images-0123456789abcdef",
                    image_body);
    });
    BOOST_TEST(count_status(rs, 200) == 1);
    BOOST_TEST(count_status(rs, 429) == 5);
}

// Issue case 7: a key with nothing spent is admitted even when its first request's
// estimate is larger than the whole budget; the next one is refused.
BOOST_AUTO_TEST_CASE(a_first_request_on_a_small_budget_is_admitted_and_the_next_refused) {
    admission_env e("", "  m:\n    targets: [{provider: p-openai, model: up}]\n",
                    key_yaml("small", client_key, "    budget: {tokens: 50, period: day}\n"));
    const auto first = post(e.port(), "/v1/chat/completions", client_key,
                            chat_request("m", "hello #mock chunks=60"));
    BOOST_TEST(first.status == 200, first.body);
    const auto second = post(e.port(), "/v1/chat/completions", client_key,
                             chat_request("m", "again #mock chunks=60"));
    BOOST_TEST(second.status == 429);
    BOOST_TEST(second.body.find("budget_exceeded") != std::string::npos, second.body);
    const auto records = e.stop_and_read();
    BOOST_TEST(records.size() == 1u);
}

// Issue case 9: usage listed before the policies that settle. Reservations still settle
// to the real usage (the final figure is set before any on_complete), so a 3,000-token
// budget and a 2,500 tpm admit many small requests whose estimates (~1,010) would fill
// them after three.
BOOST_AUTO_TEST_CASE(reservations_settle_to_the_real_usage_whatever_the_chain_order) {
    admission_env e("", "  m:\n    targets: [{provider: p-openai, model: up}]\n",
                    key_yaml("ordered", client_key,
                             "    limits: {tpm: 2500}\n    budget: {tokens: 3000, period: day}\n"),
                    "[auth, usage, rate_limit, budget, router]");
    for (int i = 0; i < 6; ++i) {
        const auto r = post(e.port(), "/v1/chat/completions", client_key,
                            chat_request("m", "short one #mock chunks=8", R"(,"max_tokens":1000)"));
        BOOST_TEST(r.status == 200, "request " << i << ": " << r.body);
    }
    const auto records = e.stop_and_read();
    BOOST_TEST(records.size() == 6u);
    for (const auto& r : records) BOOST_TEST(num(r.completion_tokens) == 8);
}

// A chain the gateway cannot run correctly is refused by --check, with the reason.
BOOST_AUTO_TEST_CASE(check_refuses_a_chain_it_cannot_run_correctly) {
    const auto dir = make_temp_dir();
    struct bad_chain {
        const char* policies;
        const char* reason;
    };
    const bad_chain cases[] = {
        {"[rate_limit, auth, router]", "'rate_limit' must come after 'auth'"},
        {"[router, auth]", "'router' must come after 'auth'"},
        {"[budget, router, usage]", "'budget' needs 'auth'"},
        {"[auth, budget, router]", "'budget' needs 'usage'"},
        {"[auth, usage]", "needs 'router'"},
    };
    for (const auto& c : cases) {
        config_options o;
        o.policies = c.policies;
        std::ofstream(dir / "chain.yaml") << standard_config(9, o);
        const auto r = run_command(
            {tollgate_binary(), "--check", "--config", (dir / "chain.yaml").string()}, 10s);
        BOOST_TEST(r.exit_code == 1, c.policies);
        BOOST_TEST(r.output.find(c.reason) != std::string::npos, c.policies << ": " << r.output);
    }
    for (const char* good : {"[auth, usage, rate_limit, budget, router]", "[router]",
                             "[auth, router, budget, usage]"}) {
        config_options o;
        o.policies = good;
        std::ofstream(dir / "chain.yaml") << standard_config(9, o);
        const auto r = run_command(
            {tollgate_binary(), "--check", "--config", (dir / "chain.yaml").string()}, 10s);
        BOOST_TEST(r.exit_code == 0, good << ": " << r.output);
    }
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}

BOOST_AUTO_TEST_SUITE_END()
