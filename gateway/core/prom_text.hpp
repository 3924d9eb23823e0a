#pragma once
// The Prometheus text format (version 0.0.4), written in one place: the gateway's metrics
// (observe/metrics), the process and ledger figures (main) and the shared state's
// counters (policies/state) all render through these.

#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace tollgate::core::prom {

// A label value with \ " and newline escaped.
inline void append_label_value(std::string& out, std::string_view v) {
    for (char c : v) {
        if (c == '\\')
            out += "\\\\";
        else if (c == '"')
            out += "\\\"";
        else if (c == '\n')
            out += "\\n";
        else
            out += c;
    }
}

inline void append_number(std::string& out, double v) {
    char buf[64];
    const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc{} ? static_cast<std::size_t>(p - buf) : 0);
}

inline void append_number(std::string& out, std::uint64_t v) {
    char buf[24];
    const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, static_cast<std::size_t>(p - buf));
}

inline void append_number(std::string& out, std::int64_t v) {
    char buf[24];
    const auto [p, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, static_cast<std::size_t>(p - buf));
}

// # HELP and # TYPE lines of a family (type: counter, gauge, histogram).
inline void family(std::string& out, std::string_view name, std::string_view type,
                   std::string_view help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
}

using labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// name{l1="v1",l2="v2"} value
template <class V>
void sample(std::string& out, std::string_view name, labels ls, V value) {
    out += name;
    if (ls.size()) {
        out += '{';
        bool first = true;
        for (const auto& [k, v] : ls) {
            if (!first) out += ',';
            first = false;
            out += k;
            out += "=\"";
            append_label_value(out, v);
            out += '"';
        }
        out += '}';
    }
    out += ' ';
    append_number(out, value);
    out += '\n';
}

// A family with one unlabelled sample.
template <class V>
void single(std::string& out, std::string_view name, std::string_view type, std::string_view help,
            V value) {
    family(out, name, type, help);
    sample(out, name, {}, value);
}

}  // namespace tollgate::core::prom
