#include "policies/usage/spill_file.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <simdjson.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "gateway/core/json_text.hpp"

namespace tollgate::policies {
namespace json_text = core::json_text;

namespace {

std::runtime_error spill_error(const std::string& path, std::string_view what) {
    return std::runtime_error("usage ledger: spill file " + path + ": " + std::string(what) + ": " +
                              std::strerror(errno));
}

void fsync_parent(const std::string& path) {
    std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (parent.empty()) parent = ".";
    const int fd = ::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    ::fsync(fd);
    ::close(fd);
}

void opt_uint(std::string& out, const char* name, const std::optional<std::uint64_t>& v) {
    out += name;
    if (v)
        json_text::append_uint(out, *v);
    else
        out += "null";
}

void opt_double(std::string& out, const char* name, const std::optional<double>& v) {
    out += name;
    if (v)
        json_text::append_double(out, *v);
    else
        out += "null";
}

std::optional<std::uint64_t> get_opt_uint(simdjson::dom::object o, const char* name) {
    std::uint64_t v = 0;
    if (o[name].get_uint64().get(v) != simdjson::SUCCESS) return std::nullopt;
    return v;
}

std::optional<double> get_opt_double(simdjson::dom::object o, const char* name) {
    double v = 0;
    if (o[name].get_double().get(v) != simdjson::SUCCESS) return std::nullopt;
    return v;
}

std::string get_text(simdjson::dom::object o, const char* name) {
    std::string_view v;
    if (o[name].get_string().get(v) != simdjson::SUCCESS) return {};
    return std::string(v);
}

bool parse_record(simdjson::dom::object o, store::usage_record& r) {
    if (o["ts_ms"].get_int64().get(r.ts_ms) != simdjson::SUCCESS) return false;
    r.request_id = get_text(o, "request_id");
    r.key_id = get_text(o, "key_id");
    r.model = get_text(o, "model");
    r.provider = get_text(o, "provider");
    r.upstream_model = get_text(o, "upstream_model");
    std::int64_t status = 0;
    if (o["status"].get_int64().get(status) != simdjson::SUCCESS) return false;
    r.status = static_cast<int>(status);
    bool b = false;
    if (o["stream"].get_bool().get(b) == simdjson::SUCCESS) r.stream = b;
    r.attempts = static_cast<std::uint32_t>(get_opt_uint(o, "attempts").value_or(0));
    r.prompt_tokens = get_opt_uint(o, "prompt_tokens");
    r.completion_tokens = get_opt_uint(o, "completion_tokens");
    r.total_tokens = get_opt_uint(o, "total_tokens");
    r.cached_tokens = get_opt_uint(o, "cached_tokens").value_or(0);
    if (o["estimated"].get_bool().get(b) == simdjson::SUCCESS) r.estimated = b;
    r.cost_usd = get_opt_double(o, "cost_usd");
    r.latency_ms = get_opt_double(o, "latency_ms").value_or(0);
    r.ttft_ms = get_opt_double(o, "ttft_ms");
    std::string_view err;
    if (o["error"].get_string().get(err) == simdjson::SUCCESS) r.error = std::string(err);
    return true;
}

}  // namespace

void append_spill_record(std::string& out, const store::usage_record& r) {
    out += "{\"ts_ms\":";
    json_text::append_int(out, r.ts_ms);
    out += ",\"request_id\":";
    json_text::append_string(out, r.request_id);
    out += ",\"key_id\":";
    json_text::append_string(out, r.key_id);
    out += ",\"model\":";
    json_text::append_string(out, r.model);
    out += ",\"provider\":";
    json_text::append_string(out, r.provider);
    out += ",\"upstream_model\":";
    json_text::append_string(out, r.upstream_model);
    out += ",\"status\":";
    json_text::append_int(out, r.status);
    out += ",\"stream\":";
    out += r.stream ? "true" : "false";
    out += ",\"attempts\":";
    json_text::append_uint(out, r.attempts);
    opt_uint(out, ",\"prompt_tokens\":", r.prompt_tokens);
    opt_uint(out, ",\"completion_tokens\":", r.completion_tokens);
    opt_uint(out, ",\"total_tokens\":", r.total_tokens);
    out += ",\"cached_tokens\":";
    json_text::append_uint(out, r.cached_tokens);
    out += ",\"estimated\":";
    out += r.estimated ? "true" : "false";
    opt_double(out, ",\"cost_usd\":", r.cost_usd);
    out += ",\"latency_ms\":";
    json_text::append_double(out, r.latency_ms);
    opt_double(out, ",\"ttft_ms\":", r.ttft_ms);
    out += ",\"error\":";
    if (r.error)
        json_text::append_string(out, *r.error);
    else
        out += "null";
    out += '}';
}

void write_spill(const std::string& path, const std::vector<spill_batch>& batches) {
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    if (!parent.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(parent, ec);
    }
    std::string text;
    for (const spill_batch& b : batches) {
        if (b.records.empty()) continue;
        text += "{\"batch\":";
        json_text::append_int(text, b.id);
        text += ",\"records\":";
        json_text::append_uint(text, b.records.size());
        text += "}\n";
        for (const store::usage_record& r : b.records) {
            append_spill_record(text, r);
            text += '\n';
        }
    }
    if (text.empty()) return;
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd < 0) throw spill_error(path, "cannot open for append");
    std::size_t written = 0;
    while (written < text.size()) {
        const ssize_t w = ::write(fd, text.data() + written, text.size() - written);
        if (w < 0) {
            if (errno == EINTR) continue;
            const auto e = spill_error(path, "cannot write");
            ::close(fd);
            throw e;
        }
        written += static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0) {
        const auto e = spill_error(path, "cannot fsync");
        ::close(fd);
        throw e;
    }
    ::close(fd);
    fsync_parent(path);
}

std::vector<spill_batch> read_spill(const std::string& path, std::vector<std::string>& problems) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw spill_error(path, "cannot open for reading");
    std::vector<spill_batch> out;
    simdjson::dom::parser parser;
    std::string line;
    std::size_t line_no = 0;
    std::size_t expected = 0;  // records still due for the last batch
    const auto cut_short = [&] {
        if (expected > 0 && !out.empty())
            problems.push_back("batch " + std::to_string(out.back().id) + " is missing " +
                               std::to_string(expected) + " record(s) (cut short)");
        expected = 0;
    };
    while (std::getline(in, line)) {
        ++line_no;
        if (line.empty()) continue;
        simdjson::dom::object o;
        if (parser.parse(line).get_object().get(o) != simdjson::SUCCESS) {
            problems.push_back("line " + std::to_string(line_no) + " is not a JSON object");
            continue;
        }
        std::int64_t id = 0;
        if (o["batch"].get_int64().get(id) == simdjson::SUCCESS) {
            cut_short();
            spill_batch b;
            b.id = id;
            expected = get_opt_uint(o, "records").value_or(0);
            out.push_back(std::move(b));
            continue;
        }
        store::usage_record r;
        if (out.empty() || expected == 0 || !parse_record(o, r)) {
            problems.push_back("line " + std::to_string(line_no) +
                               " is not a usage record of a batch");
            continue;
        }
        out.back().records.push_back(std::move(r));
        --expected;
    }
    cut_short();
    return out;
}

}  // namespace tollgate::policies
