#include "gateway/state/resp.hpp"

#include <charconv>

namespace tollgate::state {

namespace {

constexpr std::int64_t max_bulk = 512LL * 1024 * 1024;
constexpr std::size_t max_depth = 8;
constexpr std::size_t max_line = 64 * 1024;  // simple strings and errors
constexpr std::int64_t max_elements = 1 << 20;

std::optional<std::int64_t> parse_int(std::string_view s) noexcept {
    std::int64_t v = 0;
    if (s.empty()) return std::nullopt;
    const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
    return v;
}

}  // namespace

std::optional<std::int64_t> resp_value::as_int() const noexcept {
    if (type == kind::integer) return integer;
    if (type == kind::bulk || type == kind::simple) return parse_int(str);
    return std::nullopt;
}

void append_array_header(std::string& out, std::size_t n) {
    out += '*';
    out += std::to_string(n);
    out += "\r\n";
}

void append_bulk(std::string& out, std::string_view arg) {
    out += '$';
    out += std::to_string(arg.size());
    out += "\r\n";
    out += arg;
    out += "\r\n";
}

void append_command(std::string& out, const std::vector<std::string>& args) {
    append_array_header(out, args.size());
    for (const auto& a : args) append_bulk(out, a);
}

resp_parser::status resp_parser::finish(resp_value v) {
    // Completes `v`, then every array it completes in turn.
    for (;;) {
        if (stack_.empty()) {
            ready_ = std::move(v);
            return status::ready;
        }
        frame& top = stack_.back();
        top.value.elements.push_back(std::move(v));
        if (--top.remaining > 0) return status::more;
        v = std::move(top.value);
        stack_.pop_back();
    }
}

resp_parser::status resp_parser::feed(std::string_view& in) {
    while (!in.empty()) {
        if (bulk_left_ >= 0) {
            // A bulk body, then its CRLF.
            const auto n = std::min<std::size_t>(in.size(), static_cast<std::size_t>(bulk_left_));
            bulk_.str.append(in.data(), n);
            in.remove_prefix(n);
            bulk_left_ -= static_cast<std::int64_t>(n);
            if (bulk_left_ > 0) return status::more;
            bulk_left_ = -1;
            if (bulk_.str.size() < 2 || bulk_.str.compare(bulk_.str.size() - 2, 2, "\r\n") != 0)
                return status::error;
            bulk_.str.resize(bulk_.str.size() - 2);
            if (finish(std::move(bulk_)) == status::ready) return status::ready;
            bulk_ = {};
            continue;
        }
        const auto nl = in.find('\n');
        const auto take = nl == std::string_view::npos ? in.size() : nl + 1;
        if (line_.size() + take > max_line) return status::error;
        line_.append(in.data(), take);
        in.remove_prefix(take);
        if (nl == std::string_view::npos) return status::more;
        if (line_.size() < 3 || line_[line_.size() - 2] != '\r') return status::error;
        const char t = line_[0];
        const std::string_view body(line_.data() + 1, line_.size() - 3);
        resp_value v;
        status s = status::more;
        switch (t) {
            case '+':
            case '-':
                v.type = t == '+' ? resp_value::kind::simple : resp_value::kind::error;
                v.str.assign(body);
                s = finish(std::move(v));
                break;
            case ':': {
                const auto n = parse_int(body);
                if (!n) return status::error;
                v.type = resp_value::kind::integer;
                v.integer = *n;
                s = finish(std::move(v));
                break;
            }
            case '$': {
                const auto n = parse_int(body);
                if (!n || *n < -1 || *n > max_bulk) return status::error;
                if (*n == -1) {
                    s = finish(resp_value{});
                } else {
                    bulk_ = resp_value{};
                    bulk_.type = resp_value::kind::bulk;
                    bulk_.str.reserve(
                        static_cast<std::size_t>(std::min<std::int64_t>(*n + 2, 1 << 16)));
                    bulk_left_ = *n + 2;
                }
                break;
            }
            case '*': {
                const auto n = parse_int(body);
                if (!n || *n < -1 || *n > max_elements) return status::error;
                if (*n == -1) {
                    s = finish(resp_value{});
                } else if (*n == 0) {
                    v.type = resp_value::kind::array;
                    s = finish(std::move(v));
                } else {
                    if (stack_.size() >= max_depth) return status::error;
                    frame f;
                    f.value.type = resp_value::kind::array;
                    f.remaining = *n;
                    stack_.push_back(std::move(f));
                }
                break;
            }
            default:
                return status::error;
        }
        line_.clear();
        if (s == status::ready) return s;
    }
    return status::more;
}

resp_value resp_parser::take() {
    resp_value v = std::move(*ready_);
    ready_.reset();
    return v;
}

}  // namespace tollgate::state
