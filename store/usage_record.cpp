#include "store/usage_record.hpp"

#include <chrono>
#include <limits>

#include "gateway/core/json_text.hpp"

namespace tollgate::store {
namespace json_text = core::json_text;

namespace {

struct civil_time {
    int year;
    unsigned month, day, hour, minute, second, millis;
};

civil_time to_civil(std::int64_t ts_ms) {
    using namespace std::chrono;
    const sys_time<milliseconds> t{milliseconds{ts_ms}};
    const auto d = floor<days>(t);  // floor, not truncation: correct before 1970 too
    const year_month_day ymd{d};
    const auto ms_of_day = (t - d).count();  // 0 .. 86'399'999
    return civil_time{static_cast<int>(ymd.year()),
                      static_cast<unsigned>(ymd.month()),
                      static_cast<unsigned>(ymd.day()),
                      static_cast<unsigned>(ms_of_day / 3'600'000),
                      static_cast<unsigned>(ms_of_day / 60'000 % 60),
                      static_cast<unsigned>(ms_of_day / 1000 % 60),
                      static_cast<unsigned>(ms_of_day % 1000)};
}

// Fixed-width decimal without locale or printf.
void append_padded(std::string& out, unsigned v, int width) {
    char buf[10];
    for (int i = width - 1; i >= 0; --i) {
        buf[i] = static_cast<char>('0' + v % 10);
        v /= 10;
    }
    out.append(buf, static_cast<std::size_t>(width));
}

void append_year(std::string& out, int year) {
    if (year < 0) {
        out.push_back('-');
        year = -year;
    }
    if (year > 9999)
        json_text::append_int(out, year);
    else
        append_padded(out, static_cast<unsigned>(year), 4);
}

void append_day(std::string& out, const civil_time& c) {
    append_year(out, c.year);
    out.push_back('-');
    append_padded(out, c.month, 2);
    out.push_back('-');
    append_padded(out, c.day, 2);
}

// SPEC: "null where unknown". A record's string fields have no optional; empty means the
// gateway never learnt the value (e.g. no provider was tried).
void append_string_or_null(std::string& out, const std::string& s) {
    if (s.empty())
        out += "null";
    else
        json_text::append_string(out, s);
}

template <class T, class F>
void append_optional(std::string& out, const std::optional<T>& v, F&& append) {
    if (v)
        append(out, *v);
    else
        out += "null";
}

}  // namespace

std::string utc_day(std::int64_t ts_ms) {
    // A ledger writes its records' days one after another, nearly all the same day: the
    // last one is kept per thread (the calendar arithmetic cost ~400 instructions a row).
    constexpr std::int64_t ms_per_day = 86'400'000;
    const std::int64_t day = ts_ms / ms_per_day - (ts_ms % ms_per_day < 0 ? 1 : 0);  // floor
    thread_local std::int64_t last_day = std::numeric_limits<std::int64_t>::min();
    thread_local std::string last_text;
    if (day != last_day) {
        last_text.clear();
        append_day(last_text, to_civil(ts_ms));
        last_day = day;
    }
    return last_text;
}

std::string rfc3339_ms(std::int64_t ts_ms) {
    const civil_time c = to_civil(ts_ms);
    std::string out;
    out.reserve(24);
    append_day(out, c);
    out.push_back('T');
    append_padded(out, c.hour, 2);
    out.push_back(':');
    append_padded(out, c.minute, 2);
    out.push_back(':');
    append_padded(out, c.second, 2);
    out.push_back('.');
    append_padded(out, c.millis, 3);
    out.push_back('Z');
    return out;
}

std::string utc_hour(std::int64_t ts_ms) {
    return rfc3339_ms(ts_ms).substr(0, 13);  // "YYYY-MM-DDTHH"
}

void append_jsonl(std::string& out, const usage_record& r) {
    out += "{\"ts\":\"";
    out += rfc3339_ms(r.ts_ms);
    out += "\",\"request_id\":";
    append_string_or_null(out, r.request_id);
    out += ",\"key_id\":";
    append_string_or_null(out, r.key_id);
    out += ",\"model\":";
    append_string_or_null(out, r.model);
    out += ",\"provider\":";
    append_string_or_null(out, r.provider);
    out += ",\"upstream_model\":";
    append_string_or_null(out, r.upstream_model);
    out += ",\"status\":";
    json_text::append_int(out, r.status);
    out += ",\"stream\":";
    out += r.stream ? "true" : "false";
    out += ",\"attempts\":";
    json_text::append_uint(out, r.attempts);
    out += ",\"prompt_tokens\":";
    append_optional(out, r.prompt_tokens, json_text::append_uint);
    out += ",\"completion_tokens\":";
    append_optional(out, r.completion_tokens, json_text::append_uint);
    out += ",\"total_tokens\":";
    append_optional(out, r.total_tokens, json_text::append_uint);
    out += ",\"usage_source\":";
    out += r.estimated ? "\"estimated\"" : "\"upstream\"";
    out += ",\"cost_usd\":";
    append_optional(out, r.cost_usd, json_text::append_double);
    out += ",\"latency_ms\":";
    json_text::append_double(out, r.latency_ms);
    out += ",\"ttft_ms\":";
    append_optional(out, r.ttft_ms, json_text::append_double);
    out += ",\"error\":";
    if (r.error)
        json_text::append_string(out, *r.error);
    else
        out += "null";
    out.push_back('}');
}

std::string to_jsonl(const usage_record& r) {
    std::string out;
    out.reserve(384);
    append_jsonl(out, r);
    return out;
}

void release_large_strings(usage_record& r, std::size_t keep) noexcept {
    const auto release = [keep](std::string& s) noexcept {
        if (s.capacity() > keep) std::string().swap(s);
    };
    release(r.request_id);
    release(r.key_id);
    release(r.model);
    release(r.provider);
    release(r.upstream_model);
    if (r.error) release(*r.error);
}

std::uint64_t billable_tokens(const usage_record& r) noexcept {
    if (r.total_tokens) return *r.total_tokens;
    return r.prompt_tokens.value_or(0) + r.completion_tokens.value_or(0);
}

}  // namespace tollgate::store
