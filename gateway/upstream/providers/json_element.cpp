#include "gateway/upstream/providers/json_element.hpp"

#include "gateway/upstream/providers/anthropic_translate.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string_view>

namespace tollgate::upstream {

namespace dom = simdjson::dom;
using core::json_writer;
using simdjson::SUCCESS;

void write_element(json_writer& w, dom::element e) {
    switch (e.type()) {
        case dom::element_type::ARRAY: {
            dom::array a;
            w.begin_array();
            if (e.get(a) == SUCCESS)
                for (dom::element x : a) write_element(w, x);
            w.end_array();
            return;
        }
        case dom::element_type::OBJECT: {
            dom::object o;
            w.begin_object();
            if (e.get(o) == SUCCESS)
                for (dom::key_value_pair kv : o) {
                    w.key(kv.key);
                    write_element(w, kv.value);
                }
            w.end_object();
            return;
        }
        case dom::element_type::INT64: {
            std::int64_t v = 0;
            if (e.get(v) != SUCCESS) break;
            w.integer(v);
            return;
        }
        case dom::element_type::UINT64: {
            std::uint64_t v = 0;
            if (e.get(v) != SUCCESS) break;
            w.uinteger(v);
            return;
        }
        case dom::element_type::DOUBLE: {
            double v = 0;
            if (e.get(v) != SUCCESS) break;
            w.number(v);
            return;
        }
        case dom::element_type::STRING: {
            std::string_view v;
            if (e.get(v) != SUCCESS) break;
            w.string(v);
            return;
        }
        case dom::element_type::BOOL: {
            bool v = false;
            if (e.get(v) != SUCCESS) break;
            w.boolean(v);
            return;
        }
        case dom::element_type::NULL_VALUE:
            break;
    }
    w.null();
}

bool member(dom::object o, std::string_view k, dom::element& out) {
    if (o.at_key(k).get(out) != SUCCESS) return false;
    return !out.is_null();
}

bool member_object(dom::object o, std::string_view k, dom::object& out) {
    dom::element e;
    return member(o, k, e) && e.get(out) == SUCCESS;
}

bool member_array(dom::object o, std::string_view k, dom::array& out) {
    dom::element e;
    return member(o, k, e) && e.get(out) == SUCCESS;
}

bool member_string(dom::object o, std::string_view k, std::string_view& out) {
    dom::element e;
    return member(o, k, e) && e.get(out) == SUCCESS;
}

std::string_view string_or(dom::object o, std::string_view k, std::string_view fallback) {
    std::string_view s;
    return member_string(o, k, s) ? s : fallback;
}

bool as_integer(dom::element e, std::int64_t& out) {
    std::int64_t i = 0;
    if (e.get(i) == SUCCESS) {
        out = i;
        return true;
    }
    std::uint64_t u = 0;
    if (e.get(u) == SUCCESS) {
        out = std::numeric_limits<std::int64_t>::max();
        if (u < static_cast<std::uint64_t>(out)) out = static_cast<std::int64_t>(u);
        return true;
    }
    double d = 0;
    if (e.get(d) == SUCCESS && std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9.0e18) {
        out = static_cast<std::int64_t>(d);
        return true;
    }
    return false;
}

std::int64_t count_of(dom::object o, std::string_view k) {
    dom::element e;
    std::int64_t v = 0;
    if (!member(o, k, e) || !as_integer(e, v) || v < 0) return 0;
    return std::min<std::int64_t>(v, anthropic::max_token_count);
}

bool parse_element(dom::parser& p, std::string_view text, dom::element& out) {
    if (text.empty()) return false;
    return p.parse(text.data(), text.size()).get(out) == SUCCESS;
}

bool parse_object(dom::parser& p, std::string_view text, dom::object& out) {
    dom::element e;
    return parse_element(p, text, e) && e.get(out) == SUCCESS;
}

}  // namespace tollgate::upstream
