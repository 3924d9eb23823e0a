// Operating the gateway: /metrics (valid Prometheus exposition that moves by exactly what
// was sent), the admin API behind its token, keys created/changed/revoked at run time and
// kept across a restart, config reload (refused when bad, atomic when good, never cutting
// a running stream), drain on SIGTERM, the access log (one line per request, reopened on
// SIGUSR1), no secret in any log or metric, and the x-tollgate-cost-usd header.
//
// The real gateway binary (full chain: auth, rate_limit, budget, router, usage) in front
// of the real mock upstream, with a real SQLite usage database, all on 127.0.0.1 port 0.
// Synchronisation is by event only: the gateway's log lines, a metric reaching a value,
// a file holding a line, each in a bounded poll loop; no sleep stands in for an event
// and nothing asserts on how long something took.
#define BOOST_TEST_MODULE operations_integration
#include <boost/test/data/monomorphic.hpp>
#include <boost/test/data/test_case.hpp>
#include <boost/test/unit_test.hpp>

#include <openssl/evp.h>
#include <signal.h>
#include <simdjson.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <functional>
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

using namespace tollgate::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* admin_token = "adm-ops-test-token-5150515051505150";
constexpr const char* key_rpm = "tg-test-key-rpm-ops-0123456789abcdef";
constexpr const char* key_odd = "tg-test-key-odd-ops-0123456789abcdef";
constexpr const char* key_c = "tg-test-key-c-ops-0123456789abcdef";
constexpr const char* key_d = "tg-test-key-d-ops-0123456789abcdef";
constexpr const char* wrong_key = "tg-not-a-key-at-all-0123456789abcdef";

// gpt-4o-mini's price in standard_config, USD per million tokens.
constexpr double in_price = 0.15, out_price = 0.60;

// ---------------------------------------------------------------------------------------
// Small utilities

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> out;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);)
        if (!line.empty()) out.push_back(line);
    return out;
}

std::string sha256_hex(const std::string& s) {
    unsigned char d[32];
    unsigned int len = 0;
    EVP_Digest(s.data(), s.size(), d, &len, EVP_sha256(), nullptr);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
        out += hex[d[i] >> 4];
        out += hex[d[i] & 15];
    }
    return out;
}

std::string key_line(const std::string& id_yaml, const std::string& key,
                     const std::string& more = {}) {
    return "  - id: " + id_yaml + "\n    key: " + key + "\n" + more;
}

// A chat body; `include_usage` asks for the usage chunk of a stream.
std::string chat_json(const std::string& content, bool stream = false,
                      const std::string& model = "gpt-4o-mini", bool include_usage = false) {
    std::string b = R"({"model":")" + model + R"(","messages":[{"role":"user","content":")" +
                    content + R"("}])";
    if (stream) b += R"(,"stream":true)";
    if (include_usage) b += R"(,"stream_options":{"include_usage":true})";
    return b + "}";
}

http_response chat(std::uint16_t port, const std::string& body, const std::string& key,
                   header_map extra = {}) {
    auto h = auth_headers(key);
    h.insert(h.end(), extra.begin(), extra.end());
    return http_request(port, "POST", "/v1/chat/completions", h, body);
}

struct usage_counts {
    std::uint64_t prompt = 0, completion = 0;
    bool found = false;
};

// The `usage` object of a JSON answer (or of an SSE event's JSON).
usage_counts usage_in(const std::string& json) {
    usage_counts u;
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    if (parser.parse(json).get(doc) != simdjson::SUCCESS) return u;
    simdjson::dom::object usage;
    if (doc["usage"].get_object().get(usage) != simdjson::SUCCESS) return u;
    std::uint64_t p = 0, c = 0;
    if (usage["prompt_tokens"].get_uint64().get(p) != simdjson::SUCCESS) return u;
    if (usage["completion_tokens"].get_uint64().get(c) != simdjson::SUCCESS) return u;
    u.prompt = p;
    u.completion = c;
    u.found = true;
    return u;
}

// The usage chunk of a streamed answer with include_usage.
usage_counts stream_usage(const std::string& sse_body) {
    for (const auto& ev : sse_data(sse_body))
        if (ev.find(R"("choices":[])") != std::string::npos)
            if (auto u = usage_in(ev); u.found) return u;
    return {};
}

double cost_of(const usage_counts& u, double in = in_price, double out = out_price) {
    return (static_cast<double>(u.prompt) * in + static_cast<double>(u.completion) * out) / 1e6;
}

// The content of a streamed chat answer, the events joined.
std::string stream_text(const std::vector<std::string>& events) {
    std::string text;
    for (const auto& ev : events) {
        simdjson::dom::parser parser;
        simdjson::dom::element doc;
        if (parser.parse(ev).get(doc) != simdjson::SUCCESS) continue;
        simdjson::dom::array choices;
        if (doc["choices"].get_array().get(choices) != simdjson::SUCCESS) continue;
        for (auto c : choices) {
            std::string_view s;
            if (c["delta"]["content"].get_string().get(s) == simdjson::SUCCESS) text += s;
        }
    }
    return text;
}

// "word0 word1 … word{n-1} ": what the mock streams for chunks=n.
std::string mock_words(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += "word" + std::to_string(i) + " ";
    return s;
}

// Reads a streamed body to its end.
std::string read_rest(http_connection& c) {
    std::string got;
    for (std::string piece; !(piece = c.read_body_some()).empty();) got += piece;
    return got;
}

// ---------------------------------------------------------------------------------------
// A Prometheus text exposition (format 0.0.4) parser that checks what a scraper relies on:
// HELP/TYPE lines, a TYPE before the first sample of its family, families contiguous,
// label syntax and escapes (\\ \" \n only), numbers, no duplicate series, and histograms
// whose buckets rise with `le`, are cumulative, end in +Inf == _count, and have a _sum.

using label_set = std::map<std::string, std::string>;  // unescaped values

struct sample_line {
    std::string name;
    label_set labels;
    double value = 0;
};

struct exposition {
    std::map<std::string, std::string> types;  // family → type
    std::vector<sample_line> samples;
    std::vector<std::string> errors;

    // Sum of the samples named `name` whose labels include all of `match`.
    double sum(const std::string& name, const label_set& match = {}) const {
        double total = 0;
        for (const auto& s : samples) {
            if (s.name != name) continue;
            bool ok = true;
            for (const auto& [k, v] : match) {
                const auto it = s.labels.find(k);
                if (it == s.labels.end() || it->second != v) ok = false;
            }
            if (ok) total += s.value;
        }
        return total;
    }
    // The one sample with exactly these labels.
    std::optional<double> find(const std::string& name, const label_set& labels = {}) const {
        for (const auto& s : samples)
            if (s.name == name && s.labels == labels) return s.value;
        return std::nullopt;
    }
    // Exactly these labels, 0 when the series does not exist (yet).
    double value(const std::string& name, const label_set& labels = {}) const {
        return find(name, labels).value_or(0);
    }
};

bool metric_name_char(char c, bool first) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' ||
           (!first && c >= '0' && c <= '9');
}
bool label_name_char(char c, bool first) {
    return c != ':' && metric_name_char(c, first);
}

std::optional<double> parse_value(const std::string& t) {
    if (t == "+Inf" || t == "Inf") return HUGE_VAL;
    if (t == "-Inf") return -HUGE_VAL;
    if (t == "NaN") return std::nan("");
    if (t.empty()) return std::nullopt;
    char* end = nullptr;
    const double v = std::strtod(t.c_str(), &end);
    if (end != t.c_str() + t.size()) return std::nullopt;
    return v;
}

std::string series_id(const std::string& name, const label_set& labels) {
    std::string id = name + "{";
    for (const auto& [k, v] : labels) id += k + "=" + v + '\x1f';
    return id + "}";
}

exposition parse_exposition(const std::string& text) {
    exposition ex;
    auto err = [&](std::size_t line_no, const std::string& what, const std::string& line) {
        ex.errors.push_back("line " + std::to_string(line_no) + ": " + what + ": " + line);
    };
    if (text.empty() || text.back() != '\n') ex.errors.push_back("the text does not end in \\n");

    std::set<std::string> helped, finished_families, series;
    std::string current_family;
    struct hist_group {
        std::vector<std::pair<double, double>> buckets;  // (le, count) in order
        std::optional<double> count, sum;
    };
    std::map<std::string, hist_group> hists;  // family + labels without le

    auto enter_family = [&](const std::string& family, std::size_t n, const std::string& line) {
        if (family == current_family) return;
        if (finished_families.count(family)) err(n, "family '" + family + "' not contiguous", line);
        if (!current_family.empty()) finished_families.insert(current_family);
        current_family = family;
    };

    std::istringstream in(text);
    std::size_t n = 0;
    for (std::string line; std::getline(in, line);) {
        ++n;
        if (line.empty()) continue;
        if (line[0] == '#') {
            std::istringstream words(line);
            std::string hash, kind, name;
            words >> hash >> kind >> name;
            if (hash != "#" || (kind != "HELP" && kind != "TYPE")) continue;  // a comment
            if (name.empty() || !metric_name_char(name[0], true) ||
                !std::all_of(name.begin(), name.end(),
                             [](char c) { return metric_name_char(c, false); })) {
                err(n, "bad metric name in " + kind, line);
                continue;
            }
            enter_family(name, n, line);
            if (kind == "HELP") {
                if (!helped.insert(name).second) err(n, "second HELP", line);
                // The docstring escapes only \\ and \n.
                const auto doc_at = line.find(name) + name.size();
                const std::string doc = line.substr(std::min(doc_at, line.size()));
                for (std::size_t i = 0; i < doc.size(); ++i)
                    if (doc[i] == '\\') {
                        if (i + 1 < doc.size() && (doc[i + 1] == '\\' || doc[i + 1] == 'n'))
                            ++i;
                        else
                            err(n, "bad escape in HELP", line);
                    }
            } else {
                std::string type, extra;
                words >> type >> extra;
                static const std::set<std::string> known = {"counter", "gauge", "histogram",
                                                            "summary", "untyped"};
                if (!known.count(type) || !extra.empty()) err(n, "bad TYPE", line);
                if (ex.types.count(name)) err(n, "second TYPE", line);
                ex.types[name] = type;
            }
            continue;
        }

        // name{label="value",...} value [timestamp]
        sample_line s;
        std::size_t i = 0;
        while (i < line.size() && metric_name_char(line[i], i == 0)) ++i;
        s.name = line.substr(0, i);
        if (s.name.empty()) {
            err(n, "no metric name", line);
            continue;
        }
        bool ok = true;
        if (i < line.size() && line[i] == '{') {
            ++i;
            for (;;) {
                if (i < line.size() && line[i] == '}') {
                    ++i;
                    break;
                }
                const std::size_t start = i;
                while (i < line.size() && label_name_char(line[i], i == start)) ++i;
                const std::string lname = line.substr(start, i - start);
                if (lname.empty() || i + 1 >= line.size() || line[i] != '=' || line[i + 1] != '"') {
                    ok = false;
                    break;
                }
                i += 2;
                std::string value;
                bool closed = false;
                while (i < line.size()) {
                    const char c = line[i++];
                    if (c == '"') {
                        closed = true;
                        break;
                    }
                    if (c == '\\') {
                        if (i >= line.size()) break;
                        const char e = line[i++];
                        if (e == '\\')
                            value += '\\';
                        else if (e == '"')
                            value += '"';
                        else if (e == 'n')
                            value += '\n';
                        else {
                            closed = false;
                            i = line.size();
                            break;
                        }
                    } else {
                        value += c;
                    }
                }
                if (!closed) {
                    ok = false;
                    break;
                }
                if (!s.labels.emplace(lname, value).second) {
                    err(n, "label '" + lname + "' twice", line);
                    ok = false;
                    break;
                }
                if (i < line.size() && line[i] == ',') {
                    ++i;
                    continue;
                }
                if (i < line.size() && line[i] == '}') {
                    ++i;
                    break;
                }
                ok = false;
                break;
            }
        }
        if (!ok || i >= line.size() || line[i] != ' ') {
            err(n, "bad sample syntax", line);
            continue;
        }
        std::istringstream rest(line.substr(i + 1));
        std::string value_text, timestamp, extra;
        rest >> value_text >> timestamp >> extra;
        const auto v = parse_value(value_text);
        if (!v || !extra.empty() ||
            (!timestamp.empty() &&
             timestamp.find_first_not_of("-0123456789") != std::string::npos)) {
            err(n, "bad value", line);
            continue;
        }
        s.value = *v;

        // Its family, and that family's TYPE, declared before.
        std::string family, suffix;
        if (ex.types.count(s.name)) {
            family = s.name;
        } else {
            for (const char* sfx : {"_bucket", "_sum", "_count"}) {
                const std::string x = sfx;
                if (s.name.size() > x.size() && s.name.ends_with(x) &&
                    ex.types.count(s.name.substr(0, s.name.size() - x.size()))) {
                    family = s.name.substr(0, s.name.size() - x.size());
                    suffix = x;
                }
            }
        }
        if (family.empty()) {
            err(n, "sample without a TYPE before it", line);
            continue;
        }
        enter_family(family, n, line);
        const std::string& type = ex.types[family];
        if (type == "histogram" && suffix.empty()) err(n, "histogram sample without suffix", line);
        if ((type == "counter" || type == "gauge") && !suffix.empty())
            err(n, type + " sample with a suffix", line);
        if (type == "counter" && !(s.value >= 0)) err(n, "counter below 0 or NaN", line);
        if (!series.insert(series_id(s.name, s.labels)).second) err(n, "duplicate series", line);

        if (type == "histogram") {
            label_set group = s.labels;
            group.erase("le");
            auto& h = hists[series_id(family, group)];
            if (suffix == "_bucket") {
                const auto le = s.labels.find("le");
                const auto bound = le == s.labels.end() ? std::nullopt : parse_value(le->second);
                if (!bound)
                    err(n, "bucket without a valid le", line);
                else
                    h.buckets.emplace_back(*bound, s.value);
            } else if (s.labels.count("le")) {
                err(n, "le on " + suffix, line);
            } else if (suffix == "_count") {
                h.count = s.value;
            } else {
                h.sum = s.value;
            }
        }
        ex.samples.push_back(std::move(s));
    }

    for (const auto& [id, h] : hists) {
        if (h.buckets.empty()) {
            ex.errors.push_back(id + ": histogram without buckets");
            continue;
        }
        for (std::size_t k = 1; k < h.buckets.size(); ++k) {
            if (!(h.buckets[k].first > h.buckets[k - 1].first))
                ex.errors.push_back(id + ": le not increasing");
            if (h.buckets[k].second < h.buckets[k - 1].second)
                ex.errors.push_back(id + ": bucket counts not cumulative");
        }
        if (!std::isinf(h.buckets.back().first)) ex.errors.push_back(id + ": no le=\"+Inf\"");
        if (!h.count || *h.count != h.buckets.back().second)
            ex.errors.push_back(id + ": _count missing or not the +Inf bucket");
        if (!h.sum) ex.errors.push_back(id + ": no _sum");
    }
    return ex;
}

// ---------------------------------------------------------------------------------------
// JSON objects of the admin API and the access log

struct json_doc {
    simdjson::dom::parser parser;  // owns the parsed document
    simdjson::dom::element root;
    bool ok = false;
    explicit json_doc(const std::string& text) {
        ok = parser.parse(text).get(root) == simdjson::SUCCESS;
    }
};

std::optional<std::string> json_string(simdjson::dom::element e, const char* field) {
    std::string_view s;
    if (e[field].get_string().get(s) != simdjson::SUCCESS) return std::nullopt;
    return std::string(s);
}

std::vector<std::string> json_strings(simdjson::dom::element e, const char* field) {
    std::vector<std::string> out;
    simdjson::dom::array a;
    if (e[field].get_array().get(a) != simdjson::SUCCESS) return out;
    for (auto v : a) {
        std::string_view s;
        if (v.get_string().get(s) == simdjson::SUCCESS) out.emplace_back(s);
    }
    return out;
}

// One key of GET /admin/keys.
struct listed_key {
    std::string id, source;
    std::optional<std::vector<std::string>> models;  // null = every model
    std::optional<std::uint64_t> rpm;
    bool has_created_at = false;
    std::optional<bool> revoked;
};

std::optional<std::vector<listed_key>> parse_key_list(const std::string& body) {
    json_doc d(body);
    simdjson::dom::array data;
    if (!d.ok || d.root["data"].get_array().get(data) != simdjson::SUCCESS) return std::nullopt;
    std::vector<listed_key> out;
    for (auto item : data) {
        listed_key k;
        k.id = json_string(item, "id").value_or("");
        k.source = json_string(item, "source").value_or("");
        if (!item["models"].is_null()) k.models = json_strings(item, "models");
        std::uint64_t rpm = 0;
        if (item["limits"]["rpm"].get_uint64().get(rpm) == simdjson::SUCCESS) k.rpm = rpm;
        k.has_created_at = json_string(item, "created_at").has_value();
        bool revoked = false;
        if (item["revoked"].get_bool().get(revoked) == simdjson::SUCCESS) k.revoked = revoked;
        out.push_back(std::move(k));
    }
    return out;
}

const listed_key* by_id(const std::vector<listed_key>& keys, const std::string& id) {
    for (const auto& k : keys)
        if (k.id == id) return &k;
    return nullptr;
}

// One access-log line.
struct access_line {
    std::string text;
    std::vector<std::string> keys;
    std::optional<std::string> ts, request_id, key_id, method, path, model, provider, error;
    std::int64_t status = -1, attempts = -1;
    std::optional<bool> stream;
    std::optional<double> latency_ms, ttft_ms, overhead_ms, cost_usd;
    std::optional<std::uint64_t> prompt_tokens, completion_tokens, bytes_in, bytes_out;
};

access_line parse_access_line(const std::string& text) {
    access_line a;
    a.text = text;
    simdjson::dom::parser parser;
    simdjson::dom::object obj;
    if (parser.parse(text).get_object().get(obj) != simdjson::SUCCESS) return a;
    for (auto f : obj) {
        const std::string k(f.key);
        a.keys.push_back(k);
        const auto v = f.value;
        auto str = [&](std::optional<std::string>& out) {
            std::string_view s;
            if (v.get_string().get(s) == simdjson::SUCCESS) out = std::string(s);
        };
        auto dbl = [&](std::optional<double>& out) {
            double d;
            if (v.get_double().get(d) == simdjson::SUCCESS) out = d;
        };
        auto u64 = [&](std::optional<std::uint64_t>& out) {
            std::uint64_t x;
            if (v.get_uint64().get(x) == simdjson::SUCCESS) out = x;
        };
        std::int64_t i = 0;
        bool b = false;
        if (k == "ts") str(a.ts);
        if (k == "request_id") str(a.request_id);
        if (k == "key_id") str(a.key_id);
        if (k == "method") str(a.method);
        if (k == "path") str(a.path);
        if (k == "model") str(a.model);
        if (k == "provider") str(a.provider);
        if (k == "error") str(a.error);
        if (k == "status" && v.get_int64().get(i) == simdjson::SUCCESS) a.status = i;
        if (k == "attempts" && v.get_int64().get(i) == simdjson::SUCCESS) a.attempts = i;
        if (k == "stream" && v.get_bool().get(b) == simdjson::SUCCESS) a.stream = b;
        if (k == "latency_ms") dbl(a.latency_ms);
        if (k == "ttft_ms") dbl(a.ttft_ms);
        if (k == "overhead_ms") dbl(a.overhead_ms);
        if (k == "cost_usd") dbl(a.cost_usd);
        if (k == "prompt_tokens") u64(a.prompt_tokens);
        if (k == "completion_tokens") u64(a.completion_tokens);
        if (k == "bytes_in") u64(a.bytes_in);
        if (k == "bytes_out") u64(a.bytes_out);
    }
    return a;
}

std::vector<access_line> read_access_log(const std::filesystem::path& p) {
    std::vector<access_line> out;
    for (const auto& l : lines_of(read_file(p))) out.push_back(parse_access_line(l));
    return out;
}

const access_line* line_for(const std::vector<access_line>& lines, const std::string& rid) {
    const access_line* found = nullptr;
    int n = 0;
    for (const auto& l : lines)
        if (l.request_id == rid) {
            found = &l;
            ++n;
        }
    BOOST_TEST(n == 1, "access log lines for request " << rid << ": " << n);
    return found;
}

std::string str(const std::optional<std::string>& v) {
    return v ? *v : "<null>";
}

// ---------------------------------------------------------------------------------------
// The environment: a mock, and a gateway with the full chain, an admin listener and a
// usage database (and access log, when asked) in a directory of the test's own, so that
// they outlive a gateway restart.

struct ops_env {
    std::filesystem::path dir = make_temp_dir();
    mock_upstream mock;
    std::string yaml;
    std::unique_ptr<gateway_process> gw;

    // `edit` may rewrite the finished YAML (e.g. to add a provider).
    explicit ops_env(config_options o = {}, bool access_log = false,
                     const std::function<std::string(std::string)>& edit = {}) {
        o.policies = "[auth, rate_limit, budget, router, usage]";
        if (access_log) o.server_extra += "  access_log: \"" + access_log_path().string() + "\"\n";
        o.top_extra += std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token +
                       "}\nusage: {database: \"" + (dir / "usage.db").string() + "\"}\n";
        yaml = standard_config(mock.port(), o);
        if (edit) yaml = edit(yaml);
        start();
    }
    ~ops_env() {
        gw.reset();
        std::error_code ec;
        std::filesystem::remove_all(dir, ec);
    }

    std::filesystem::path access_log_path() const { return dir / "access.log"; }
    std::uint16_t port() const { return gw->port(); }
    std::filesystem::path config_path() const { return gw->dir() / "tollgate.yaml"; }

    void start() {
        gw = std::make_unique<gateway_process>(yaml);
        gw->admin_port();
    }
    // SIGTERM, the exit judged, then a new gateway on the same config and database.
    void restart() {
        const int code = gw->stop(SIGTERM);
        check_clean_exit("tollgate", code, gw->process().output());
        start();
    }
    // Replaces the config file the running gateway reads on reload.
    void write_config(const std::string& text) const { std::ofstream(config_path()) << text; }

    http_response admin(const std::string& method, const std::string& target,
                        const std::string& body = {},
                        std::optional<std::string> token = std::string(admin_token)) {
        header_map h;
        if (token) h.emplace_back("authorization", "Bearer " + *token);
        http_connection c(gw->admin_port());
        return c.request(method, target, h, body);
    }
    std::string metrics_text() {
        auto r = http_request(gw->admin_port(), "GET", "/metrics");
        BOOST_TEST_REQUIRE(r.status == 200, "GET /metrics: " << r.status << " " << r.body);
        return r.body;
    }
    // A scrape, checked for validity.
    exposition scrape() {
        const auto text = metrics_text();
        auto ex = parse_exposition(text);
        std::string problems;
        for (const auto& err : ex.errors) problems += err + "\n";
        BOOST_TEST(ex.errors.empty(), "invalid exposition:\n"
                                          << problems << "--- text ---\n"
                                          << text);
        return ex;
    }
    // Bounded wait until a scrape satisfies `pred`; returns the last scrape.
    exposition scrape_until(const std::function<bool(const exposition&)>& pred,
                            std::chrono::milliseconds bound = 10s) {
        exposition last;
        poll_until(
            [&] {
                last = parse_exposition(metrics_text());
                return pred(last);
            },
            bound, 20ms);
        return last;
    }
    // POST /admin/keys; returns the secret (empty on failure, with the test failed).
    std::string create_key(const std::string& body) {
        auto r = admin("POST", "/admin/keys", body);
        BOOST_TEST(r.status == 201, "POST /admin/keys " << body << ": " << r.body);
        json_doc d(r.body);
        if (!d.ok) return {};
        return json_string(d.root, "key").value_or("");
    }
    std::vector<listed_key> keys() {
        auto r = admin("GET", "/admin/keys");
        BOOST_TEST_REQUIRE(r.status == 200, "GET /admin/keys: " << r.body);
        auto k = parse_key_list(r.body);
        BOOST_TEST_REQUIRE(k.has_value(), "not SPEC's shape: " << r.body);
        return *k;
    }
};

// Inserts provider `name` (OpenAI kind, at 127.0.0.1:port) into a standard config.
std::string with_provider(std::string yaml, const std::string& name, std::uint16_t port) {
    const std::string anchor = "providers:\n";
    const auto at = yaml.find(anchor);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    yaml.insert(at + anchor.size(), "  " + name +
                                        ":\n    kind: openai\n    base_url: http://127.0.0.1:" +
                                        std::to_string(port) + "/v1\n    connect_timeout: 2s\n");
    return yaml;
}

}  // namespace

// The checker itself: it must accept a valid exposition and reject what a scraper would
// reject, or test 1 proves nothing.
BOOST_AUTO_TEST_SUITE(exposition_checker)

BOOST_AUTO_TEST_CASE(accepts_valid_text_and_unescapes_label_values) {
    const auto ex = parse_exposition(
        "# HELP a_total Some \\\\ help\\n text.\n"
        "# TYPE a_total counter\n"
        "a_total{k=\"v\\\"q\\\\\\n\",z=\"\"} 1\n"
        "a_total 2.5e-06\n"
        "# a comment\n"
        "# TYPE h histogram\n"
        "h_bucket{m=\"x\",le=\"0.5\"} 1\n"
        "h_bucket{m=\"x\",le=\"1e+00\"} 1\n"
        "h_bucket{m=\"x\",le=\"+Inf\"} 2\n"
        "h_sum{m=\"x\"} 3\n"
        "h_count{m=\"x\"} 2\n"
        "# TYPE g gauge\n"
        "g NaN\n");
    BOOST_TEST(ex.errors.empty(), [&] {
        std::string s;
        for (const auto& e : ex.errors) s += e + "\n";
        return s;
    }());
    BOOST_TEST(ex.value("a_total", {{"k", "v\"q\\\n"}, {"z", ""}}) == 1.0);
    BOOST_TEST(ex.value("a_total") == 2.5e-06);
    BOOST_TEST(ex.value("h_count", {{"m", "x"}}) == 2.0);
}

const std::vector<std::string> bad_expositions = {
    "# TYPE a gauge\na 1",                                       // no final newline
    "a 1\n",                                                     // no TYPE
    "a 1\n# TYPE a gauge\n",                                     // TYPE after the sample
    "# TYPE a gauge\n# TYPE a gauge\na 1\n",                     // TYPE twice
    "# TYPE a gauges\na 1\n",                                    // unknown type
    "# TYPE a gauge\na{k=\"\\t\"} 1\n",                          // bad escape
    "# TYPE a gauge\na{k=\"v} 1\n",                              // unterminated value
    "# TYPE a gauge\na{k=v} 1\n",                                // unquoted value
    "# TYPE a gauge\na{k=\"1\",k=\"2\"} 1\n",                    // label twice
    "# TYPE a gauge\na{k=\"v\"} 1\na{k=\"v\"} 2\n",              // duplicate series
    "# TYPE a gauge\na one\n",                                   // not a number
    "# TYPE a gauge\na 1 2 3\n",                                 // trailing junk
    "# TYPE a counter\na -1\n",                                  // counter below 0
    "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 2\n",  // not contiguous
    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n",
    "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n",  // no +Inf
    "# TYPE h histogram\nh_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\n"
    "h_bucket{le=\"+Inf\"} 1\nh_sum 1\nh_count 1\n",             // le falls
    "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 1\nh_count 1\n",  // no _sum
    "# TYPE h histogram\nh_bucket 1\nh_sum 1\nh_count 1\n",      // no le
    "# TYPE h histogram\nh 1\n",                                 // no suffix
    "# HELP a bad \\t escape\n# TYPE a gauge\na 1\n",            // bad HELP escape
};

BOOST_DATA_TEST_CASE(rejects_what_a_scraper_would, boost::unit_test::data::make(bad_expositions),
                     text) {
    BOOST_TEST(!parse_exposition(text).errors.empty(), "accepted:\n" << text);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(integration)

// ---------------------------------------------------------------------------------------
// 1. /metrics

// Proves that /metrics is a valid Prometheus text exposition before and after traffic,
// and that each family moves by exactly what known requests did: requests by key, model,
// provider and status (successes, a 401, an rpm refusal, an upstream failure), tokens and
// cost from the usage the upstream returned, the rpm refusal counter, the duration
// histogram's count, upstream failures by reason; label values with \ " and a newline
// (a config key id) come out escaped.
BOOST_AUTO_TEST_CASE(metrics_are_valid_exposition_and_move_by_exactly_the_requests_made) {
    const std::uint16_t dead_port = closed_port();
    config_options o;
    o.keys_extra = key_line("team-rpm", key_rpm, "    limits: {rpm: 1}\n") +
                   key_line(R"("we\"ird\\id\nx")", key_odd);
    o.models_extra = "  dead-model:\n    targets: [{provider: dead, model: nothing}]\n";
    ops_env e(o, false,
              [&](std::string y) { return with_provider(std::move(y), "dead", dead_port); });
    const std::string odd_id = "we\"ird\\id\nx";

    const auto before = e.scrape();
    BOOST_TEST(before.types.at("tollgate_requests_total") == "counter");
    BOOST_TEST(before.types.at("tollgate_request_duration_seconds") == "histogram");
    BOOST_TEST(before.types.at("tollgate_time_to_first_token_seconds") == "histogram");
    BOOST_TEST(before.types.at("tollgate_overhead_seconds") == "histogram");
    BOOST_TEST(before.types.at("tollgate_tokens_total") == "counter");
    BOOST_TEST(before.types.at("tollgate_cost_usd_total") == "counter");
    BOOST_TEST(before.types.at("tollgate_rate_limited_total") == "counter");
    BOOST_TEST(before.types.at("tollgate_upstream_failures_total") == "counter");
    BOOST_TEST(before.types.at("tollgate_inflight_requests") == "gauge");
    BOOST_TEST(before.types.at("tollgate_upstream_connections") == "gauge");
    BOOST_TEST(before.types.at("tollgate_config_reloads_total") == "counter");
    BOOST_TEST(before.types.count("tollgate_build_info") == 1u);
    BOOST_TEST(before.types.count("tollgate_ledger_queue_depth") == 1u);
    BOOST_TEST(before.types.count("tollgate_ledger_healthy") == 1u);
    BOOST_TEST(before.sum("tollgate_build_info") == 1.0);
    BOOST_TEST(before.value("tollgate_process_resident_memory_bytes") > 0.0);
    BOOST_TEST(before.value("tollgate_process_open_fds") > 0.0);
    BOOST_TEST(before.value("tollgate_process_threads") >= 2.0);
    BOOST_TEST(before.value("tollgate_ledger_healthy") == 1.0);
    BOOST_TEST(before.value("tollgate_config_reloads_total", {{"result", "ok"}}) == 0.0);
    BOOST_TEST(before.value("tollgate_config_reloads_total", {{"result", "error"}}) == 0.0);
    const double requests_before = before.sum("tollgate_requests_total");

    // Three successes for team-a, each with its own size.
    usage_counts a_sum;
    double a_cost = 0;
    for (int chunks : {3, 5, 7}) {
        auto r = chat(e.port(),
                      chat_json("count me please " + std::to_string(chunks) +
                                " #mock chunks=" + std::to_string(chunks)),
                      client_key_a);
        BOOST_TEST(r.status == 200);
        const auto u = usage_in(r.body);
        BOOST_TEST_REQUIRE(u.found, r.body);
        BOOST_TEST(u.completion == static_cast<std::uint64_t>(chunks));
        a_sum.prompt += u.prompt;
        a_sum.completion += u.completion;
        a_cost += cost_of(u);
    }
    // A bad key.
    BOOST_TEST(chat(e.port(), chat_json("who am I"), wrong_key).status == 401);
    // rpm: 1 → the second is refused.
    BOOST_TEST(chat(e.port(), chat_json("first"), key_rpm).status == 200);
    BOOST_TEST(chat(e.port(), chat_json("second"), key_rpm).status == 429);
    // A key id that needs escaping in a label.
    BOOST_TEST(chat(e.port(), chat_json("odd one"), key_odd).status == 200);
    // A provider that refuses connections.
    auto dead = chat(e.port(), chat_json("nobody home", false, "dead-model"), client_key_a);
    BOOST_TEST(dead.status == 502);
    // A stream for team-b, with its usage chunk.
    auto s = chat(e.port(), chat_json("stream it #mock chunks=4", true, "gpt-4o-mini", true),
                  client_key_b);
    BOOST_TEST(s.status == 200);
    const auto b_usage = stream_usage(s.body);
    BOOST_TEST_REQUIRE(b_usage.found, s.body);
    BOOST_TEST(b_usage.completion == 4u);
    constexpr int sent = 9;

    // Requests are counted when they end, just after the answer went out: wait for all.
    e.scrape_until([&](const exposition& x) {
        return x.sum("tollgate_requests_total") - requests_before >= sent &&
               x.value("tollgate_inflight_requests") == 0;
    });
    const auto after = e.scrape();
    auto delta = [&](const std::string& name, const label_set& l) {
        return after.value(name, l) - before.value(name, l);
    };
    auto delta_sum = [&](const std::string& name, const label_set& l) {
        return after.sum(name, l) - before.sum(name, l);
    };

    BOOST_TEST(delta_sum("tollgate_requests_total", {}) == sent);
    BOOST_TEST(delta("tollgate_requests_total", {{"key", "team-a"},
                                                 {"model", "gpt-4o-mini"},
                                                 {"provider", "mock"},
                                                 {"status", "200"}}) == 3.0);
    BOOST_TEST(delta_sum("tollgate_requests_total", {{"status", "401"}}) == 1.0);
    BOOST_TEST(delta("tollgate_requests_total", {{"key", "team-rpm"},
                                                 {"model", "gpt-4o-mini"},
                                                 {"provider", "mock"},
                                                 {"status", "200"}}) == 1.0);
    BOOST_TEST(delta_sum("tollgate_requests_total", {{"key", "team-rpm"}, {"status", "429"}}) ==
               1.0);
    BOOST_TEST(delta("tollgate_requests_total", {{"key", odd_id},
                                                 {"model", "gpt-4o-mini"},
                                                 {"provider", "mock"},
                                                 {"status", "200"}}) == 1.0);
    BOOST_TEST(delta_sum("tollgate_requests_total",
                         {{"key", "team-a"}, {"model", "dead-model"}, {"status", "502"}}) == 1.0);
    BOOST_TEST(delta("tollgate_requests_total", {{"key", "team-b"},
                                                 {"model", "gpt-4o-mini"},
                                                 {"provider", "mock"},
                                                 {"status", "200"}}) == 1.0);

    // Tokens and cost: what the upstream reported, priced at 0.15 / 0.60 per Mtok.
    BOOST_TEST(delta("tollgate_tokens_total",
                     {{"key", "team-a"}, {"model", "gpt-4o-mini"}, {"type", "prompt"}}) ==
               static_cast<double>(a_sum.prompt));
    BOOST_TEST(delta("tollgate_tokens_total",
                     {{"key", "team-a"}, {"model", "gpt-4o-mini"}, {"type", "completion"}}) ==
               static_cast<double>(a_sum.completion));
    BOOST_TEST(
        std::fabs(delta("tollgate_cost_usd_total", {{"key", "team-a"}, {"model", "gpt-4o-mini"}}) -
                  a_cost) <= 1e-12);
    BOOST_TEST(delta("tollgate_tokens_total",
                     {{"key", "team-b"}, {"model", "gpt-4o-mini"}, {"type", "completion"}}) ==
               static_cast<double>(b_usage.completion));
    BOOST_TEST(delta("tollgate_tokens_total",
                     {{"key", "team-b"}, {"model", "gpt-4o-mini"}, {"type", "prompt"}}) ==
               static_cast<double>(b_usage.prompt));
    BOOST_TEST(
        std::fabs(delta("tollgate_cost_usd_total", {{"key", "team-b"}, {"model", "gpt-4o-mini"}}) -
                  cost_of(b_usage)) <= 1e-12);

    // Refusals and failures.
    BOOST_TEST(after.value("tollgate_rate_limited_total",
                           {{"key", "team-rpm"}, {"reason", "rpm"}}) == 1.0);
    BOOST_TEST(delta_sum("tollgate_rate_limited_total", {}) == 1.0);
    BOOST_TEST(after.value("tollgate_upstream_failures_total",
                           {{"provider", "dead"}, {"reason", "connect_error"}}) >= 1.0);
    BOOST_TEST(after.sum("tollgate_upstream_failures_total", {{"provider", "mock"}}) == 0.0);

    // Histograms: one observation per request of the model, refused ones included.
    BOOST_TEST(delta("tollgate_request_duration_seconds_count", {{"model", "gpt-4o-mini"}}) == 8.0);
    BOOST_TEST(delta("tollgate_request_duration_seconds_count", {{"model", "dead-model"}}) == 1.0);
    BOOST_TEST(delta_sum("tollgate_request_duration_seconds_count", {}) == sent);
    BOOST_TEST(delta("tollgate_request_duration_seconds_sum", {{"model", "gpt-4o-mini"}}) > 0.0);
    BOOST_TEST(delta("tollgate_time_to_first_token_seconds_count", {{"model", "gpt-4o-mini"}}) >=
               1.0);
    BOOST_TEST(delta("tollgate_overhead_seconds_count", {}) >= 1.0);

    // Gauges at rest: nothing in flight; the mock's pooled connections go back to idle.
    BOOST_TEST(after.value("tollgate_inflight_requests") == 0.0);
    BOOST_TEST(
        after.find("tollgate_upstream_connections", {{"provider", "mock"}, {"state", "idle"}})
            .has_value());
    const auto rest = e.scrape_until([](const exposition& x) {
        return x.value("tollgate_upstream_connections",
                       {{"provider", "mock"}, {"state", "active"}}) == 0;
    });
    BOOST_TEST(rest.value("tollgate_upstream_connections",
                          {{"provider", "mock"}, {"state", "active"}}) == 0.0);
    BOOST_TEST(rest.value("tollgate_upstream_connections",
                          {{"provider", "mock"}, {"state", "idle"}}) >= 1.0);
}

// ---------------------------------------------------------------------------------------
// 2. The admin token

// Proves that no admin route answers without the admin token (none, a wrong one, the
// right one not as a Bearer token, a client key) and that a refused call changed
// nothing; /metrics answers without a token on a loopback admin listener; the admin API
// is not served on the main listener.
BOOST_AUTO_TEST_CASE(no_admin_route_answers_without_the_token_but_metrics_does_on_loopback) {
    ops_env e;
    struct route {
        std::string method, target, body;
    };
    const std::vector<route> routes = {
        {"GET", "/admin/usage", ""},
        {"GET", "/admin/keys", ""},
        {"POST", "/admin/keys", R"({"id":"intruder"})"},
        {"PATCH", "/admin/keys/x", R"({"limits":{"rpm":5}})"},
        {"DELETE", "/admin/keys/x", ""},
        {"PATCH", "/admin/keys/team-a", R"({"limits":{"rpm":5}})"},
        {"POST", "/admin/reload", ""},
        {"GET", "/admin/config", ""},
        {"GET", "/admin/providers", ""},
    };
    const std::vector<std::pair<std::string, header_map>> callers = {
        {"no token", {}},
        {"wrong token", {{"authorization", "Bearer not-the-admin-token"}}},
        {"token without Bearer", {{"authorization", admin_token}}},
        {"token as Basic", {{"authorization", std::string("Basic ") + admin_token}}},
        {"client key", auth_headers(client_key_a)},
        {"token in x-api-key", {{"x-api-key", admin_token}}},
    };
    for (const auto& r : routes) {
        for (const auto& [who, headers] : callers) {
            BOOST_TEST_CONTEXT(r.method << " " << r.target << " with " << who) {
                http_connection c(e.gw->admin_port());
                auto res = c.request(r.method, r.target, headers, r.body);
                if (who == "no token")
                    BOOST_TEST(res.status == 401);
                else  // SPEC: a wrong one → 401 or 403
                    BOOST_TEST((res.status == 401 || res.status == 403), res.status);
                BOOST_TEST(res.body.find(admin_token) == std::string::npos);
                BOOST_TEST(res.body.find("\"error\"") != std::string::npos, res.body);
            }
        }
    }
    // Nothing happened: no key created, no reload attempted.
    const auto keys = e.keys();
    BOOST_TEST(by_id(keys, "intruder") == nullptr);
    BOOST_TEST(keys.size() == 2u);
    const auto m = e.scrape();
    BOOST_TEST(m.value("tollgate_config_reloads_total", {{"result", "ok"}}) == 0.0);
    BOOST_TEST(m.value("tollgate_config_reloads_total", {{"result", "error"}}) == 0.0);

    // /metrics: no token needed on loopback.
    auto metrics = http_request(e.gw->admin_port(), "GET", "/metrics");
    BOOST_TEST(metrics.status == 200);
    BOOST_TEST(metrics.header("content-type").rfind("text/plain", 0) == 0u,
               metrics.header("content-type"));
    BOOST_TEST(metrics.body.find("tollgate_requests_total") != std::string::npos);

    // The admin API is not on the main listener, token or not.
    for (const auto& r : routes) {
        auto res = http_request(e.port(), r.method, r.target,
                                {{"authorization", std::string("Bearer ") + admin_token}}, r.body);
        BOOST_TEST(res.status != 200, r.method << " " << r.target << " on the main listener");
        BOOST_TEST(res.status != 201, r.method << " " << r.target << " on the main listener");
        BOOST_TEST(res.status != 204, r.method << " " << r.target << " on the main listener");
    }
    BOOST_TEST(by_id(e.keys(), "intruder") == nullptr);
}

// Proves GET /admin/config is the running config as JSON with every secret replaced
// (admin token, provider keys, client keys, a Redis password), and GET /admin/providers
// shows a target's failures (kept across a reload), its cooldown and its end, and the pool
// and time to first byte of a healthy one.
BOOST_AUTO_TEST_CASE(admin_config_is_redacted_and_providers_show_a_target_failing_and_cooling) {
    const std::uint16_t dead_port = closed_port();
    config_options o;
    o.models_extra = "  m-down:\n    targets: [{provider: down, model: up-down}]\n";
    o.top_extra =
        "routing: {retries: 0, cooldown_after_failures: 2, cooldown: 1s}\n"
        "state: {backend: memory, redis_url: \"redis://ops:redis-pass-987@127.0.0.1:1/0\"}\n";
    ops_env e(o, false, [&](std::string y) {
        const auto at = y.find("models:\n");
        y.insert(at, "  down:\n    kind: openai\n    base_url: http://127.0.0.1:" +
                         std::to_string(dead_port) + "/v1\n    api_key: sk-down-secret-123456\n");
        return y;
    });

    const auto cfg = e.admin("GET", "/admin/config");
    BOOST_TEST(cfg.status == 200, cfg.body);
    BOOST_TEST(cfg.header("content-type") == "application/json");
    simdjson::dom::parser parser;
    simdjson::dom::element doc;
    BOOST_TEST_REQUIRE(parser.parse(cfg.body).get(doc) == simdjson::SUCCESS, cfg.body);
    for (const std::string& secret :
         {std::string(admin_token), std::string(provider_key), std::string("sk-down-secret-123456"),
          std::string(client_key_a), std::string(client_key_b), std::string("redis-pass-987")})
        BOOST_TEST(cfg.body.find(secret) == std::string::npos, "a secret in " << cfg.body);
    std::string_view v;
    BOOST_TEST((doc.at_pointer("/admin/token").get(v) == simdjson::SUCCESS && v == "***"));
    BOOST_TEST(
        (doc.at_pointer("/providers/down/api_key").get(v) == simdjson::SUCCESS && v == "***"));
    BOOST_TEST((doc.at_pointer("/keys/0/key").get(v) == simdjson::SUCCESS && v == "***"));
    BOOST_TEST((doc.at_pointer("/keys/0/id").get(v) == simdjson::SUCCESS && v == "team-a"));
    BOOST_TEST((doc.at_pointer("/state/redis_url").get(v) == simdjson::SUCCESS &&
                v == "redis://ops:***@127.0.0.1:1/0"));
    BOOST_TEST((doc.at_pointer("/routing/cooldown").get(v) == simdjson::SUCCESS && v == "1s"));
    BOOST_TEST((doc.at_pointer("/policies/3").get(v) == simdjson::SUCCESS && v == "router"));
    BOOST_TEST(cfg.body.find("\"m-down\"") != std::string::npos);

    // Providers: the dead target fails twice (502 each), then cools down for 1 s.
    struct target {
        std::int64_t failures = -1, in_flight = -1;
        bool cooling = false, until = false, ttfb = false;
        std::int64_t active = -1, idle = -1;
    };
    auto target_of = [&](const std::string& provider) {
        const auto r = e.admin("GET", "/admin/providers");
        BOOST_TEST_REQUIRE(r.status == 200, r.body);
        simdjson::dom::parser p;
        simdjson::dom::element d;
        BOOST_TEST_REQUIRE(p.parse(r.body).get(d) == simdjson::SUCCESS, r.body);
        BOOST_TEST(r.body.find(provider_key) == std::string::npos);
        target t;
        simdjson::dom::array data;
        BOOST_TEST_REQUIRE(d["data"].get(data) == simdjson::SUCCESS, r.body);
        for (simdjson::dom::element pe : data) {
            std::string_view name;
            if (pe["provider"].get(name) != simdjson::SUCCESS || name != provider) continue;
            if (pe.at_pointer("/connections/active").get(t.active)) t.active = -1;
            if (pe.at_pointer("/connections/idle").get(t.idle)) t.idle = -1;
            simdjson::dom::element te;
            BOOST_TEST_REQUIRE(pe.at_pointer("/targets/0").get(te) == simdjson::SUCCESS, r.body);
            if (te["failures_in_a_row"].get(t.failures)) t.failures = -1;
            if (te["in_flight"].get(t.in_flight)) t.in_flight = -1;
            if (te["cooling"].get(t.cooling)) t.cooling = false;
            t.until = !te["cooling_until"].is_null();
            t.ttfb = !te["ttfb_ms_avg"].is_null();
        }
        return t;
    };
    auto before = target_of("down");
    BOOST_TEST(before.failures == 0);
    BOOST_TEST(!before.cooling);
    BOOST_TEST(!before.until);
    const auto down = [&] {
        return http_request(e.port(), "POST", "/v1/chat/completions", auth_headers(client_key_a),
                            chat_body("hi", false, "m-down"));
    };
    BOOST_TEST(down().status == 502);
    BOOST_TEST(target_of("down").failures == 1);
    // A reload keeps the target's health (same model, provider, URL and upstream model):
    // the streak goes on, and the next failure is the second in a row.
    const auto reloaded = e.admin("POST", "/admin/reload");
    BOOST_TEST(reloaded.status == 200, reloaded.body);
    BOOST_TEST(target_of("down").failures == 1);
    BOOST_TEST(down().status == 502);
    const auto cooling = target_of("down");
    BOOST_TEST(cooling.cooling);
    BOOST_TEST(cooling.until);
    BOOST_TEST(cooling.in_flight == 0);
    // The cooldown ends by itself (1 s; polled, bounded).
    BOOST_TEST(poll_until([&] { return !target_of("down").cooling; }, 10s, 100ms));

    // The healthy provider: a request leaves a time to first byte and a pooled connection.
    BOOST_TEST(http_request(e.port(), "POST", "/v1/chat/completions", auth_headers(client_key_a),
                            chat_body("hi"))
                   .status == 200);
    // The attempt's end (its time to first byte, the connection back in the pool) is
    // recorded just after the client has the answer: polled.
    BOOST_TEST(poll_until([&] {
        const auto m = target_of("mock");
        return m.ttfb && m.active + m.idle >= 1;
    }));
    BOOST_TEST(target_of("mock").failures == 0);
}

// ---------------------------------------------------------------------------------------
// 3. Keys through the admin API

// Proves the admin key lifecycle: a created key works at once and is listed without its
// secret (nor its digest); PATCH changes only the fields given and a new rpm limit is
// enforced at once; ids that exist (admin or config) are 409, unknown ids 404, config
// keys cannot be changed; DELETE stops the key at once; and after a restart on the same
// database the surviving key works with its changed fields, the deleted one stays gone.
BOOST_AUTO_TEST_CASE(admin_keys_work_at_once_change_revoke_and_survive_a_restart) {
    ops_env e;
    const std::string mini = chat_json("hello from an admin key");
    const std::string other = chat_json("hello other", false, "other-model");
    static const std::regex secret_re("^tg-[A-Za-z0-9_-]{32,}$");

    // Create.
    auto created = e.admin("POST", "/admin/keys", R"({"id":"svc-1","models":["gpt-4o-mini"]})");
    BOOST_TEST_REQUIRE(created.status == 201, created.body);
    json_doc cd(created.body);
    BOOST_TEST_REQUIRE(cd.ok);
    BOOST_TEST(str(json_string(cd.root, "id")) == "svc-1");
    const std::string secret = json_string(cd.root, "key").value_or("");
    BOOST_TEST(std::regex_match(secret, secret_re), secret);

    // Works at once, within its models.
    BOOST_TEST(chat(e.port(), mini, secret).status == 200);
    BOOST_TEST(chat(e.port(), other, secret).status == 403);

    // Listed, never with its secret.
    {
        auto r = e.admin("GET", "/admin/keys");
        BOOST_TEST(r.status == 200);
        BOOST_TEST(r.body.find(secret) == std::string::npos);
        BOOST_TEST(r.body.find(secret.substr(3)) == std::string::npos);
        BOOST_TEST(r.body.find(sha256_hex(secret)) == std::string::npos);
        BOOST_TEST(r.body.find(client_key_a) == std::string::npos);
        BOOST_TEST(r.body.find(sha256_hex(client_key_a)) == std::string::npos);
        const auto keys = parse_key_list(r.body);
        BOOST_TEST_REQUIRE(keys.has_value(), r.body);
        const auto* k = by_id(*keys, "svc-1");
        BOOST_TEST_REQUIRE(k != nullptr, r.body);
        BOOST_TEST(k->source == "admin");
        BOOST_TEST(k->has_created_at);
        BOOST_TEST((k->models == std::vector<std::string>{"gpt-4o-mini"}));
        BOOST_TEST(!k->rpm.has_value());
        const auto* a = by_id(*keys, "team-a");
        BOOST_TEST_REQUIRE(a != nullptr);
        BOOST_TEST(a->source == "config");
    }

    // PATCH: the limit is enforced at once, the models are kept.
    {
        auto r = e.admin("PATCH", "/admin/keys/svc-1", R"({"limits":{"rpm":1}})");
        BOOST_TEST(r.status == 200, r.body);
        BOOST_TEST(r.body.find(secret) == std::string::npos);
        json_doc d(r.body);
        BOOST_TEST_REQUIRE(d.ok, r.body);
        BOOST_TEST(str(json_string(d.root, "id")) == "svc-1");
        BOOST_TEST((json_strings(d.root, "models") == std::vector<std::string>{"gpt-4o-mini"}));
        std::uint64_t rpm = 0;
        BOOST_TEST((d.root["limits"]["rpm"].get_uint64().get(rpm) == simdjson::SUCCESS));
        BOOST_TEST(rpm == 1u);
    }
    BOOST_TEST(chat(e.port(), mini, secret).status == 200);
    auto limited = chat(e.port(), mini, secret);
    BOOST_TEST(limited.status == 429);
    BOOST_TEST(limited.body.find("rate_limit_exceeded") != std::string::npos, limited.body);
    BOOST_TEST(chat(e.port(), other, secret).status == 403);  // models kept
    {
        const auto keys = e.keys();
        const auto* k = by_id(keys, "svc-1");
        BOOST_TEST_REQUIRE(k != nullptr);
        BOOST_TEST((k->models == std::vector<std::string>{"gpt-4o-mini"}));
        BOOST_TEST((k->rpm == std::optional<std::uint64_t>(1)));
    }

    // Conflicts and unknown ids.
    BOOST_TEST(e.admin("POST", "/admin/keys", R"({"id":"svc-1"})").status == 409);
    BOOST_TEST(e.admin("POST", "/admin/keys", R"({"id":"team-a"})").status == 409);
    BOOST_TEST(e.admin("PATCH", "/admin/keys/nope", R"({"limits":{"rpm":3}})").status == 404);
    BOOST_TEST(e.admin("DELETE", "/admin/keys/nope").status == 404);
    BOOST_TEST(e.admin("PATCH", "/admin/keys/team-a", R"({"limits":{"rpm":3}})").status == 409);
    BOOST_TEST(chat(e.port(), mini, client_key_a).status == 200);  // config key untouched

    // A second key, changed once, to outlive the restart.
    const std::string keeper =
        e.create_key(R"({"id":"svc-2","models":["gpt-4o-mini"],"limits":{"rpm":100}})");
    BOOST_TEST_REQUIRE(!keeper.empty());
    BOOST_TEST(keeper != secret);
    BOOST_TEST(e.admin("PATCH", "/admin/keys/svc-2", R"({"models":["other-model"]})").status ==
               200);
    BOOST_TEST(chat(e.port(), other, keeper).status == 200);
    BOOST_TEST(chat(e.port(), mini, keeper).status == 403);

    // DELETE: 204, and the key is refused at once, on a new connection and on one that
    // the key already used (keep-alive).
    http_connection kept(e.port());
    BOOST_TEST(kept.request("POST", "/v1/chat/completions", auth_headers(secret), mini).status ==
               429);  // known, and still limited to 1 a minute
    auto del = e.admin("DELETE", "/admin/keys/svc-1");
    BOOST_TEST(del.status == 204);
    BOOST_TEST(del.body.empty());
    auto gone = chat(e.port(), mini, secret);
    BOOST_TEST(gone.status == 401);
    BOOST_TEST(gone.body.find("invalid_api_key") != std::string::npos, gone.body);
    BOOST_TEST(kept.request("POST", "/v1/chat/completions", auth_headers(secret), mini).status ==
               401);
    BOOST_TEST(by_id(e.keys(), "svc-1") == nullptr);
    BOOST_TEST(e.admin("DELETE", "/admin/keys/svc-1").status == 404);

    // Restart on the same config and database.
    e.restart();
    BOOST_TEST(chat(e.port(), other, keeper).status == 200);
    BOOST_TEST(chat(e.port(), mini, keeper).status == 403);
    BOOST_TEST(chat(e.port(), mini, secret).status == 401);
    const auto keys = e.keys();
    BOOST_TEST(by_id(keys, "svc-1") == nullptr);
    const auto* k = by_id(keys, "svc-2");
    BOOST_TEST_REQUIRE(k != nullptr);
    BOOST_TEST(k->source == "admin");
    BOOST_TEST(k->has_created_at);
    BOOST_TEST((k->models == std::vector<std::string>{"other-model"}));
    BOOST_TEST((k->rpm == std::optional<std::uint64_t>(100)));
    // The id is still taken, the deleted one is free again.
    BOOST_TEST(e.admin("POST", "/admin/keys", R"({"id":"svc-2"})").status == 409);
    const std::string again = e.create_key(R"({"id":"svc-1"})");
    BOOST_TEST(!again.empty());
    BOOST_TEST(again != secret);
    BOOST_TEST(chat(e.port(), mini, secret).status == 401);  // the old secret stays dead
    BOOST_TEST(chat(e.port(), mini, again).status == 200);
}

// Proves that a leaked config-file key is revoked at once by DELETE (204), listed with
// "revoked": true, stays refused after a restart, and works again only when the config
// gives its id another secret; PATCH of a config key stays 409; the other keys go on.
BOOST_AUTO_TEST_CASE(a_config_key_is_revoked_at_once_and_stays_revoked_until_its_secret_changes) {
    ops_env e;
    const std::string mini = chat_json("hello from a config key");
    BOOST_TEST_REQUIRE(chat(e.port(), mini, client_key_a).status == 200);
    http_connection kept(e.port());
    BOOST_TEST(
        kept.request("POST", "/v1/chat/completions", auth_headers(client_key_a), mini).status ==
        200);

    auto del = e.admin("DELETE", "/admin/keys/team-a");
    BOOST_TEST(del.status == 204, del.body);
    BOOST_TEST(chat(e.port(), mini, client_key_a).status == 401);
    BOOST_TEST(
        kept.request("POST", "/v1/chat/completions", auth_headers(client_key_a), mini).status ==
        401);  // also on a connection the key already used
    BOOST_TEST(chat(e.port(), mini, client_key_b).status == 200);       // the others go on
    BOOST_TEST(e.admin("DELETE", "/admin/keys/team-a").status == 204);  // again: still revoked
    BOOST_TEST(e.admin("PATCH", "/admin/keys/team-a", R"({"limits":{"rpm":3}})").status == 409);
    auto keys = e.keys();
    const auto* a = by_id(keys, "team-a");
    BOOST_TEST_REQUIRE(a != nullptr);
    BOOST_TEST(a->source == "config");
    BOOST_TEST(a->revoked.value_or(false));
    const auto* b = by_id(keys, "team-b");
    BOOST_TEST_REQUIRE(b != nullptr);
    BOOST_TEST(b->revoked.value_or(true) == false);

    // Restarts do not bring it back.
    e.restart();
    BOOST_TEST(chat(e.port(), mini, client_key_a).status == 401);
    keys = e.keys();
    BOOST_TEST(by_id(keys, "team-a")->revoked.value_or(false));

    // A new secret for the id in the config (a reload is enough) works; the old one not.
    const std::string fresh = "tg-test-key-a-rotated-0123456789ab";
    auto yaml = e.yaml;
    yaml.replace(yaml.find(client_key_a), std::string(client_key_a).size(), fresh);
    e.write_config(yaml);
    BOOST_TEST(e.admin("POST", "/admin/reload").status == 200);
    BOOST_TEST(chat(e.port(), mini, fresh).status == 200);
    BOOST_TEST(chat(e.port(), mini, client_key_a).status == 401);
    keys = e.keys();
    BOOST_TEST(by_id(keys, "team-a")->revoked.value_or(true) == false);
}

// ---------------------------------------------------------------------------------------
// 4. Reload

// Proves that a config failing --check (an unknown key; broken YAML) is refused by POST
// /admin/reload with a 400 naming the problem while the old config keeps serving, and
// counted as reloads_total{result="error"}; that a good one sent by SIGHUP is swapped in
// (a new key works, a removed key stops, others are untouched) and counted as "ok".
BOOST_AUTO_TEST_CASE(bad_reload_keeps_the_old_config_and_good_sighup_reload_swaps_keys) {
    config_options o;
    o.keys_extra = key_line("team-c", key_c);
    ops_env e(o);
    const std::string good = e.yaml;
    const std::string b = chat_json("still there?");
    BOOST_TEST(chat(e.port(), b, key_c).status == 200);
    BOOST_TEST(chat(e.port(), b, key_d).status == 401);

    // An unknown top-level key.
    e.write_config(good + "bogus_section: 1\n");
    auto r1 = e.admin("POST", "/admin/reload");
    BOOST_TEST(r1.status == 400);
    BOOST_TEST(r1.body.find("bogus_section") != std::string::npos, r1.body);
    BOOST_TEST(r1.body.find("\"error\"") != std::string::npos, r1.body);
    BOOST_TEST(r1.body.find(provider_key) == std::string::npos);
    // Broken YAML.
    e.write_config(good + "models: [unclosed\n");
    auto r2 = e.admin("POST", "/admin/reload");
    BOOST_TEST(r2.status == 400);
    BOOST_TEST(r2.body.find("\"error\"") != std::string::npos, r2.body);
    BOOST_TEST(r2.body.find(provider_key) == std::string::npos);

    // The old config still serves.
    BOOST_TEST(chat(e.port(), b, key_c).status == 200);
    BOOST_TEST(chat(e.port(), b, client_key_a).status == 200);
    {
        const auto m = e.scrape();
        BOOST_TEST(m.value("tollgate_config_reloads_total", {{"result", "error"}}) == 2.0);
        BOOST_TEST(m.value("tollgate_config_reloads_total", {{"result", "ok"}}) == 0.0);
    }

    // A good config by SIGHUP: team-c out, team-d in.
    std::string next = good;
    const std::string c_line = key_line("team-c", key_c);
    const auto at = next.find(c_line);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    next.replace(at, c_line.size(), key_line("team-d", key_d));
    e.write_config(next);
    // A keep-alive connection that team-c used before the reload.
    http_connection kept(e.port());
    BOOST_TEST(kept.request("POST", "/v1/chat/completions", auth_headers(key_c), b).status == 200);
    // That request has ended inside the gateway too: its connection now waits, idle.
    e.scrape_until([](const exposition& x) { return x.value("tollgate_inflight_requests") == 0; });
    e.gw->process().signal(SIGHUP);
    const auto m = e.scrape_until([](const exposition& x) {
        return x.value("tollgate_config_reloads_total", {{"result", "ok"}}) >= 1;
    });
    BOOST_TEST(m.value("tollgate_config_reloads_total", {{"result", "ok"}}) == 1.0);
    BOOST_TEST(m.value("tollgate_config_reloads_total", {{"result", "error"}}) == 2.0);
    BOOST_TEST(chat(e.port(), b, key_d).status == 200);
    BOOST_TEST(chat(e.port(), b, key_c).status == 401);
    BOOST_TEST(chat(e.port(), b, client_key_a).status == 200);
    // The next request on the old connection is judged by the new config too: it was not
    // in flight during the reload. (A session that picks its config snapshot before it
    // waits for the next request serves this one on the old config: the removed key
    // gets a 200.)
    BOOST_TEST(kept.request("POST", "/v1/chat/completions", auth_headers(key_c), b).status == 401,
               "a key removed by the reload was still served on a kept-alive connection");
    BOOST_TEST(kept.request("POST", "/v1/chat/completions", auth_headers(key_d), b).status == 200);
    const auto keys = e.keys();
    BOOST_TEST(by_id(keys, "team-c") == nullptr);
    BOOST_TEST_REQUIRE(by_id(keys, "team-d") != nullptr);
    BOOST_TEST(by_id(keys, "team-d")->source == "config");

    // The same file again through the admin API.
    auto r3 = e.admin("POST", "/admin/reload");
    BOOST_TEST(r3.status == 200);
    BOOST_TEST(r3.body.find("\"reloaded\"") != std::string::npos, r3.body);
    BOOST_TEST(e.scrape().value("tollgate_config_reloads_total", {{"result", "ok"}}) == 2.0);
    // The process is still the one we started (SIGHUP did not end it).
    BOOST_TEST(!e.gw->process().wait_exit(0ms).has_value());
}

// Proves that a reload while a long stream runs does not cut it: every chunk and [DONE]
// arrive; requests after the reload use the new config (a new price), and the stream,
// which began before it, is accounted on the old one.
BOOST_AUTO_TEST_CASE(reload_during_a_long_stream_does_not_cut_it) {
    ops_env e;
    constexpr int chunks = 40;
    http_connection c(e.port(), 30s);
    // Held by the mock after its first chunk until released: running at the reload by
    // construction, not by timing.
    c.send_request("POST", "/v1/chat/completions", auth_headers(),
                   chat_json("long one #mock chunks=40 hold=1", true, "gpt-4o-mini", true));
    const auto head = c.read_head();
    BOOST_TEST_REQUIRE(head.status == 200);
    std::string got;
    while (got.find("word0") == std::string::npos) {
        const auto piece = c.read_body_some();
        BOOST_REQUIRE(!piece.empty());
        got += piece;
    }

    // Double the price of gpt-4o-mini and reload.
    std::string next = e.yaml;
    const std::string price = "price: {input_per_mtok: 0.15, output_per_mtok: 0.60}";
    const auto at = next.find(price);
    BOOST_TEST_REQUIRE(at != std::string::npos);
    next.replace(at, price.size(), "price: {input_per_mtok: 0.30, output_per_mtok: 1.20}");
    e.write_config(next);
    auto r = e.admin("POST", "/admin/reload");
    BOOST_TEST(r.status == 200, r.body);
    BOOST_TEST(r.body.find("\"reloaded\"") != std::string::npos, r.body);
    BOOST_TEST(e.mock.stats().find(R"("streams_completed":0)") != std::string::npos,
               e.mock.stats());

    // A new request is priced by the new config.
    auto fresh = chat(e.port(), chat_json("after the reload"), client_key_a);
    BOOST_TEST(fresh.status == 200);
    const auto fu = usage_in(fresh.body);
    BOOST_TEST_REQUIRE(fu.found);
    const auto cost_header = fresh.header("x-tollgate-cost-usd");
    BOOST_TEST_REQUIRE(!cost_header.empty());
    BOOST_TEST(std::fabs(std::stod(cost_header) - cost_of(fu, 0.30, 1.20)) <= 1e-9, cost_header);

    // The stream runs to its end once the mock lets it go.
    BOOST_TEST(http_request(e.mock.port(), "GET", "/mock/release").status == 200);
    got += read_rest(c);
    const auto events = sse_data(got);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    BOOST_TEST(stream_text(events) == mock_words(chunks));
    for (const auto& ev : events) BOOST_TEST(ev.find("\"error\"") == std::string::npos, ev);
    const auto su = stream_usage(got);
    BOOST_TEST_REQUIRE(su.found, got);
    BOOST_TEST(su.completion == static_cast<std::uint64_t>(chunks));

    // Accounting: the stream on the old price, the new request on the new one.
    const auto m = e.scrape_until([](const exposition& x) {
        return x.value("tollgate_requests_total", {{"key", "team-a"},
                                                   {"model", "gpt-4o-mini"},
                                                   {"provider", "mock"},
                                                   {"status", "200"}}) >= 2;
    });
    BOOST_TEST(m.value("tollgate_requests_total", {{"key", "team-a"},
                                                   {"model", "gpt-4o-mini"},
                                                   {"provider", "mock"},
                                                   {"status", "200"}}) == 2.0);
    const double expected = cost_of(su, in_price, out_price) + cost_of(fu, 0.30, 1.20);
    const double counted =
        m.value("tollgate_cost_usd_total", {{"key", "team-a"}, {"model", "gpt-4o-mini"}});
    BOOST_TEST(std::fabs(counted - expected) <= 1e-12,
               "cost counted " << counted << ", expected " << expected << " (stream at "
                               << cost_of(su) << " old price, " << cost_of(su, 0.30, 1.20)
                               << " new price)");
}

// ---------------------------------------------------------------------------------------
// 5. Drain

// Proves that SIGTERM during a long stream stops new connections but lets the stream
// finish (every chunk, then [DONE]) within drain_timeout, that the request is accounted
// (its access-log line is written), and that the gateway then exits 0.
BOOST_AUTO_TEST_CASE(sigterm_during_a_long_stream_lets_it_finish_then_exits_zero) {
    ops_env e({.server_extra = "  drain_timeout: 30s\n"}, true);
    constexpr int chunks = 30;
    http_connection c(e.port(), 30s);
    c.send_request("POST", "/v1/chat/completions", auth_headers(),
                   chat_json("drain me #mock chunks=30 delay_ms=50", true));
    const auto head = c.read_head();
    BOOST_TEST_REQUIRE(head.status == 200);
    const std::string rid = head.header("x-request-id");
    std::string got;
    while (got.find("word0") == std::string::npos) {
        const auto piece = c.read_body_some();
        BOOST_REQUIRE(!piece.empty());
        got += piece;
    }

    const auto from = e.gw->process().output().size();
    e.gw->process().signal(SIGTERM);
    BOOST_TEST(e.gw->process().wait_for_line("draining", 10s, from).has_value());
    // No new connection is taken while draining.
    bool refused = false;
    try {
        http_connection late(e.port(), 5s);
        auto r = late.request("POST", "/v1/chat/completions", auth_headers(), chat_json("late"));
        refused = r.status == 503;
    } catch (const std::exception&) {
        refused = true;
    }
    BOOST_TEST(refused);

    got += read_rest(c);
    const auto events = sse_data(got);
    BOOST_REQUIRE(!events.empty());
    BOOST_TEST(events.back() == "[DONE]");
    BOOST_TEST(stream_text(events) == mock_words(chunks));
    BOOST_TEST((e.gw->process().wait_exit(40s) == std::optional<int>(0)), e.gw->process().output());

    const auto lines = read_access_log(e.access_log_path());
    const auto* l = line_for(lines, rid);
    BOOST_TEST_REQUIRE(l != nullptr);
    BOOST_TEST(l->status == 200);
    BOOST_TEST((l->stream == true));
    BOOST_TEST((l->completion_tokens == std::optional<std::uint64_t>(chunks)), l->text);
    BOOST_TEST(!l->error.has_value(), l->text);
}

// ---------------------------------------------------------------------------------------
// 6. The access log, and no secret anywhere

// Proves that the access log has one JSON line per API request with the documented
// fields and right values (a success, a stream, a 401, an admin-created key), that no
// secret (client keys, the provider key, the admin token, an admin-created key, a wrong
// key) appears in the access log, in /metrics or in the gateway's own output, and that
// SIGUSR1 reopens the log: after a rename, new lines go to a new file at the old path.
BOOST_AUTO_TEST_CASE(access_log_has_a_line_per_request_no_secret_anywhere_and_reopens) {
    ops_env e({}, true);
    const std::string admin_secret = e.create_key(R"({"id":"svc-log"})");
    BOOST_TEST_REQUIRE(!admin_secret.empty());

    struct sent {
        http_response r;
        std::string body, key_id, model;
        bool stream;
    };
    std::vector<sent> reqs;
    auto send = [&](const std::string& body, const header_map& h, const std::string& key_id,
                    const std::string& model, bool stream) {
        auto r = http_request(e.port(), "POST", "/v1/chat/completions", h, body);
        reqs.push_back({std::move(r), body, key_id, model, stream});
    };
    const std::string b1 = chat_json("log me #mock chunks=3");
    send(b1, auth_headers(client_key_a), "team-a", "gpt-4o-mini", false);
    const std::string b2 = chat_json("log my stream #mock chunks=4", true, "gpt-4o-mini", true);
    send(b2, {{"x-api-key", client_key_a}}, "team-a", "gpt-4o-mini", true);
    const std::string b3 = chat_json("wrong key");
    send(b3, auth_headers(wrong_key), "", "gpt-4o-mini", false);
    const std::string b4 = chat_json("admin key #mock chunks=2", false, "other-model");
    send(b4, {{"api-key", admin_secret}}, "svc-log", "other-model", false);
    const std::string b5 = chat_json("team b here");
    send(b5, auth_headers(client_key_b), "team-b", "gpt-4o-mini", false);
    BOOST_TEST(reqs[0].r.status == 200);
    BOOST_TEST(reqs[1].r.status == 200);
    BOOST_TEST(reqs[2].r.status == 401);
    BOOST_TEST(reqs[3].r.status == 200);
    BOOST_TEST(reqs[4].r.status == 200);
    // An admin call with a wrong token, and one with a secret in the path, for the log.
    BOOST_TEST(e.admin("GET", "/admin/keys", {}, std::string(client_key_b)).status == 401);
    BOOST_TEST(e.admin("DELETE", std::string("/admin/keys/") + client_key_a).status == 404);

    // Lines are written as requests end, just after the answer: wait for all five.
    BOOST_TEST(poll_until([&] { return lines_of(read_file(e.access_log_path())).size() >= 5; }));
    const auto lines = read_access_log(e.access_log_path());
    BOOST_TEST(lines.size() == 5u);
    const std::vector<std::string> fields = {
        "ts",         "request_id", "key_id",      "method",        "path",
        "model",      "provider",   "status",      "stream",        "attempts",
        "latency_ms", "ttft_ms",    "overhead_ms", "prompt_tokens", "completion_tokens",
        "cost_usd",   "bytes_in",   "bytes_out",   "error"};
    static const std::regex ts_re(R"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z)");
    for (const auto& s : reqs) {
        const std::string rid = s.r.header("x-request-id");
        BOOST_TEST_REQUIRE(!rid.empty());
        const auto* l = line_for(lines, rid);
        if (!l) continue;
        BOOST_TEST_CONTEXT("line: " << l->text) {
            auto got = l->keys, want = fields;
            std::sort(got.begin(), got.end());
            std::sort(want.begin(), want.end());
            BOOST_TEST(got == want, boost::test_tools::per_element());
            BOOST_TEST(std::regex_match(str(l->ts), ts_re));
            BOOST_TEST(str(l->method) == "POST");
            BOOST_TEST(str(l->path) == "/v1/chat/completions");
            BOOST_TEST(str(l->model) == s.model);
            BOOST_TEST(l->status == s.r.status);
            BOOST_TEST((l->stream == s.stream));
            BOOST_TEST((l->bytes_in == std::optional<std::uint64_t>(s.body.size())));
            BOOST_TEST(l->bytes_out.value_or(0) > 0u);
            BOOST_TEST(l->latency_ms.value_or(-1) >= 0.0);
            if (s.r.status == 200) {
                BOOST_TEST(str(l->key_id) == s.key_id);
                BOOST_TEST(str(l->provider) == "mock");
                BOOST_TEST(l->attempts == 1);
                BOOST_TEST(!l->error.has_value());
                const auto u = s.stream ? stream_usage(s.r.body) : usage_in(s.r.body);
                BOOST_TEST_REQUIRE(u.found);
                BOOST_TEST((l->prompt_tokens == std::optional<std::uint64_t>(u.prompt)));
                BOOST_TEST((l->completion_tokens == std::optional<std::uint64_t>(u.completion)));
                if (s.model == "gpt-4o-mini")
                    BOOST_TEST(std::fabs(l->cost_usd.value_or(-1) - cost_of(u)) <= 1e-12);
                if (s.stream) BOOST_TEST(l->ttft_ms.has_value());
                BOOST_TEST(l->bytes_out.value_or(0) >= s.r.body.size());
            } else {
                BOOST_TEST(!l->key_id.has_value());
                BOOST_TEST(str(l->error) == "invalid_api_key");
                BOOST_TEST(!l->prompt_tokens.has_value());
                BOOST_TEST(!l->cost_usd.has_value());
            }
        }
    }

    // No secret in the access log, the metrics or the gateway's output.
    const std::string metrics = e.metrics_text();
    const std::string output = e.gw->process().output();
    const std::string log_text = read_file(e.access_log_path());
    for (const std::string& secret :
         {std::string(client_key_a), std::string(client_key_b), std::string(provider_key),
          std::string(admin_token), admin_secret, std::string(wrong_key)}) {
        BOOST_TEST(log_text.find(secret) == std::string::npos, "access log holds " << secret);
        BOOST_TEST(metrics.find(secret) == std::string::npos, "/metrics holds " << secret);
        BOOST_TEST(output.find(secret) == std::string::npos, "gateway output holds " << secret);
    }
    BOOST_TEST(output.find(admin_secret.substr(3)) == std::string::npos);

    // SIGUSR1 after a rotation: new lines go to a new file at the configured path.
    const auto rotated = e.dir / "access.log.1";
    std::filesystem::rename(e.access_log_path(), rotated);
    const auto from = e.gw->process().output().size();
    e.gw->process().signal(SIGUSR1);
    const auto reopened = e.gw->process().wait_for_line("access log reopened", 10s, from);
    BOOST_TEST_REQUIRE(reopened.has_value(), e.gw->process().output());
    auto after = chat(e.port(), chat_json("after the rotation"), client_key_a);
    BOOST_TEST(after.status == 200);
    const std::string rid = after.header("x-request-id");
    BOOST_TEST(poll_until([&] {
        return std::filesystem::exists(e.access_log_path()) &&
               !lines_of(read_file(e.access_log_path())).empty();
    }));
    const auto fresh = read_access_log(e.access_log_path());
    BOOST_TEST(fresh.size() == 1u);
    BOOST_TEST(line_for(fresh, rid) != nullptr);
    const auto old_lines = read_access_log(rotated);
    BOOST_TEST(old_lines.size() == 5u);
    for (const auto& l : old_lines) BOOST_TEST(str(l.request_id) != rid);
    BOOST_TEST(!e.gw->process().wait_exit(0ms).has_value());  // SIGUSR1 did not end it
}

// ---------------------------------------------------------------------------------------
// 7. x-tollgate-cost-usd

// Proves that a non-streamed answer of a priced model carries x-tollgate-cost-usd equal
// to its usage at the model's price, and that an unpriced model's answer, a streamed
// answer and a refused request carry none; x-tollgate-overhead-ms is on the answers.
BOOST_AUTO_TEST_CASE(cost_header_matches_the_usage_only_on_non_streamed_priced_answers) {
    ops_env e;
    for (int chunks : {1, 6, 25}) {
        auto r =
            chat(e.port(),
                 chat_json("what does this cost, exactly? #mock chunks=" + std::to_string(chunks)),
                 client_key_a);
        BOOST_TEST(r.status == 200);
        const auto u = usage_in(r.body);
        BOOST_TEST_REQUIRE(u.found, r.body);
        const auto h = r.header("x-tollgate-cost-usd");
        BOOST_TEST_REQUIRE(!h.empty());
        BOOST_TEST(std::fabs(std::stod(h) - cost_of(u)) <= 1e-9, h << " vs " << cost_of(u));
        const auto overhead = r.header("x-tollgate-overhead-ms");
        BOOST_TEST_REQUIRE(!overhead.empty());
        BOOST_TEST(std::stod(overhead) >= 0.0);
    }
    auto unpriced =
        chat(e.port(), chat_json("free? #mock chunks=3", false, "other-model"), client_key_a);
    BOOST_TEST(unpriced.status == 200);
    BOOST_TEST(unpriced.header("x-tollgate-cost-usd").empty(),
               unpriced.header("x-tollgate-cost-usd"));
    BOOST_TEST(!unpriced.header("x-tollgate-overhead-ms").empty());

    auto streamed = chat(e.port(), chat_json("stream #mock chunks=3", true), client_key_a);
    BOOST_TEST(streamed.status == 200);
    BOOST_TEST(streamed.header("x-tollgate-cost-usd").empty(),
               streamed.header("x-tollgate-cost-usd"));
    auto streamed_usage =
        chat(e.port(), chat_json("stream #mock chunks=3", true, "gpt-4o-mini", true), client_key_a);
    BOOST_TEST(streamed_usage.status == 200);
    BOOST_TEST(streamed_usage.header("x-tollgate-cost-usd").empty());

    auto refused = chat(e.port(), chat_json("nope"), wrong_key);
    BOOST_TEST(refused.status == 401);
    BOOST_TEST(refused.header("x-tollgate-cost-usd").empty());
}

// The gateway's threads carry names, as top -H, ps -L and perf show them: an operator can
// tell the workers from the ledger's writer when one of them burns CPU.
BOOST_AUTO_TEST_CASE(the_gateway_threads_are_named) {
    ops_env e({}, true);
    // A request answered: the workers are running (each names itself first).
    BOOST_TEST(http_request(e.port(), "GET", "/v1/models").status > 0);
    std::multiset<std::string> names;
    const auto tasks = "/proc/" + std::to_string(e.gw->process().pid()) + "/task";
    for (const auto& t : std::filesystem::directory_iterator(tasks)) {
        std::ifstream f(t.path() / "comm");
        std::string name;
        std::getline(f, name);
        names.insert(name);
    }
    std::string all;
    for (const auto& n : names) all += n + " ";
    for (const char* want :
         {"tg-worker-0", "tg-worker-1", "tg-ledger", "tg-access-log", "tg-admin"})
        BOOST_TEST(names.count(want) == 1, want << " among: " << all);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_CASE(
    a_key_created_or_revoked_on_one_instance_reaches_another_sharing_the_database) {
    // Two gateways on one host share the usage database (and so the api_keys table): a
    // key created through A's admin API starts working on B, and stops there once A
    // revokes it, each within a bounded wait (B re-reads the table within a second).
    ops_env a;
    gateway_process b(a.yaml);
    b.admin_port();
    const std::string body = chat_json("hello from a shared key");

    const auto secret = a.create_key(R"({"id":"shared-1"})");
    BOOST_TEST_REQUIRE(!secret.empty());
    BOOST_TEST(chat(a.port(), body, secret).status == 200);
    const bool on_b =
        poll_until([&] { return chat(b.port(), body, secret).status == 200; }, 10s, 50ms);
    BOOST_TEST(on_b, "the key created on A never worked on B");

    BOOST_TEST(a.admin("DELETE", "/admin/keys/shared-1").status == 204);
    BOOST_TEST(chat(a.port(), body, secret).status == 401);
    const bool gone_on_b =
        poll_until([&] { return chat(b.port(), body, secret).status == 401; }, 10s, 50ms);
    BOOST_TEST(gone_on_b, "the key revoked on A still worked on B");

    // A config-file key revoked on A is refused on B too.
    BOOST_TEST(chat(b.port(), body, client_key_b).status == 200);
    BOOST_TEST(a.admin("DELETE", "/admin/keys/team-b").status == 204);
    const bool config_key_gone_on_b =
        poll_until([&] { return chat(b.port(), body, client_key_b).status == 401; }, 10s, 50ms);
    BOOST_TEST(config_key_gone_on_b, "the config key revoked on A still worked on B");
}

BOOST_AUTO_TEST_CASE(a_reload_that_needs_the_ledger_is_refused_when_it_was_not_opened) {
    // Started without usage or budget in the chain, the gateway has no ledger open: a
    // reload adding them is refused (restart needed), not accepted into a chain that would
    // dereference a missing ledger, and the old config keeps serving.
    mock_upstream mock;
    const auto dir = make_temp_dir();
    config_options o;
    o.policies = "[auth, router]";
    o.top_extra = std::string("admin: {listen: \"127.0.0.1:0\", token: ") + admin_token + "}\n";
    const std::string yaml = standard_config(mock.port(), o);
    gateway_process gw(yaml);
    const auto admin_port = gw.admin_port();
    o.policies = "[auth, rate_limit, budget, router, usage]";
    o.top_extra += "usage: {database: \"" + (dir / "usage.db").string() + "\"}\n";
    std::ofstream(gw.dir() / "tollgate.yaml") << standard_config(mock.port(), o);
    http_connection c(admin_port);
    auto r = c.request("POST", "/admin/reload",
                       {{"authorization", std::string("Bearer ") + admin_token}});
    BOOST_TEST(r.status == 400, r.body);
    BOOST_TEST(r.body.find("restart") != std::string::npos, r.body);
    auto ok = http_request(gw.port(), "POST", "/v1/chat/completions", auth_headers(),
                           chat_body("still served"));
    BOOST_TEST(ok.status == 200);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
}
