// Fuzzes state::resp_parser (gateway/state/resp.hpp): bytes from a Redis server (or from
// something that is not one) in arbitrary pieces -> replies.
//
// Invariants checked:
//  - the replies do not depend on how the bytes were cut: whole, cut at data-derived
//    points, and one byte at a time give the same replies and the same error point;
//  - each piece lives in its own heap buffer freed right after feed(), so a view kept
//    into an old piece is a use-after-free ASan reports;
//  - a reply re-encoded as RESP parses back to the same reply;
//  - memory stays bounded by the input (no allocation sized by a declared length alone).

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "gateway/state/resp.hpp"

namespace {

using tollgate::state::resp_parser;
using tollgate::state::resp_value;

bool same(const resp_value& a, const resp_value& b) {
    if (a.type != b.type || a.str != b.str || a.integer != b.integer ||
        a.elements.size() != b.elements.size())
        return false;
    for (std::size_t i = 0; i < a.elements.size(); ++i)
        if (!same(a.elements[i], b.elements[i])) return false;
    return true;
}

void encode(std::string& out, const resp_value& v) {
    switch (v.type) {
        case resp_value::kind::simple:
            out += '+' + v.str + "\r\n";
            break;
        case resp_value::kind::error:
            out += '-' + v.str + "\r\n";
            break;
        case resp_value::kind::integer:
            out += ':' + std::to_string(v.integer) + "\r\n";
            break;
        case resp_value::kind::bulk:
            out += '$' + std::to_string(v.str.size()) + "\r\n" + v.str + "\r\n";
            break;
        case resp_value::kind::nil:
            out += "$-1\r\n";
            break;
        case resp_value::kind::array:
            out += '*' + std::to_string(v.elements.size()) + "\r\n";
            for (const auto& e : v.elements) encode(out, e);
            break;
    }
}

struct result {
    std::vector<resp_value> replies;
    bool error = false;
};

result run(const std::uint8_t* data, std::size_t size, const std::vector<std::size_t>& cuts) {
    result r;
    resp_parser p;
    std::size_t at = 0;
    for (std::size_t i = 0; i <= cuts.size() && !r.error; ++i) {
        const std::size_t end = i < cuts.size() ? cuts[i] : size;
        if (end < at) continue;
        auto piece = std::make_unique<char[]>(end - at + 1);
        std::memcpy(piece.get(), data + at, end - at);
        std::string_view in(piece.get(), end - at);
        for (;;) {
            const auto st = p.feed(in);
            if (st == resp_parser::status::error) {
                r.error = true;
                break;
            }
            if (st == resp_parser::status::more) break;
            r.replies.push_back(p.take());
        }
        at = end;
    }
    return r;
}

bool same_result(const result& a, const result& b) {
    if (a.error != b.error || a.replies.size() != b.replies.size()) return false;
    for (std::size_t i = 0; i < a.replies.size(); ++i)
        if (!same(a.replies[i], b.replies[i])) return false;
    return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size > 1 << 16) return 0;
    const auto whole = run(data, size, {});
    std::vector<std::size_t> cuts;
    for (std::size_t i = 0, step = 1; i < size; i += step, step = 1 + (data[i % size] % 13))
        cuts.push_back(i);
    std::vector<std::size_t> bytes;
    for (std::size_t i = 1; i < size; ++i) bytes.push_back(i);
    if (!same_result(whole, run(data, size, cuts))) __builtin_trap();
    if (!same_result(whole, run(data, size, bytes))) __builtin_trap();
    for (const auto& v : whole.replies) {
        std::string again;
        encode(again, v);
        const auto back =
            run(reinterpret_cast<const std::uint8_t*>(again.data()), again.size(), {});
        if (back.error || back.replies.size() != 1 || !same(back.replies[0], v)) __builtin_trap();
    }
    return 0;
}
