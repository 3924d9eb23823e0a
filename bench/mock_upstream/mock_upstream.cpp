// mock_upstream: an OpenAI-compatible HTTP/1.1 server for the quickstart, the integration
// tests and the benchmarks. It answers /chat/completions (plain and SSE streaming, with
// tool calls), /embeddings, the Anthropic Messages API (.../v1/messages, plain and SSE,
// with tool use) and the OpenAI Responses API (.../responses, plain and its event stream,
// with function calls) deterministically, takes per-request fault-injection directives from the
// prompt ("#mock key=value ..."), and exposes counters under /mock/* so a test can wait
// for and assert on what the gateway did to it.
//
// It is benchmarked side by side with nginx, so the hot path avoids per-request logging,
// sleeping, and copies: one io_context per thread, buffers reused per connection, responses
// written with one gathered write, and the request moved (not copied) into /mock/last.
// See README.md next to this file for the full contract.

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/deferred.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/experimental/parallel_group.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/string_body.hpp>

#include <simdjson.h>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace tollgate::bench {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using namespace std::chrono_literals;

// Errors are values here, not exceptions: a peer that goes away is the normal case.
constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);

constexpr std::size_t body_limit = 64u << 20;
constexpr std::uint32_t header_limit = 64u << 10;
constexpr auto handshake_timeout = 10s;
constexpr auto tls_close_timeout = 1s;  // bound on sending our close_notify

// ---------------------------------------------------------------------------------------
// Options and shared state

struct options {
    std::string host = "127.0.0.1";
    unsigned short port = 0;
    int threads = 1;
    int chunks = 8;
    int delay_ms = 0;
    std::string api_key;   // empty: no authentication
    std::string tls_cert;  // PEM chain; with tls_key, serve HTTPS
    std::string tls_key;
};

struct stats {
    std::atomic<std::uint64_t> requests{0};
    std::atomic<std::uint64_t> connections_accepted{0};
    std::atomic<std::uint64_t> connections_open{0};
    std::atomic<std::uint64_t> streams_started{0};
    std::atomic<std::uint64_t> streams_completed{0};
    std::atomic<std::uint64_t> streams_aborted{0};
    std::atomic<std::uint64_t> streams_held{0};  // streams that reached a hold= point
    std::atomic<std::uint64_t> releases{0};      // GET /mock/release calls
    std::atomic<std::uint64_t> strays_sent{0};   // stray_after= answers written

    // Lookup for /mock/wait?field=...
    std::atomic<std::uint64_t>* field(std::string_view name) {
        if (name == "requests") return &requests;
        if (name == "connections_accepted") return &connections_accepted;
        if (name == "connections_open") return &connections_open;
        if (name == "streams_started") return &streams_started;
        if (name == "streams_completed") return &streams_completed;
        if (name == "streams_aborted") return &streams_aborted;
        if (name == "streams_held") return &streams_held;
        if (name == "releases") return &releases;
        if (name == "strays_sent") return &strays_sent;
        return nullptr;
    }
};

using request = http::request<http::string_body>;

struct shared_state {
    options opt;
    std::string expected_auth;  // "Bearer <key>", precomputed once
    stats counters;
    std::atomic<std::uint64_t> next_id{0};
    std::unique_ptr<asio::ssl::context> tls;  // set iff serving TLS

    std::mutex last_mutex;
    std::optional<request> last;  // the last chat/embeddings request, for /mock/last
    bool last_tls = false;        // ... whether it came over TLS
    std::string last_sni;         // ... and the SNI its connection sent (empty: none)
    // What the mock generated for the last chat/messages request (its usage rule, whether
    // or not the answer reported it) and how many content events it has sent so far: the
    // truth a test compares the gateway's usage record with.
    std::atomic<long long> last_prompt_tokens{0};
    std::atomic<long long> last_completion_tokens{0};
    std::atomic<long long> last_deltas_sent{0};
};

// ---------------------------------------------------------------------------------------
// Small output helpers (append into reused strings; no iostreams on the hot path)

void append_int(std::string& out, long long v) {
    char buf[24];
    auto r = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, r.ptr);
}

// Appends `s` as a quoted JSON string. Runs of safe bytes are copied in one go.
void append_json_string(std::string& out, std::string_view s) {
    out += '"';
    std::size_t run = 0;
    for (std::size_t i = 0; i < s.size(); ++i) {
        auto c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c != '"' && c != '\\') continue;
        out.append(s.data() + run, i - run);
        run = i + 1;
        switch (c) {
            case '"':
                out += "\\\"";
                break;
            case '\\':
                out += "\\\\";
                break;
            case '\n':
                out += "\\n";
                break;
            case '\r':
                out += "\\r";
                break;
            case '\t':
                out += "\\t";
                break;
            default: {
                static constexpr char hex[] = "0123456789abcdef";
                char esc[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                out.append(esc, sizeof esc);
            }
        }
    }
    out.append(s.data() + run, s.size() - run);
    out += '"';
}

std::string error_json(std::string_view message, std::string_view type, std::string_view code) {
    std::string out = R"({"error":{"message":)";
    append_json_string(out, message);
    out += R"(,"type":)";
    append_json_string(out, type);
    out += R"(,"param":null,"code":)";
    append_json_string(out, code);
    out += "}}";
    return out;
}

// Anthropic's error shape: {"type":"error","error":{"type":...,"message":...}}.
std::string anthropic_error_json(std::string_view type, std::string_view message) {
    std::string out = R"({"type":"error","error":{"type":)";
    append_json_string(out, type);
    out += R"(,"message":)";
    append_json_string(out, message);
    out += "}}";
    return out;
}

std::string stats_json(const stats& s) {
    std::string out;
    out.reserve(160);
    auto field = [&](std::string_view name, const std::atomic<std::uint64_t>& v, bool first) {
        out += first ? "{\"" : ",\"";
        out += name;
        out += "\":";
        append_int(out, static_cast<long long>(v.load(std::memory_order_relaxed)));
    };
    field("requests", s.requests, true);
    field("connections_accepted", s.connections_accepted, false);
    field("connections_open", s.connections_open, false);
    field("streams_started", s.streams_started, false);
    field("streams_completed", s.streams_completed, false);
    field("streams_held", s.streams_held, false);
    field("releases", s.releases, false);
    field("streams_aborted", s.streams_aborted, false);
    field("strays_sent", s.strays_sent, false);
    out += '}';
    return out;
}

void append_usage(std::string& out, long long prompt, long long completion) {
    out += R"({"prompt_tokens":)";
    append_int(out, prompt);
    out += R"(,"completion_tokens":)";
    append_int(out, completion);
    out += R"(,"total_tokens":)";
    append_int(out, prompt + completion);
    out += R"(,"prompt_tokens_details":{"cached_tokens":0}})";
}

std::optional<int> parse_int(std::string_view s) {
    int v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

// ---------------------------------------------------------------------------------------
// Directives: "#mock key=value key=value" inside any message text, up to end of line.

struct directives {
    std::optional<int> chunks, delay_ms, status, head_delay_ms, reset_after, sse_error,
        prompt_tokens;
    bool close = false;
    bool no_usage = false;  // answers and streams carry no usage (message_start's stays)
    bool comments = false;
    // Framing and protocol faults (see README "Directives").
    bool reset_before_head = false;
    bool slow_head = false;
    bool sse_garbage = false;
    bool sse_events = false;
    std::optional<int> chunk_truncate, cl_short, cl_long, sse_huge, done, pad, hold;
    std::optional<int> stray_after;
    bool quiet_close = false;  // close right after the answer, which promised keep-alive
    bool burst = false;        // a chat stream's whole body in one write (bench/run.sh MODES=burst)

    void apply(std::string_view key, std::string_view value) {
        auto v = parse_int(value);
        if (!v) return;  // unparsable values are ignored like unknown keys
        int n = *v < 0 ? 0 : *v;
        if (key == "chunks")
            chunks = n;
        else if (key == "delay_ms")
            delay_ms = n;
        else if (key == "status")
            status = n;
        else if (key == "head_delay_ms")
            head_delay_ms = n;
        else if (key == "reset_after")
            reset_after = n;
        else if (key == "sse_error")
            sse_error = n;
        else if (key == "prompt_tokens")
            prompt_tokens = n;
        else if (key == "close")
            close = n != 0;
        else if (key == "no_usage")
            no_usage = n != 0;
        else if (key == "comments")
            comments = n != 0;
        else if (key == "burst")
            burst = n != 0;
        else if (key == "reset_before_head")
            reset_before_head = n != 0;
        else if (key == "slow_head")
            slow_head = n != 0;
        else if (key == "sse_garbage")
            sse_garbage = n != 0;
        else if (key == "sse_events")
            sse_events = n != 0;
        else if (key == "chunk_truncate")
            chunk_truncate = n;
        else if (key == "cl_short")
            cl_short = n;
        else if (key == "cl_long")
            cl_long = n;
        else if (key == "sse_huge")
            sse_huge = n;
        else if (key == "done")
            done = n;
        else if (key == "pad")
            pad = n;
        else if (key == "hold")
            hold = n;
        else if (key == "stray_after")
            stray_after = n;
        else if (key == "quiet_close")
            quiet_close = n != 0;
    }

    void scan(std::string_view text) {
        constexpr std::string_view tag = "#mock";
        auto is_space = [](char c) { return c == ' ' || c == '\t' || c == '\r'; };
        std::size_t pos = 0;
        while ((pos = text.find(tag, pos)) != std::string_view::npos) {
            std::size_t p = pos + tag.size();
            pos = p;
            // "#mockery" is prose, not a directive.
            if (p < text.size() && !is_space(text[p]) && text[p] != '\n') continue;
            std::size_t eol = text.find('\n', p);
            if (eol == std::string_view::npos) eol = text.size();
            std::string_view line = text.substr(p, eol - p);
            while (!line.empty()) {
                while (!line.empty() && is_space(line.front())) line.remove_prefix(1);
                std::size_t end = 0;
                while (end < line.size() && !is_space(line[end])) ++end;
                std::string_view token = line.substr(0, end);
                line.remove_prefix(end);
                if (auto eq = token.find('='); eq != std::string_view::npos)
                    apply(token.substr(0, eq), token.substr(eq + 1));
            }
            pos = eol;
        }
    }
};

// ---------------------------------------------------------------------------------------
// Request bodies (simdjson DOM; one reusable parser per thread)

simdjson::dom::parser& thread_parser() {
    thread_local simdjson::dom::parser parser;
    return parser;
}

// Parses `body` in place; the padding simdjson needs is reserved in the string itself so the
// parser does not have to copy the body into its own buffer.
bool parse_object(std::string& body, simdjson::dom::object& root) {
    body.reserve(body.size() + simdjson::SIMDJSON_PADDING);
    simdjson::dom::element doc;
    if (thread_parser().parse(body.data(), body.size(), false).get(doc)) return false;
    return !doc.get(root);
}

struct chat_request {
    std::string model = "mock-model";
    bool stream = false;
    bool include_usage = false;
    bool tools = false;
    std::string tool_name = "mock_function";
    std::size_t text_bytes = 0;
    directives dirs;
    bool max_tokens = false;  // Anthropic only: an integer `max_tokens` was present

    void add_text(std::string_view text) {
        text_bytes += text.size();
        dirs.scan(text);
    }
};

bool parse_chat(std::string& body, chat_request& out) {
    simdjson::dom::object root;
    if (!parse_object(body, root)) return false;
    std::string_view sv;
    if (!root["model"].get(sv)) out.model = sv;
    bool b = false;
    if (!root["stream"].get(b)) out.stream = b;
    if (!root["stream_options"]["include_usage"].get(b)) out.include_usage = b;
    simdjson::dom::array tools;
    if (!root["tools"].get(tools) && tools.size() > 0) {
        out.tools = true;
        if (!tools.at(0)["function"]["name"].get(sv)) out.tool_name = sv;
    }
    simdjson::dom::array messages;
    if (root["messages"].get(messages)) return true;
    bool tool_result_last = false;
    for (simdjson::dom::element m : messages) {
        tool_result_last = !m["role"].get(sv) && sv == "tool";
        auto content = m["content"];
        simdjson::dom::array parts;
        if (!content.get(sv)) {
            out.text_bytes += sv.size();
            out.dirs.scan(sv);
        } else if (!content.get(parts)) {
            for (simdjson::dom::element part : parts) {
                if (part["text"].get(sv)) continue;
                out.text_bytes += sv.size();
                out.dirs.scan(sv);
            }
        }
    }
    // A tool's result last: the answer is text, closing a tool round trip (as a model does).
    if (tool_result_last) out.tools = false;
    return true;
}

// OpenAI Responses API: text comes from `instructions` and from `input` (a string, or
// items: messages whose content is a string or parts with `text`, and the `output` string
// of function_call_output items). `tool_output_last`: the last input item is a
// function_call_output (the mock then answers in text, closing a tool round trip).
struct responses_request : chat_request {
    bool tool_output_last = false;
};

bool parse_responses(std::string& body, responses_request& out) {
    simdjson::dom::object root;
    if (!parse_object(body, root)) return false;
    std::string_view sv;
    if (!root["model"].get(sv)) out.model = sv;
    bool b = false;
    if (!root["stream"].get(b)) out.stream = b;
    simdjson::dom::array tools;
    if (!root["tools"].get(tools) && tools.size() > 0) {
        out.tools = true;
        if (!tools.at(0)["name"].get(sv)) out.tool_name = sv;
    }
    if (!root["instructions"].get(sv)) out.add_text(sv);
    simdjson::dom::array items;
    if (!root["input"].get(sv)) {
        out.add_text(sv);
    } else if (!root["input"].get(items)) {
        for (simdjson::dom::element item : items) {
            std::string_view type;
            const bool typed = !item["type"].get(type);
            out.tool_output_last = typed && type == "function_call_output";
            if (out.tool_output_last) {
                if (!item["output"].get(sv)) out.add_text(sv);
                continue;
            }
            simdjson::dom::array parts;
            if (!item["content"].get(sv)) {
                out.add_text(sv);
            } else if (!item["content"].get(parts)) {
                for (simdjson::dom::element part : parts)
                    if (!part["text"].get(sv)) out.add_text(sv);
            }
        }
    }
    return true;
}

// Anthropic Messages: text comes from `system` (string or text blocks) and from each
// message's content (string, or blocks: `text`, and the string / text blocks of a
// `tool_result`; image and tool_use blocks carry no text).
bool parse_messages(std::string& body, chat_request& out) {
    simdjson::dom::object root;
    if (!parse_object(body, root)) return false;
    std::string_view sv;
    if (!root["model"].get(sv)) out.model = sv;
    bool b = false;
    if (!root["stream"].get(b)) out.stream = b;
    std::int64_t max_tokens = 0;
    out.max_tokens = !root["max_tokens"].get(max_tokens);
    simdjson::dom::array tools;
    if (!root["tools"].get(tools) && tools.size() > 0) {
        out.tools = true;
        if (!tools.at(0)["name"].get(sv)) out.tool_name = sv;
    }
    // A string, or an array of blocks whose `text` strings count; a tool_result block's
    // `content` is the same again.
    auto add_content = [&](simdjson::dom::element content, auto& self) -> void {
        simdjson::dom::array blocks;
        if (!content.get(sv)) {
            out.add_text(sv);
        } else if (!content.get(blocks)) {
            for (simdjson::dom::element block : blocks) {
                if (!block["text"].get(sv)) {
                    out.add_text(sv);
                } else if (std::string_view type;
                           !block["type"].get(type) && type == "tool_result") {
                    simdjson::dom::element inner;
                    if (!block["content"].get(inner)) self(inner, self);
                }
            }
        }
    };
    simdjson::dom::element system;
    if (!root["system"].get(system)) add_content(system, add_content);
    simdjson::dom::array messages;
    if (root["messages"].get(messages)) return true;
    bool tool_result_last = false;
    for (simdjson::dom::element m : messages) {
        simdjson::dom::element content;
        if (!m["content"].get(content)) add_content(content, add_content);
        tool_result_last = false;
        simdjson::dom::array blocks;
        if (!m["content"].get(blocks))
            for (simdjson::dom::element block : blocks)
                if (std::string_view type; !block["type"].get(type) && type == "tool_result")
                    tool_result_last = true;
    }
    // A tool_result last: the answer is text, closing a tool round trip (as a model does).
    if (tool_result_last) out.tools = false;
    return true;
}

struct embeddings_request {
    std::string model = "mock-embedding";
    std::size_t items = 1;
    std::size_t input_bytes = 0;
};

bool parse_embeddings(std::string& body, embeddings_request& out) {
    simdjson::dom::object root;
    if (!parse_object(body, root)) return false;
    std::string_view sv;
    if (!root["model"].get(sv)) out.model = sv;
    auto input = root["input"];
    simdjson::dom::array arr;
    if (!input.get(sv)) {
        out.input_bytes = sv.size();
    } else if (!input.get(arr)) {
        out.items = arr.size();
        for (simdjson::dom::element e : arr)
            if (!e.get(sv)) out.input_bytes += sv.size();
    }
    return true;
}

std::string_view query_param(std::string_view query, std::string_view key) {
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        std::size_t eq = pair.find('=');
        if (pair.substr(0, eq) == key)
            return eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1);
    }
    return {};
}

// ---------------------------------------------------------------------------------------
// One connection: read a request, answer it, repeat while keep-alive.
//
// Templated on the stream so plain HTTP keeps its direct tcp::socket reads and writes (no
// per-operation indirection in benchmarks); TLS serving instantiates it with tls_stream. The
// TLS-only members are used only under `if constexpr (is_tls)`, so never instantiated for
// plain.

using tls_stream = asio::ssl::stream<tcp::socket>;

enum class after { keep_alive, close, gone };  // gone: the socket is already dead

// What the current request asked of the connection, captured before the request is moved
// into /mock/last.
struct request_info {
    unsigned version = 11;
    bool close = false;
};

template <class Stream>
class connection {
    static constexpr bool is_tls = std::is_same_v<Stream, tls_stream>;

  public:
    connection(shared_state& st, tcp::socket sock)
        : st_(st), sock_(make_stream(st, std::move(sock))), timer_(sock_.get_executor()) {}

    // TLS only: the server handshake, bounded by handshake_timeout; false: drop the connection.
    awaitable<bool> handshake();
    awaitable<void> serve();

  private:
    static Stream make_stream(shared_state& st, tcp::socket sock) {
        if constexpr (is_tls)
            return Stream(std::move(sock), *st.tls);
        else
            return sock;
    }
    // The TCP socket itself (for tcp::socket, lowest_layer() is the socket).
    auto& lowest() { return sock_.lowest_layer(); }

    awaitable<after> route(request& req);
    awaitable<after> handle_chat(request& req, const request_info& ri);
    awaitable<after> handle_messages(request& req, const request_info& ri);
    awaitable<after> stream_messages(const chat_request& rq, const request_info& ri, int chunks,
                                     int delay_ms, long long prompt_tokens);
    awaitable<after> handle_embeddings(request& req, const request_info& ri);
    awaitable<after> handle_responses(request& req, const request_info& ri);
    awaitable<after> stream_responses(const responses_request& rq, const request_info& ri,
                                      int chunks, int delay_ms, long long prompt_tokens,
                                      const std::string& id);
    awaitable<after> handle_wait(std::string_view query, const request_info& ri);
    awaitable<after> stream_chat(const chat_request& rq, const request_info& ri, int chunks,
                                 int delay_ms, long long prompt_tokens);

    // Writes a complete response with Content-Length in one gathered write.
    awaitable<after> reply(const request_info& ri, unsigned status, std::string_view body,
                           std::string_view content_type = "application/json",
                           std::string_view extra_headers = {});
    // Writes one SSE event as one HTTP chunk (optionally preceded by the response head and
    // followed by the terminating zero chunk), so the gateway sees events arrive separately.
    awaitable<bool> write_event(std::string_view event, bool chunked, bool last,
                                std::string_view head = {});
    // slow_head: writes `bytes` one byte per write, 1 ms apart (false: the peer is gone).
    awaitable<bool> write_slowly(std::string_view bytes);
    // cl_short / cl_long / chunk_truncate on a non-streamed answer (the body is in body_).
    awaitable<after> reply_misframed(const request_info& ri, const directives& d);
    // Waits `ms` but returns false as soon as the peer has closed or reset the connection, so
    // an abandoned stream is noticed within one chunk interval instead of at the next write.
    awaitable<bool> pause(int ms);
    // TLS only: bytes arrived during pause(); tells a close from a pipelined request.
    awaitable<bool> pause_tls_readable();
    // TLS only: sends our close_notify (not waiting for the peer's), bounded by tls_close_timeout.
    awaitable<void> tls_shutdown();
    // One write per response or SSE event. Plain: a gathered write. TLS: an SSL stream
    // writes a buffer sequence one buffer at a time (one record and one send each), so the
    // pieces are joined first to keep one record per event.
    template <std::size_t N>
    auto write(const std::array<asio::const_buffer, N>& bufs) {
        if constexpr (is_tls) {
            wbuf_.clear();
            for (const auto& b : bufs) wbuf_.append(static_cast<const char*>(b.data()), b.size());
            return asio::async_write(sock_, asio::buffer(wbuf_), use_nothrow);
        } else {
            return asio::async_write(sock_, bufs, use_nothrow);
        }
    }
    awaitable<after> reply_error(const request_info& ri, unsigned status, std::string_view message,
                                 std::string_view code) {
        // A coroutine of its own (not `return reply(...)`) so the body outlives the write.
        std::string body = error_json(message, "invalid_request_error", code);
        co_return co_await reply(ri, status, body);
    }
    awaitable<after> reply_anthropic_error(const request_info& ri, unsigned status,
                                           std::string_view type, std::string_view message,
                                           std::string_view extra_headers = {}) {
        std::string body = anthropic_error_json(type, message);
        co_return co_await reply(ri, status, body, "application/json", extra_headers);
    }
    bool authorized(const request& req) const {
        return st_.opt.api_key.empty() || req[http::field::authorization] == st_.expected_auth;
    }
    void append_head(std::string& out, const request_info& ri, unsigned status);
    void record_last(request& req);
    void reset();

    shared_state& st_;
    Stream sock_;
    asio::steady_timer timer_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    std::string head_;   // reused for response heads
    std::string body_;   // reused for response bodies / SSE events
    std::string event_;  // reused for SSE events
    std::string wbuf_;   // TLS only: a joined response / event
    std::string sni_;    // TLS only: the server name the client sent

    bool slow_head_ = false;          // the current request asked for slow_head=1
    bool burst_ = false;              // the current stream gathers its writes in burst_out_
    std::optional<int> stray_after_;  // ms after the answer to send an unasked-for one
    bool quiet_close_ = false;        // close after this answer, unannounced
    std::string burst_out_;
};

template <class Stream>
awaitable<bool> connection<Stream>::handshake() {
    timer_.expires_after(handshake_timeout);
    auto [order, hs_ec, timer_ec] =
        co_await asio::experimental::make_parallel_group(
            sock_.async_handshake(asio::ssl::stream_base::server, asio::deferred),
            timer_.async_wait(asio::deferred))
            .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
    (void)timer_ec;
    if (order[0] != 0 || hs_ec) co_return false;
    if (const char* name = SSL_get_servername(sock_.native_handle(), TLSEXT_NAMETYPE_host_name))
        sni_ = name;
    co_return true;
}

template <class Stream>
awaitable<void> connection<Stream>::serve() {
    [[maybe_unused]] bool tls_ok = true;  // TLS: the session can still take a close_notify
    for (;;) {
        // A parser is single-use; the read buffer (and any pipelined bytes in it) is kept.
        parser_.emplace();
        parser_->body_limit(body_limit);
        parser_->header_limit(header_limit);

        auto [ec, n] = co_await http::async_read_header(sock_, buffer_, *parser_, use_nothrow);
        if (!ec && parser_->get()[http::field::expect] == "100-continue") {
            // curl waits a full second for this before sending bodies larger than 1 KiB.
            static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
            std::tie(ec, n) = co_await asio::async_write(sock_, asio::buffer(cont), use_nothrow);
            if (ec) co_return;
        }
        if (!ec && !parser_->is_done())
            std::tie(ec, n) = co_await http::async_read(sock_, buffer_, *parser_, use_nothrow);
        if (ec) {
            request_info ri{11, true};
            const bool http_error =
                ec.category() == make_error_code(http::error::bad_method).category();
            if (ec == http::error::body_limit) {
                co_await reply_error(ri, 413, "request body too large", "request_too_large");
            } else if (http_error && ec != http::error::end_of_stream &&
                       ec != http::error::partial_message) {
                co_await reply_error(ri, 400, "malformed HTTP request", "bad_request");
            }
            // Not an HTTP error: a TLS failure (e.g. truncation) or a socket error.
            tls_ok = http_error;
            break;
        }

        request& req = parser_->get();
        stray_after_.reset();
        quiet_close_ = false;
        after next = co_await route(req);
        if (next == after::gone) co_return;
        if (next == after::close || quiet_close_) break;
        if (stray_after_) {
            // An answer nobody asked for, on the kept-alive connection while the client
            // holds it idle: it must never reach the client's next request.
            static constexpr std::string_view stray =
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                "content-length: 14\r\n\r\n{\"stray\":true}";
            timer_.expires_after(std::chrono::milliseconds(*stray_after_));
            co_await timer_.async_wait(use_nothrow);
            auto [wec, wn] = co_await asio::async_write(sock_, asio::buffer(stray), use_nothrow);
            if (wec) break;
            st_.counters.strays_sent.fetch_add(1, std::memory_order_relaxed);
        }
    }
    if constexpr (is_tls)
        if (tls_ok) co_await tls_shutdown();
    boost::system::error_code ignored;
    lowest().shutdown(tcp::socket::shutdown_send, ignored);
    lowest().close(ignored);
}

template <class Stream>
awaitable<void> connection<Stream>::tls_shutdown() {
    // Marking the peer's close_notify as already received makes SSL_shutdown send ours and
    // finish at once: a one-way close like the plain path's shutdown(send), rather than
    // waiting for a peer that may never answer.
    SSL* ssl = sock_.native_handle();
    SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_RECEIVED_SHUTDOWN);
    timer_.expires_after(tls_close_timeout);
    co_await asio::experimental::make_parallel_group(sock_.async_shutdown(asio::deferred),
                                                     timer_.async_wait(asio::deferred))
        .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
}

template <class Stream>
awaitable<after> connection<Stream>::route(request& req) {
    request_info ri{req.version(), !req.keep_alive()};
    slow_head_ = false;
    burst_ = false;
    burst_out_.clear();
    std::string_view target = req.target();
    std::size_t qmark = target.find('?');
    std::string_view path = target.substr(0, qmark);
    std::string_view query =
        qmark == std::string_view::npos ? std::string_view{} : target.substr(qmark + 1);

    if (req.method() == http::verb::post) {
        if (path.ends_with("/chat/completions")) co_return co_await handle_chat(req, ri);
        if (path.ends_with("/embeddings")) co_return co_await handle_embeddings(req, ri);
        if (path.ends_with("/v1/messages")) co_return co_await handle_messages(req, ri);
        if (path.ends_with("/responses")) co_return co_await handle_responses(req, ri);
        if (!authorized(req))
            co_return co_await reply_error(ri, 401, "invalid api key", "invalid_api_key");
    } else if (req.method() == http::verb::get) {
        if (path == "/mock/stats") co_return co_await reply(ri, 200, stats_json(st_.counters));
        if (path == "/mock/wait") co_return co_await handle_wait(query, ri);
        if (path == "/mock/release") {
            st_.counters.releases.fetch_add(1, std::memory_order_relaxed);
            co_return co_await reply(ri, 200, "{}");
        }
        if (path == "/mock/last") {
            std::string out;
            {
                std::lock_guard lock(st_.last_mutex);
                if (st_.last) {
                    const request& last = *st_.last;
                    out.reserve(last.body().size() + 512);
                    out += R"({"method":)";
                    append_json_string(out, last.method_string());
                    out += R"(,"target":)";
                    append_json_string(out, last.target());
                    out += R"(,"headers":{)";
                    bool first = true;
                    std::string name;
                    for (const auto& f : last) {
                        if (!first) out += ',';
                        first = false;
                        name.assign(f.name_string());
                        for (char& c : name)
                            c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                        append_json_string(out, name);
                        out += ':';
                        append_json_string(out, f.value());
                    }
                    out += R"(},"body":)";
                    append_json_string(out, last.body());
                    out += st_.last_tls ? R"(,"tls":true,"sni":)" : R"(,"tls":false,"sni":)";
                    append_json_string(out, st_.last_sni);
                    out += R"(,"prompt_tokens":)";
                    append_int(out, st_.last_prompt_tokens.load());
                    out += R"(,"completion_tokens":)";
                    append_int(out, st_.last_completion_tokens.load());
                    out += R"(,"deltas_sent":)";
                    append_int(out, st_.last_deltas_sent.load());
                    out += '}';
                }
            }
            if (out.empty())
                co_return co_await reply_error(ri, 404, "no request received yet", "not_found");
            co_return co_await reply(ri, 200, out);
        }
    }
    co_return co_await reply_error(ri, 404, "unknown endpoint", "not_found");
}

// Moves the request into /mock/last (the body can be megabytes; copying it on every request
// would show in benchmarks). The previous one is destroyed outside the lock.
template <class Stream>
void connection<Stream>::record_last(request& req) {
    std::optional<request> previous;
    {
        std::lock_guard lock(st_.last_mutex);
        previous = std::exchange(st_.last, std::move(req));
        if constexpr (is_tls) {  // a plain server leaves them false / empty
            st_.last_tls = true;
            st_.last_sni = sni_;
        }
    }
    // Only now is the request visible in /mock/last, so a /mock/wait on `requests` that
    // returns implies /mock/last already shows it.
    st_.counters.requests.fetch_add(1, std::memory_order_relaxed);
}

template <class Stream>
awaitable<after> connection<Stream>::handle_chat(request& req, const request_info& ri) {
    bool ok_auth = authorized(req);
    chat_request rq;
    bool ok = parse_chat(req.body(), rq);
    record_last(req);  // `req` is moved from after this point

    if (!ok_auth) co_return co_await reply_error(ri, 401, "invalid api key", "invalid_api_key");
    if (!ok)
        co_return co_await reply_error(ri, 400, "request body is not a valid JSON object",
                                       "invalid_json");

    const directives& d = rq.dirs;
    if (d.reset_before_head) {
        reset();  // our own fault injection: no byte of an answer, streams_* untouched
        co_return after::gone;
    }
    slow_head_ = d.slow_head;
    burst_ = d.burst;
    stray_after_ = d.stray_after;
    quiet_close_ = d.quiet_close;
    if (quiet_close_) {
        // Corked: the answer's last bytes wait for the close and leave with its FIN, in one
        // segment, so that the client's read of those bytes is the one that could see it.
        const int on = 1;
        ::setsockopt(lowest().native_handle(), IPPROTO_TCP, TCP_CORK, &on, sizeof on);
    }
    request_info out_ri = ri;
    out_ri.close = ri.close || d.close;
    int chunks = d.chunks.value_or(st_.opt.chunks);
    int delay_ms = d.delay_ms.value_or(st_.opt.delay_ms);
    long long prompt_tokens =
        d.prompt_tokens.value_or(static_cast<int>(std::max<std::size_t>(1, rq.text_bytes / 4)));
    st_.last_prompt_tokens = prompt_tokens;
    st_.last_completion_tokens = chunks;
    st_.last_deltas_sent = 0;

    if (d.status && *d.status >= 400 && *d.status <= 599) {
        if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms))
            co_return after::gone;
        co_return co_await reply(
            out_ri, static_cast<unsigned>(*d.status),
            R"({"error":{"message":"mock error","type":"server_error","param":null,)"
            R"("code":"mock_status"}})",
            "application/json", *d.status == 429 ? "retry-after: 1\r\n" : "");
    }
    if (rq.stream) co_return co_await stream_chat(rq, out_ri, chunks, delay_ms, prompt_tokens);
    if (d.reset_after) {
        reset();
        co_return after::gone;
    }
    if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms)) co_return after::gone;

    body_.clear();
    body_ += R"({"id":"chatcmpl-mock)";
    append_int(body_, static_cast<long long>(st_.next_id.fetch_add(1) + 1));
    body_ += R"(","object":"chat.completion","created":)";
    append_int(body_, static_cast<long long>(std::time(nullptr)));
    body_ += R"(,"model":)";
    append_json_string(body_, rq.model);
    body_ += R"(,"choices":[{"index":0,"message":)";
    if (rq.tools) {
        body_ += R"({"role":"assistant","content":null,"tool_calls":[{"id":"call_mock1",)"
                 R"("type":"function","function":{"name":)";
        append_json_string(body_, rq.tool_name);
        body_ += R"(,"arguments":"{\"arg\":\"value\"}"}}]},"finish_reason":"tool_calls"}])";
    } else {
        body_ += R"({"role":"assistant","content":")";
        for (int i = 0; i < chunks; ++i) {
            body_ += "word";
            append_int(body_, i);
            body_ += ' ';
        }
        body_ += R"("},"finish_reason":"stop"}])";
    }
    if (!d.no_usage) {
        body_ += R"(,"usage":)";
        append_usage(body_, prompt_tokens, chunks);
    }
    body_ += '}';
    if (d.chunk_truncate || d.cl_short.value_or(0) > 0 || d.cl_long)
        co_return co_await reply_misframed(out_ri, d);
    co_return co_await reply(out_ri, 200, body_);
}

// The answer in body_, framed wrongly on purpose: a chunk that promises more bytes than
// follow, or a Content-Length below / above the body's size. Promised bytes that never come
// are followed by a close (FIN), as from a server that died mid-answer.
template <class Stream>
awaitable<after> connection<Stream>::reply_misframed(const request_info& ri, const directives& d) {
    head_.clear();
    append_head(head_, ri, 200);
    head_ += "content-type: application/json\r\n";
    char size_line[24];
    std::size_t size_len = 0;
    after next = after::close;
    if (d.chunk_truncate) {
        head_ += "transfer-encoding: chunked\r\n";
        auto r = std::to_chars(size_line, size_line + 16, body_.size() + 64, 16);
        r.ptr[0] = '\r';
        r.ptr[1] = '\n';
        size_len = static_cast<std::size_t>(r.ptr + 2 - size_line);
    } else if (d.cl_short.value_or(0) > 0) {
        // Declares fewer bytes than it sends; the rest follows the "end" of the answer on a
        // connection that stays open (unless the request closes it).
        const auto less =
            std::min<std::size_t>(static_cast<std::size_t>(*d.cl_short), body_.size());
        head_ += "content-length: ";
        append_int(head_, static_cast<long long>(body_.size() - less));
        head_ += "\r\n";
        next = ri.close ? after::close : after::keep_alive;
    } else {
        head_ += "content-length: ";
        append_int(head_, static_cast<long long>(body_.size()) + std::max(1, *d.cl_long));
        head_ += "\r\n";
    }
    if (ri.close) head_ += "connection: close\r\n";
    head_ += "\r\n";
    if (slow_head_ && !co_await write_slowly(head_)) co_return after::gone;
    std::array<asio::const_buffer, 3> bufs{
        asio::buffer(head_.data(), slow_head_ ? 0 : head_.size()),
        asio::buffer(size_line, size_len), asio::buffer(body_)};
    auto [ec, n] = co_await write(bufs);
    if (ec) co_return after::gone;
    co_return next;
}

template <class Stream>
awaitable<after> connection<Stream>::stream_chat(const chat_request& rq, const request_info& ri,
                                                 int chunks, int delay_ms,
                                                 long long prompt_tokens) {
    const directives& d = rq.dirs;
    auto& counters = st_.counters;
    counters.streams_started.fetch_add(1, std::memory_order_relaxed);
    auto aborted = [&] {
        counters.streams_aborted.fetch_add(1, std::memory_order_relaxed);
        return after::gone;
    };
    if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms)) co_return aborted();

    // Chunked framing needs HTTP/1.1; a 1.0 client gets the raw stream ended by close.
    const bool chunked = ri.version >= 11;
    const bool close = ri.close || !chunked;

    // Every chunk shares the same prefix and suffix; build them once per stream.
    std::string prefix = d.sse_events ? "event: completion\n" : "";
    prefix += R"(data: {"id":"chatcmpl-mock)";
    append_int(prefix, static_cast<long long>(st_.next_id.fetch_add(1) + 1));
    prefix += R"(","object":"chat.completion.chunk","created":)";
    append_int(prefix, static_cast<long long>(std::time(nullptr)));
    prefix += R"(,"model":)";
    append_json_string(prefix, rq.model);
    prefix += R"(,"choices":[)";
    const bool send_usage = rq.include_usage && !d.no_usage;
    const std::string_view suffix = send_usage ? "],\"usage\":null}\n\n" : "]}\n\n";
    auto build = [&](std::string_view choice) {
        event_.assign(prefix);
        event_ += choice;
        event_ += suffix;
        return std::string_view(event_);
    };

    request_info stream_ri = ri;
    stream_ri.close = close;
    head_.clear();
    append_head(head_, stream_ri, 200);
    head_ += "content-type: text/event-stream\r\ncache-control: no-cache\r\n";
    if (chunked) head_ += "transfer-encoding: chunked\r\n";
    if (close) head_ += "connection: close\r\n";
    head_ += "\r\n";
    if (!co_await write_event(
            build(R"({"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null})"),
            chunked, false, head_))
        co_return aborted();

    // With tools, the "content" events are the three tool-call deltas; the argument string
    // {"arg":"value"} is split in two halves that concatenate back to it.
    const int events = rq.tools ? 3 : chunks;
    const int reset_at = d.reset_after ? std::min(*d.reset_after, events) : -1;
    const int error_at = d.sse_error ? std::min(*d.sse_error, events) : -1;
    const int truncate_at = d.chunk_truncate ? std::min(*d.chunk_truncate, events) : -1;
    const int hold_at = d.hold ? std::min(*d.hold, events) : -1;
    if (d.sse_huge) {
        // One event whose single data line is N bytes (not JSON), as its own chunk.
        std::string huge;
        huge.reserve(static_cast<std::size_t>(*d.sse_huge) + 8);
        huge += "data: ";
        huge.append(static_cast<std::size_t>(*d.sse_huge), 'x');
        huge += "\n\n";
        if (!co_await write_event(huge, chunked, false)) co_return aborted();
    }
    for (int i = 0;; ++i) {
        if (i == reset_at) {
            reset();  // our own fault injection: neither completed nor aborted
            co_return after::gone;
        }
        if (i == truncate_at) {
            // A chunk size line promising the whole next event, half of it, then FIN
            // (neither completed nor aborted). Without chunking: half an event, then FIN.
            const std::string_view ev =
                build(R"({"index":0,"delta":{"content":"truncated "},"finish_reason":null})");
            head_.clear();
            if (chunked) {
                char size_line[24];
                auto r = std::to_chars(size_line, size_line + 16, ev.size(), 16);
                head_.append(size_line, r.ptr);
                head_ += "\r\n";
            }
            head_.append(ev.substr(0, ev.size() / 2));
            std::array<asio::const_buffer, 1> bufs{asio::buffer(head_)};
            auto [ec, n] = co_await write(bufs);
            co_return ec ? after::gone : after::close;
        }
        if (i == error_at) {
            static constexpr std::string_view error_event =
                "data: {\"error\":{\"message\":\"mock stream error\",\"type\":\"server_error\","
                "\"code\":\"mock_sse_error\"}}\n\n";
            if (!co_await write_event(error_event, chunked, true)) co_return aborted();
            counters.streams_completed.fetch_add(1, std::memory_order_relaxed);
            co_return close ? after::close : after::keep_alive;
        }
        if (i == hold_at) {
            // Held until the next GET /mock/release (bounded: 60 s), so that a test can act
            // while the stream is certainly still running.
            const auto seen = counters.releases.load();
            counters.streams_held.fetch_add(1, std::memory_order_relaxed);
            for (int waited = 0; counters.releases.load() == seen && waited < 60'000; waited += 5)
                if (!co_await pause(5)) co_return aborted();
        }
        if (i == events) break;
        if (delay_ms > 0 && !co_await pause(delay_ms)) co_return aborted();
        if (d.comments && !co_await write_event(": ping\n\n", chunked, false)) co_return aborted();
        if (d.sse_garbage) {
            // Not JSON, a truncated usage object, a line without a colon, stray control and
            // non-UTF-8 bytes: each its own "event", all in one chunk.
            static constexpr std::string_view garbage =
                "data: not json {{{\n\n"
                "data: {\"id\":\"garbage\",\"usage\":{\"prompt_tokens\":\n\n"
                "a line without a colon\n\n"
                "\x01\x7f\xc3 stray bytes\n\n";
            if (!co_await write_event(garbage, chunked, false)) co_return aborted();
        }

        body_.clear();
        if (rq.tools) {
            if (i == 0) {
                body_ += R"({"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_mock1",)"
                         R"("type":"function","function":{"name":)";
                append_json_string(body_, rq.tool_name);
                body_ += R"(,"arguments":""}}]},"finish_reason":null})";
            } else {
                body_ += R"({"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":)";
                body_ += i == 1 ? R"("{\"arg\":")" : R"("\"value\"}")";
                body_ += R"(}}]},"finish_reason":null})";
            }
        } else {
            body_ += R"({"index":0,"delta":{"content":"word)";
            append_int(body_, i);
            body_ += R"( "},"finish_reason":null)";
            if (d.pad) {
                body_ += R"(,"pad":")";
                body_.append(static_cast<std::size_t>(*d.pad), 'p');
                body_ += '"';
            }
            body_ += '}';
        }
        if (!co_await write_event(build(body_), chunked, false)) co_return aborted();
        st_.last_deltas_sent.fetch_add(1);
    }

    if (!co_await write_event(
            build(rq.tools ? R"({"index":0,"delta":{},"finish_reason":"tool_calls"})"
                           : R"({"index":0,"delta":{},"finish_reason":"stop"})"),
            chunked, false))
        co_return aborted();
    if (send_usage) {
        event_.assign(prefix);
        event_ += R"(],"usage":)";
        append_usage(event_, prompt_tokens, chunks);
        event_ += "}\n\n";
        if (!co_await write_event(event_, chunked, false)) co_return aborted();
    }
    // done=V: the [DONE] variants seen in the wild (default: "data: [DONE]\n\n").
    static constexpr std::string_view done_variants[] = {
        "",                      // 0: no [DONE] at all, the stream just ends
        "data:[DONE]\n\n",       // 1: no space after the colon
        "data: [DONE]\r\n\r\n",  // 2: CRLF line endings
        "data: [DONE]\n",        // 3: no blank line: the body ends inside the event
    };
    const std::string_view done_event =
        d.done && *d.done < 4 ? done_variants[*d.done] : std::string_view("data: [DONE]\n\n");
    if (!done_event.empty()) {
        if (!co_await write_event(done_event, chunked, true)) co_return aborted();
    } else if (chunked) {
        if (burst_) burst_out_ += "0\r\n\r\n";
        std::array<asio::const_buffer, 1> last{burst_ ? asio::buffer(burst_out_)
                                                      : asio::buffer("0\r\n\r\n", 5)};
        auto [ec, n] = co_await write(last);
        burst_ = false;
        burst_out_.clear();
        if (ec) co_return aborted();
    }
    counters.streams_completed.fetch_add(1, std::memory_order_relaxed);
    co_return close ? after::close : after::keep_alive;
}

// Anthropic Messages API: same content, usage rule and directives as handle_chat, in
// Anthropic's request / response / SSE shapes and with Anthropic-shaped errors.
template <class Stream>
awaitable<after> connection<Stream>::handle_messages(request& req, const request_info& ri) {
    bool ok_auth = st_.opt.api_key.empty() || req["x-api-key"] == st_.opt.api_key;
    bool ok_version = req.find("anthropic-version") != req.end();
    chat_request rq;
    bool ok = parse_messages(req.body(), rq);
    record_last(req);  // `req` is moved from after this point

    if (!ok_auth)
        co_return co_await reply_anthropic_error(ri, 401, "authentication_error",
                                                 "invalid x-api-key");
    if (!ok_version)
        co_return co_await reply_anthropic_error(ri, 400, "invalid_request_error",
                                                 "anthropic-version: header is required");
    if (!ok)
        co_return co_await reply_anthropic_error(ri, 400, "invalid_request_error",
                                                 "request body is not a valid JSON object");
    if (!rq.max_tokens)
        co_return co_await reply_anthropic_error(ri, 400, "invalid_request_error",
                                                 "max_tokens: Field required");

    const directives& d = rq.dirs;
    if (d.reset_before_head) {
        reset();
        co_return after::gone;
    }
    slow_head_ = d.slow_head;
    request_info out_ri = ri;
    out_ri.close = ri.close || d.close;
    int chunks = d.chunks.value_or(st_.opt.chunks);
    int delay_ms = d.delay_ms.value_or(st_.opt.delay_ms);
    long long prompt_tokens =
        d.prompt_tokens.value_or(static_cast<int>(std::max<std::size_t>(1, rq.text_bytes / 4)));
    st_.last_prompt_tokens = prompt_tokens;
    st_.last_completion_tokens = chunks;
    st_.last_deltas_sent = 0;

    if (d.status && *d.status >= 400 && *d.status <= 599) {
        if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms))
            co_return after::gone;
        const int status = *d.status;
        std::string_view body =
            status == 429 ? R"({"type":"error","error":{"type":"rate_limit_error",)"
                            R"("message":"mock error"}})"
            : status == 529
                ? R"({"type":"error","error":{"type":"overloaded_error",)"
                  R"("message":"mock error"}})"
                : R"({"type":"error","error":{"type":"api_error","message":"mock error"}})";
        co_return co_await reply(out_ri, static_cast<unsigned>(status), body, "application/json",
                                 status == 429 ? "retry-after: 1\r\n" : "");
    }
    if (rq.stream) co_return co_await stream_messages(rq, out_ri, chunks, delay_ms, prompt_tokens);
    if (d.reset_after) {
        reset();
        co_return after::gone;
    }
    if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms)) co_return after::gone;

    body_.clear();
    body_ += R"({"id":"msg_mock)";
    append_int(body_, static_cast<long long>(st_.next_id.fetch_add(1) + 1));
    body_ += R"(","type":"message","role":"assistant","model":)";
    append_json_string(body_, rq.model);
    if (rq.tools) {
        body_ += R"(,"content":[{"type":"tool_use","id":"toolu_mock1","name":)";
        append_json_string(body_, rq.tool_name);
        body_ += R"(,"input":{"arg":"value"}}],"stop_reason":"tool_use")";
    } else {
        body_ += R"(,"content":[{"type":"text","text":")";
        for (int i = 0; i < chunks; ++i) {
            body_ += "word";
            append_int(body_, i);
            body_ += ' ';
        }
        body_ += R"("}],"stop_reason":"end_turn")";
    }
    body_ += R"(,"stop_sequence":null)";
    if (!d.no_usage) {
        body_ += R"(,"usage":{"input_tokens":)";
        append_int(body_, prompt_tokens);
        body_ += R"(,"output_tokens":)";
        append_int(body_, chunks);
        body_ += R"(,"cache_read_input_tokens":0,"cache_creation_input_tokens":0})";
    }
    body_ += '}';
    co_return co_await reply(out_ri, 200, body_);
}

// The Anthropic event sequence: message_start, content_block_start, the deltas (N text
// deltas, or with tools two input_json_delta pieces of {"arg":"value"}), content_block_stop,
// message_delta, message_stop. Directives act on the deltas as on handle_chat's content chunks.
template <class Stream>
awaitable<after> connection<Stream>::stream_messages(const chat_request& rq, const request_info& ri,
                                                     int chunks, int delay_ms,
                                                     long long prompt_tokens) {
    const directives& d = rq.dirs;
    auto& counters = st_.counters;
    counters.streams_started.fetch_add(1, std::memory_order_relaxed);
    auto aborted = [&] {
        counters.streams_aborted.fetch_add(1, std::memory_order_relaxed);
        return after::gone;
    };
    if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms)) co_return aborted();

    const bool chunked = ri.version >= 11;
    const bool close = ri.close || !chunked;

    request_info stream_ri = ri;
    stream_ri.close = close;
    head_.clear();
    append_head(head_, stream_ri, 200);
    head_ += "content-type: text/event-stream\r\ncache-control: no-cache\r\n";
    if (chunked) head_ += "transfer-encoding: chunked\r\n";
    if (close) head_ += "connection: close\r\n";
    head_ += "\r\n";

    event_.assign(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock");
    append_int(event_, static_cast<long long>(st_.next_id.fetch_add(1) + 1));
    event_ += R"(","type":"message","role":"assistant","model":)";
    append_json_string(event_, rq.model);
    event_ += R"(,"content":[],"stop_reason":null,"usage":{"input_tokens":)";
    append_int(event_, prompt_tokens);
    event_ += ",\"output_tokens\":1}}}\n\n";
    if (!co_await write_event(event_, chunked, false, head_)) co_return aborted();

    event_.assign(
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
        "\"content_block\":");
    if (rq.tools) {
        event_ += R"({"type":"tool_use","id":"toolu_mock1","name":)";
        append_json_string(event_, rq.tool_name);
        event_ += R"(,"input":{}})";
    } else {
        event_ += R"({"type":"text","text":""})";
    }
    event_ += "}\n\n";
    if (!co_await write_event(event_, chunked, false)) co_return aborted();

    const int events = rq.tools ? 2 : chunks;
    const int reset_at = d.reset_after ? std::min(*d.reset_after, events) : -1;
    const int error_at = d.sse_error ? std::min(*d.sse_error, events) : -1;
    for (int i = 0;; ++i) {
        if (i == reset_at) {
            reset();  // our own fault injection: neither completed nor aborted
            co_return after::gone;
        }
        if (i == error_at) {
            static constexpr std::string_view error_event =
                "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
                "\"message\":\"mock stream error\"}}\n\n";
            if (!co_await write_event(error_event, chunked, true)) co_return aborted();
            counters.streams_completed.fetch_add(1, std::memory_order_relaxed);
            co_return close ? after::close : after::keep_alive;
        }
        if (i == events) break;
        if (delay_ms > 0 && !co_await pause(delay_ms)) co_return aborted();
        if (d.comments &&
            !co_await write_event("event: ping\ndata: {\"type\": \"ping\"}\n\n", chunked, false))
            co_return aborted();

        event_.assign(
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\","
            "\"index\":0,\"delta\":");
        if (rq.tools) {
            event_ += i == 0 ? R"({"type":"input_json_delta","partial_json":"{\"arg\":"})"
                             : R"({"type":"input_json_delta","partial_json":"\"value\"}"})";
        } else {
            event_ += R"({"type":"text_delta","text":"word)";
            append_int(event_, i);
            event_ += R"( "})";
        }
        event_ += "}\n\n";
        if (!co_await write_event(event_, chunked, false)) co_return aborted();
        st_.last_deltas_sent.fetch_add(1);
    }

    if (!co_await write_event("event: content_block_stop\ndata: "
                              "{\"type\":\"content_block_stop\",\"index\":0}\n\n",
                              chunked, false))
        co_return aborted();
    event_.assign(
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":");
    event_ += rq.tools ? R"("tool_use")" : R"("end_turn")";
    event_ += R"(,"stop_sequence":null})";
    if (!d.no_usage) {
        event_ += R"(,"usage":{"output_tokens":)";
        append_int(event_, chunks);
        event_ += '}';
    }
    event_ += "}\n\n";
    if (!co_await write_event(event_, chunked, false)) co_return aborted();
    if (!co_await write_event("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n", chunked,
                              true))
        co_return aborted();
    counters.streams_completed.fetch_add(1, std::memory_order_relaxed);
    co_return close ? after::close : after::keep_alive;
}

namespace responses_mock {

// The Response object's usage.
void append_usage(std::string& out, long long input, long long output) {
    out += R"({"input_tokens":)";
    append_int(out, input);
    out += R"(,"input_tokens_details":{"cached_tokens":0},"output_tokens":)";
    append_int(out, output);
    out += R"(,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":)";
    append_int(out, input + output);
    out += '}';
}

std::string text_of(int chunks) {
    std::string t;
    for (int i = 0; i < chunks; ++i) {
        t += "word";
        append_int(t, i);
        t += ' ';
    }
    return t;
}

// The output item: a completed message with `text`, or a function call.
void append_item(std::string& out, const std::string& id, bool tool, std::string_view tool_name,
                 std::string_view text, bool done) {
    if (tool) {
        out += R"({"type":"function_call","id":"fc_)";
        out += id;
        out += R"(","call_id":"call_mock1","name":)";
        append_json_string(out, tool_name);
        out += R"(,"arguments":)";
        out += done ? R"("{\"arg\":\"value\"}")" : R"("")";
        out += done ? R"(,"status":"completed"})" : R"(,"status":"in_progress"})";
        return;
    }
    out += R"({"type":"message","id":"msg_)";
    out += id;
    out += done ? R"(","status":"completed","role":"assistant","content":[)"
                : R"(","status":"in_progress","role":"assistant","content":[)";
    if (done) {
        out += R"({"type":"output_text","text":)";
        append_json_string(out, text);
        out += R"(,"annotations":[]})";
    }
    out += "]}";
}

// The Response: `status` completed or in_progress; `output` empty unless done.
void append_response(std::string& out, const std::string& id, std::string_view model,
                     std::string_view status, bool tool, std::string_view tool_name,
                     std::string_view text, const long long* usage /* input, output */) {
    out += R"({"id":"resp_)";
    out += id;
    out += R"(","object":"response","created_at":)";
    append_int(out, static_cast<long long>(std::time(nullptr)));
    out += R"(,"status":")";
    out += status;
    out += R"(","model":)";
    append_json_string(out, model);
    out += R"(,"output":[)";
    if (status == "completed") append_item(out, id, tool, tool_name, text, true);
    out += R"(],"parallel_tool_calls":true,"tool_choice":"auto","tools":[],"usage":)";
    if (usage)
        append_usage(out, usage[0], usage[1]);
    else
        out += "null";
    out += '}';
}

}  // namespace responses_mock

// OpenAI Responses API (`/v1/responses`): the same content, usage rule and directives as
// handle_chat, in the Response object's shape and the Responses event stream.
template <class Stream>
awaitable<after> connection<Stream>::handle_responses(request& req, const request_info& ri) {
    bool ok_auth = authorized(req);
    responses_request rq;
    bool ok = parse_responses(req.body(), rq);
    record_last(req);
    if (!ok_auth) co_return co_await reply_error(ri, 401, "invalid api key", "invalid_api_key");
    if (!ok)
        co_return co_await reply_error(ri, 400, "request body is not a valid JSON object",
                                       "invalid_json");
    const directives& d = rq.dirs;
    if (d.reset_before_head) {
        reset();
        co_return after::gone;
    }
    slow_head_ = d.slow_head;
    request_info out_ri = ri;
    out_ri.close = ri.close || d.close;
    const int chunks = d.chunks.value_or(st_.opt.chunks);
    const int delay_ms = d.delay_ms.value_or(st_.opt.delay_ms);
    const long long prompt_tokens =
        d.prompt_tokens.value_or(static_cast<int>(std::max<std::size_t>(1, rq.text_bytes / 4)));
    st_.last_prompt_tokens = prompt_tokens;
    st_.last_completion_tokens = chunks;
    st_.last_deltas_sent = 0;
    if (d.status && *d.status >= 400 && *d.status <= 599) {
        if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms))
            co_return after::gone;
        co_return co_await reply(
            out_ri, static_cast<unsigned>(*d.status),
            R"({"error":{"message":"mock error","type":"server_error","param":null,)"
            R"("code":"mock_status"}})",
            "application/json", *d.status == 429 ? "retry-after: 1\r\n" : "");
    }
    std::string id = "mock";
    append_int(id, static_cast<long long>(st_.next_id.fetch_add(1) + 1));
    if (rq.stream)
        co_return co_await stream_responses(rq, out_ri, chunks, delay_ms, prompt_tokens, id);
    if (d.reset_after) {
        reset();
        co_return after::gone;
    }
    if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms)) co_return after::gone;
    const bool tool = rq.tools && !rq.tool_output_last;
    const long long usage[2] = {prompt_tokens, chunks};
    body_.clear();
    responses_mock::append_response(body_, id, rq.model, "completed", tool, rq.tool_name,
                                    responses_mock::text_of(chunks), d.no_usage ? nullptr : usage);
    co_return co_await reply(out_ri, 200, body_);
}

template <class Stream>
awaitable<after> connection<Stream>::stream_responses(const responses_request& rq,
                                                      const request_info& ri, int chunks,
                                                      int delay_ms, long long prompt_tokens,
                                                      const std::string& id) {
    const directives& d = rq.dirs;
    auto& counters = st_.counters;
    counters.streams_started.fetch_add(1, std::memory_order_relaxed);
    auto aborted = [&] {
        counters.streams_aborted.fetch_add(1, std::memory_order_relaxed);
        return after::gone;
    };
    if (d.head_delay_ms.value_or(0) > 0 && !co_await pause(*d.head_delay_ms)) co_return aborted();
    const bool chunked = ri.version >= 11;
    const bool close = ri.close || !chunked;
    const bool tool = rq.tools && !rq.tool_output_last;
    long long seq = 0;
    // One Responses event: "event: <type>\ndata: {"type":…,"sequence_number":N,<rest>}".
    auto build = [&](std::string_view type, std::string_view rest) {
        event_.assign("event: ");
        event_ += type;
        event_ += "\ndata: {\"type\":\"";
        event_ += type;
        event_ += "\",\"sequence_number\":";
        append_int(event_, seq++);
        if (!rest.empty()) {
            event_ += ',';
            event_ += rest;
        }
        event_ += "}\n\n";
        return std::string_view(event_);
    };
    request_info stream_ri = ri;
    stream_ri.close = close;
    head_.clear();
    append_head(head_, stream_ri, 200);
    head_ += "content-type: text/event-stream\r\ncache-control: no-cache\r\n";
    if (chunked) head_ += "transfer-encoding: chunked\r\n";
    if (close) head_ += "connection: close\r\n";
    head_ += "\r\n";
    std::string rest;
    auto response_rest = [&](std::string_view status, const long long* usage) {
        rest.assign("\"response\":");
        responses_mock::append_response(rest, id, rq.model, status, tool, rq.tool_name,
                                        responses_mock::text_of(chunks), usage);
        return std::string_view(rest);
    };
    if (!co_await write_event(build("response.created", response_rest("in_progress", nullptr)),
                              chunked, false, head_))
        co_return aborted();
    if (!co_await write_event(build("response.in_progress", response_rest("in_progress", nullptr)),
                              chunked, false))
        co_return aborted();
    rest.assign("\"output_index\":0,\"item\":");
    responses_mock::append_item(rest, id, tool, rq.tool_name, "", false);
    if (!co_await write_event(build("response.output_item.added", rest), chunked, false))
        co_return aborted();
    const std::string item_id = (tool ? "fc_" : "msg_") + id;
    if (!tool) {
        rest.assign("\"item_id\":\"" + item_id +
                    "\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\","
                    "\"text\":\"\",\"annotations\":[]}");
        if (!co_await write_event(build("response.content_part.added", rest), chunked, false))
            co_return aborted();
    }
    const int events = tool ? 2 : chunks;
    const int reset_at = d.reset_after ? std::min(*d.reset_after, events) : -1;
    const int error_at = d.sse_error ? std::min(*d.sse_error, events) : -1;
    for (int i = 0; i < events; ++i) {
        if (i == reset_at) {
            reset();
            co_return after::gone;
        }
        if (i == error_at) {
            const std::string_view ev = build(
                "error", R"("code":"server_error","message":"mock stream error","param":null)");
            if (!co_await write_event(ev, chunked, true)) co_return aborted();
            counters.streams_completed.fetch_add(1, std::memory_order_relaxed);
            co_return close ? after::close : after::keep_alive;
        }
        if (delay_ms > 0 && !co_await pause(delay_ms)) co_return aborted();
        rest.assign("\"item_id\":\"" + item_id + "\",\"output_index\":0,");
        if (tool) {
            rest += "\"delta\":";
            rest += i == 0 ? R"("{\"arg\":")" : R"("\"value\"}")";
            if (!co_await write_event(build("response.function_call_arguments.delta", rest),
                                      chunked, false))
                co_return aborted();
        } else {
            rest += "\"content_index\":0,\"delta\":\"word";
            append_int(rest, i);
            rest += " \"";
            if (!co_await write_event(build("response.output_text.delta", rest), chunked, false))
                co_return aborted();
        }
        st_.last_deltas_sent.fetch_add(1);
    }
    const std::string text = responses_mock::text_of(chunks);
    if (tool) {
        rest.assign("\"item_id\":\"" + item_id +
                    "\",\"output_index\":0,\"arguments\":\"{\\\"arg\\\":\\\"value\\\"}\"");
        if (!co_await write_event(build("response.function_call_arguments.done", rest), chunked,
                                  false))
            co_return aborted();
    } else {
        rest.assign("\"item_id\":\"" + item_id +
                    "\",\"output_index\":0,\"content_index\":0,\"text\":");
        append_json_string(rest, text);
        if (!co_await write_event(build("response.output_text.done", rest), chunked, false))
            co_return aborted();
        rest.assign("\"item_id\":\"" + item_id +
                    "\",\"output_index\":0,\"content_index\":0,\"part\":{\"type\":\"output_text\","
                    "\"text\":");
        append_json_string(rest, text);
        rest += ",\"annotations\":[]}";
        if (!co_await write_event(build("response.content_part.done", rest), chunked, false))
            co_return aborted();
    }
    rest.assign("\"output_index\":0,\"item\":");
    responses_mock::append_item(rest, id, tool, rq.tool_name, text, true);
    if (!co_await write_event(build("response.output_item.done", rest), chunked, false))
        co_return aborted();
    const long long usage[2] = {prompt_tokens, chunks};
    if (!co_await write_event(
            build("response.completed", response_rest("completed", d.no_usage ? nullptr : usage)),
            chunked, true))
        co_return aborted();
    counters.streams_completed.fetch_add(1, std::memory_order_relaxed);
    co_return close ? after::close : after::keep_alive;
}

template <class Stream>
awaitable<after> connection<Stream>::handle_embeddings(request& req, const request_info& ri) {
    bool ok_auth = authorized(req);
    embeddings_request rq;
    bool ok = parse_embeddings(req.body(), rq);
    record_last(req);

    if (!ok_auth) co_return co_await reply_error(ri, 401, "invalid api key", "invalid_api_key");
    if (!ok)
        co_return co_await reply_error(ri, 400, "request body is not a valid JSON object",
                                       "invalid_json");

    long long prompt = static_cast<long long>(std::max<std::size_t>(1, rq.input_bytes / 4));
    body_.clear();
    body_ += R"({"object":"list","data":[)";
    for (std::size_t i = 0; i < rq.items; ++i) {
        if (i) body_ += ',';
        body_ += R"({"object":"embedding","index":)";
        append_int(body_, static_cast<long long>(i));
        body_ += R"(,"embedding":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]})";
    }
    body_ += R"(],"model":)";
    append_json_string(body_, rq.model);
    body_ += R"(,"usage":{"prompt_tokens":)";
    append_int(body_, prompt);
    body_ += R"(,"total_tokens":)";
    append_int(body_, prompt);
    body_ += "}}";
    co_return co_await reply(ri, 200, body_);
}

// Polls every 5 ms on the connection's own timer: cheap, never blocks the thread, and the
// counters are bumped from other threads so there is no single place to notify from.
template <class Stream>
awaitable<after> connection<Stream>::handle_wait(std::string_view query, const request_info& ri) {
    auto* counter = st_.counters.field(query_param(query, "field"));
    if (!counter) co_return co_await reply_error(ri, 400, "unknown stats field", "invalid_field");
    long long atleast = 1;
    int timeout_ms = 5000;
    if (auto s = query_param(query, "atleast"); !s.empty()) {
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), atleast);
        (void)p;
        if (ec != std::errc{}) atleast = 1;
    }
    if (auto v = parse_int(query_param(query, "timeout_ms"))) timeout_ms = std::clamp(*v, 0, 60000);

    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (static_cast<long long>(counter->load()) < atleast) {
        if (std::chrono::steady_clock::now() >= deadline)
            co_return co_await reply(ri, 408, stats_json(st_.counters));
        timer_.expires_after(5ms);
        co_await timer_.async_wait(use_nothrow);
    }
    co_return co_await reply(ri, 200, stats_json(st_.counters));
}

template <class Stream>
void connection<Stream>::append_head(std::string& out, const request_info& ri, unsigned status) {
    out += "HTTP/1.1 ";
    append_int(out, status);
    out += ' ';
    auto reason = http::obsolete_reason(static_cast<http::status>(status));
    // Beast spells unknown codes "<unknown-status>".
    if (reason.empty() || reason.front() == '<')
        out += "Unknown";
    else
        out.append(reason.data(), reason.size());
    out += "\r\n";
    // An HTTP/1.0 client only keeps the connection if told so.
    if (ri.version < 11 && !ri.close) out += "connection: keep-alive\r\n";
}

template <class Stream>
awaitable<after> connection<Stream>::reply(const request_info& ri, unsigned status,
                                           std::string_view body, std::string_view content_type,
                                           std::string_view extra_headers) {
    head_.clear();
    append_head(head_, ri, status);
    head_ += "content-type: ";
    head_ += content_type;
    head_ += "\r\ncontent-length: ";
    append_int(head_, static_cast<long long>(body.size()));
    head_ += "\r\n";
    head_ += extra_headers;
    if (ri.close) head_ += "connection: close\r\n";
    head_ += "\r\n";
    if (slow_head_ && !co_await write_slowly(head_)) co_return after::gone;
    std::array<asio::const_buffer, 2> bufs{
        asio::buffer(head_.data(), slow_head_ ? 0 : head_.size()), asio::buffer(body)};
    auto [ec, n] = co_await write(bufs);
    if (ec) co_return after::gone;
    co_return ri.close ? after::close : after::keep_alive;
}

template <class Stream>
awaitable<bool> connection<Stream>::write_event(std::string_view event, bool chunked, bool last,
                                                std::string_view head) {
    if (slow_head_ && !head.empty()) {
        if (!co_await write_slowly(head)) co_return false;
        head = {};
    }
    char size_line[24];
    std::size_t size_len = 0;
    std::string_view trailer;
    if (chunked) {
        auto r = std::to_chars(size_line, size_line + 16, event.size(), 16);
        r.ptr[0] = '\r';
        r.ptr[1] = '\n';
        size_len = static_cast<std::size_t>(r.ptr + 2 - size_line);
        trailer = last ? "\r\n0\r\n\r\n" : "\r\n";
    }
    if (burst_) {
        // Gathered: the head, every event with its framing, then all of it in one write.
        burst_out_.append(head);
        burst_out_.append(size_line, size_len);
        burst_out_.append(event);
        burst_out_.append(trailer);
        if (!last) co_return true;
        burst_ = false;
        std::array<asio::const_buffer, 1> all{asio::buffer(burst_out_)};
        auto [ec, n] = co_await write(all);
        burst_out_.clear();
        co_return !ec;
    }
    std::array<asio::const_buffer, 4> bufs{asio::buffer(head), asio::buffer(size_line, size_len),
                                           asio::buffer(event), asio::buffer(trailer)};
    auto [ec, n] = co_await write(bufs);
    co_return !ec;
}

template <class Stream>
awaitable<bool> connection<Stream>::write_slowly(std::string_view bytes) {
    for (std::size_t i = 0; i < bytes.size(); ++i) {
        if (i > 0) {
            timer_.expires_after(1ms);
            co_await timer_.async_wait(use_nothrow);
        }
        std::array<asio::const_buffer, 1> one{asio::buffer(bytes.data() + i, 1)};
        auto [ec, n] = co_await write(one);
        if (ec) co_return false;
    }
    co_return true;
}

template <class Stream>
awaitable<bool> connection<Stream>::pause(int ms) {
    timer_.expires_after(std::chrono::milliseconds(ms));
    for (;;) {
        auto [order, timer_ec, wait_ec] =
            co_await asio::experimental::make_parallel_group(
                timer_.async_wait(asio::deferred),
                lowest().async_wait(tcp::socket::wait_read, asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        (void)timer_ec;
        if (order[0] == 0) co_return true;  // the delay elapsed
        if (wait_ec) co_return false;
        // Readable: EOF or RST means the peer is gone; real bytes are a pipelined request,
        // which we must leave alone, and then we can only sit out the rest of the delay.
        char byte;
        ssize_t r = ::recv(lowest().native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0) co_return false;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) co_return false;
        if (r > 0) {
            if constexpr (is_tls) co_return co_await pause_tls_readable();
            co_await timer_.async_wait(use_nothrow);
            co_return true;
        }
    }
}

// Over TLS the bytes may also be the peer's close_notify (TLS 1.3 encrypts alerts too, so a
// peek cannot tell) or a post-handshake message. So read them through TLS, racing the rest of
// the delay, into the request buffer, where the next read finds a pipelined request.
template <class Stream>
awaitable<bool> connection<Stream>::pause_tls_readable() {
    for (;;) {
        auto [order, timer_ec, read_ec, n] =
            co_await asio::experimental::make_parallel_group(
                timer_.async_wait(asio::deferred),
                sock_.async_read_some(buffer_.prepare(4096), asio::deferred))
                .async_wait(asio::experimental::wait_for_one(), asio::use_awaitable);
        (void)timer_ec;
        if (!read_ec) buffer_.commit(n);    // even if the timer came first: keep the bytes
        if (order[0] == 0) co_return true;  // the delay elapsed
        if (read_ec) co_return false;       // close_notify (eof), truncation, reset
        if (n > 0) {                        // a pipelined request: sit out the delay
            co_await timer_.async_wait(use_nothrow);
            co_return true;
        }
    }
}

// Aborts the connection with RST rather than FIN (SO_LINGER {1, 0} then close), which is how
// a crashed or overloaded upstream looks to the gateway.
template <class Stream>
void connection<Stream>::reset() {
    boost::system::error_code ignored;
    lowest().set_option(asio::socket_base::linger(true, 0), ignored);
    lowest().close(ignored);
}

template <class Stream>
awaitable<void> run_connection(shared_state& st, tcp::socket sock) {
    // Decrement on every exit path, including destruction of the frame at shutdown.
    struct open_guard {
        stats& s;
        ~open_guard() { s.connections_open.fetch_sub(1, std::memory_order_relaxed); }
    } guard{st.counters};
    // Built here, on the connection's own thread (for TLS this creates the SSL object).
    connection<Stream> conn(st, std::move(sock));
    if constexpr (std::is_same_v<Stream, tls_stream>)
        if (!co_await conn.handshake()) co_return;  // just drop it; nothing else is counted
    co_await conn.serve();
}

// ---------------------------------------------------------------------------------------
// Server

using context_list = std::vector<std::unique_ptr<asio::io_context>>;

awaitable<void> accept_loop(tcp::acceptor& acceptor, context_list& contexts, shared_state& st) {
    std::size_t next = 0;
    asio::steady_timer backoff(acceptor.get_executor());
    const auto serve = [&](tcp::socket sock, asio::io_context& ctx) {
        boost::system::error_code ignored;
        // Small SSE writes must leave immediately, not wait for Nagle / delayed ACK.
        sock.set_option(tcp::no_delay(true), ignored);
        st.counters.connections_accepted.fetch_add(1, std::memory_order_relaxed);
        st.counters.connections_open.fetch_add(1, std::memory_order_relaxed);
        if (st.tls)
            asio::co_spawn(ctx, run_connection<tls_stream>(st, std::move(sock)), asio::detached);
        else
            asio::co_spawn(ctx, run_connection<tcp::socket>(st, std::move(sock)), asio::detached);
    };
    boost::system::error_code nb;
    acceptor.non_blocking(true, nb);
    for (;;) {
        asio::io_context& ctx = *contexts[next];
        auto [ec, sock] = co_await acceptor.async_accept(ctx, use_nothrow);
        if (ec) {
            if (ec == asio::error::operation_aborted) co_return;
            // EMFILE and friends: back off instead of spinning on a full fd table.
            backoff.expires_after(10ms);
            co_await backoff.async_wait(use_nothrow);
            continue;
        }
        next = (next + 1) % contexts.size();
        serve(std::move(sock), ctx);
        // Then what else waits in the backlog, without a trip through the event loop per
        // connection: with thousands of streams on the loop, one accept per pass let the
        // accept queue (somaxconn) overflow under a connection storm (bench/run.sh's
        // capacity run), and the dropped handshakes waited for SYN-ACK retransmissions.
        for (int i = 0; i < 256; ++i) {
            asio::io_context& more_ctx = *contexts[next];
            tcp::socket more(more_ctx);
            boost::system::error_code aec;
            acceptor.accept(more, aec);
            if (aec) break;  // would_block: the backlog is empty (or an error the loop meets)
            next = (next + 1) % contexts.size();
            serve(std::move(more), more_ctx);
        }
    }
}

void usage(const char* argv0) {
    std::fprintf(stderr,
                 "usage: %s [--listen HOST:PORT] [--threads N] [--chunks N] [--delay-ms D] "
                 "[--api-key KEY] [--tls-cert PEM --tls-key PEM]\n",
                 argv0);
}

bool parse_options(int argc, char** argv, options& opt) {
    for (int i = 1; i < argc; ++i) {
        std::string_view arg = argv[i];
        std::string_view value;
        if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
            value = arg.substr(eq + 1);
            arg = arg.substr(0, eq);
        } else if (arg == "--help" || arg == "-h") {
            return false;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            std::fprintf(stderr, "missing value for %s\n", argv[i]);
            return false;
        }
        if (arg == "--listen") {
            auto colon = value.rfind(':');
            if (colon == std::string_view::npos) return false;
            std::string_view host = value.substr(0, colon);
            if (host.starts_with('[') && host.ends_with(']'))
                host = host.substr(1, host.size() - 2);
            opt.host = host == "localhost" ? "127.0.0.1" : std::string(host);
            auto port = parse_int(value.substr(colon + 1));
            if (!port || *port < 0 || *port > 65535) return false;
            opt.port = static_cast<unsigned short>(*port);
        } else if (arg == "--threads" || arg == "--chunks" || arg == "--delay-ms") {
            auto v = parse_int(value);
            if (!v || *v < 0) return false;
            if (arg == "--threads")
                opt.threads = std::clamp(*v, 1, 256);
            else if (arg == "--chunks")
                opt.chunks = *v;
            else
                opt.delay_ms = *v;
        } else if (arg == "--api-key") {
            opt.api_key = value;
        } else if (arg == "--tls-cert" || arg == "--tls-key") {
            if (value.empty()) return false;
            (arg == "--tls-cert" ? opt.tls_cert : opt.tls_key) = value;
        } else {
            std::fprintf(stderr, "unknown option %.*s\n", static_cast<int>(arg.size()), arg.data());
            return false;
        }
    }
    if (opt.tls_cert.empty() != opt.tls_key.empty()) {
        std::fprintf(stderr, "--tls-cert and --tls-key go together\n");
        return false;
    }
    return true;
}

// The server context for --tls-cert/--tls-key; throws boost::system::system_error.
std::unique_ptr<asio::ssl::context> make_tls_context(const options& opt) {
    namespace ssl = asio::ssl;
    auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    ctx->use_certificate_chain_file(opt.tls_cert);
    ctx->use_private_key_file(opt.tls_key, ssl::context::pem);
    if (SSL_CTX_check_private_key(ctx->native_handle()) != 1)
        throw boost::system::system_error(
            boost::system::error_code(static_cast<int>(::ERR_get_error()),
                                      asio::error::get_ssl_category()),
            "private key does not match the certificate");
    // No session tickets: nothing arrives unasked after the handshake, so a client peeking at
    // an idle pooled connection sees bytes only when the mock really closed it.
    SSL_CTX_set_options(ctx->native_handle(), SSL_OP_NO_TICKET);
    SSL_CTX_set_num_tickets(ctx->native_handle(), 0);
    return ctx;
}

int run(int argc, char** argv) {
    // Declared before the io_contexts: coroutine frames still pending at shutdown are
    // destroyed with the contexts and touch the counters on the way out.
    shared_state st;
    if (!parse_options(argc, argv, st.opt)) {
        usage(argv[0]);
        return 2;
    }
    if (!st.opt.api_key.empty()) st.expected_auth = "Bearer " + st.opt.api_key;
    if (!st.opt.tls_cert.empty()) {
        try {
            st.tls = make_tls_context(st.opt);
        } catch (const std::exception& e) {
            std::fprintf(stderr, "mock_upstream: cannot use TLS certificate %s / key %s: %s\n",
                         st.opt.tls_cert.c_str(), st.opt.tls_key.c_str(), e.what());
            return 1;
        }
    }
    std::signal(SIGPIPE, SIG_IGN);

    context_list contexts;
    for (int i = 0; i < st.opt.threads; ++i)
        contexts.push_back(std::make_unique<asio::io_context>(1));  // 1: single-threaded

    tcp::acceptor acceptor(*contexts[0]);
    try {
        tcp::endpoint ep(asio::ip::make_address(st.opt.host), st.opt.port);
        acceptor.open(ep.protocol());
        acceptor.set_option(tcp::acceptor::reuse_address(true));
        acceptor.bind(ep);
        acceptor.listen(asio::socket_base::max_listen_connections);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mock_upstream: cannot listen on %s:%u: %s\n", st.opt.host.c_str(),
                     st.opt.port, e.what());
        return 1;
    }
    // Installed before the "listening" line: a test may signal us as soon as it reads it.
    asio::signal_set signals(*contexts[0], SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) {
        for (auto& ctx : contexts) ctx->stop();
    });

    auto bound = acceptor.local_endpoint();
    std::string addr = bound.address().to_string();
    if (bound.address().is_v6()) addr = "[" + addr + "]";
    std::printf("mock_upstream listening on %s:%u\n", addr.c_str(),
                static_cast<unsigned>(bound.port()));
    std::fflush(stdout);

    asio::co_spawn(*contexts[0], accept_loop(acceptor, contexts, st), asio::detached);

    std::vector<asio::executor_work_guard<asio::io_context::executor_type>> guards;
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < contexts.size(); ++i) {
        guards.push_back(asio::make_work_guard(*contexts[i]));
        threads.emplace_back([&ctx = *contexts[i]] { ctx.run(); });
    }
    contexts[0]->run();
    for (auto& ctx : contexts) ctx->stop();
    for (auto& t : threads) t.join();
    return 0;
}

}  // namespace

}  // namespace tollgate::bench

int main(int argc, char** argv) {
    return tollgate::bench::run(argc, argv);
}
