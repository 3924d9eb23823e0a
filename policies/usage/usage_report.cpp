#include "policies/usage/usage_report.hpp"

#include "gateway/core/errors.hpp"

namespace tollgate::policies {

std::string url_decode(std::string_view s) {
    auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9') return c - '0';
        if (c >= 'a' && c <= 'f') return c - 'a' + 10;
        if (c >= 'A' && c <= 'F') return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(s.size());
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '+') {
            out += ' ';
        } else if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else {
            out += s[i];
        }
    }
    return out;
}

std::pair<int, std::string> usage_report(const ledger& l, std::string_view query) {
    auto bad = [](const std::string& message) {
        return std::pair{400, core::openai_error_body(core::errc::invalid_request, message)};
    };
    store::usage_query q;
    while (!query.empty()) {
        const auto amp = query.find('&');
        const std::string_view pair = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        if (pair.empty()) continue;
        const auto eq = pair.find('=');
        const std::string name = url_decode(pair.substr(0, eq));
        const std::string value =
            eq == std::string_view::npos ? "" : url_decode(pair.substr(eq + 1));
        if (name == "key") {
            q.key = value;
        } else if (name == "model") {
            q.model = value;
        } else if (name == "since" || name == "until") {
            auto t = parse_time_param(value);
            if (!t) return bad("'" + name + "' must be RFC 3339 or YYYY-MM-DD");
            (name == "since" ? q.since_ms : q.until_ms) = *t;
        } else if (name == "group_by") {
            std::string_view v = value;
            while (!v.empty()) {
                const auto comma = v.find(',');
                const std::string_view g = v.substr(0, comma);
                v = comma == std::string_view::npos ? std::string_view{} : v.substr(comma + 1);
                if (g == "key")
                    q.by_key = true;
                else if (g == "model")
                    q.by_model = true;
                else if (g == "day")
                    q.by_day = true;
                else if (g == "hour")
                    q.by_hour = true;
                else if (!g.empty())
                    return bad("'group_by' takes key, model, day, hour");
            }
        } else {
            return bad("unknown parameter '" + name.substr(0, 40) + "'");
        }
    }
    try {
        return {200, l.aggregate_json(q)};
    } catch (const std::exception&) {
        return {500, core::openai_error_body(core::errc::internal, "usage query failed")};
    }
}

}  // namespace tollgate::policies
