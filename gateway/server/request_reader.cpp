#include "gateway/server/request_reader.hpp"

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <array>
#include <limits>

#include "gateway/core/byte_scan.hpp"
#include "gateway/core/http_fields.hpp"

namespace tollgate::server {

namespace asio = boost::asio;
namespace http = boost::beast::http;

std::string_view http_request::get(std::string_view name) const noexcept {
    for (const auto& f : fields_)
        if (boost::beast::iequals(piece(f.name), name)) return piece(f.value);
    return {};
}

std::string http_request::get_all(std::string_view name) const {
    std::string out;
    for (const auto& f : fields_) {
        if (!boost::beast::iequals(piece(f.name), name)) continue;
        if (!out.empty()) out += ", ";
        out += piece(f.value);
    }
    return out;
}

std::size_t http_request::count(std::string_view name) const noexcept {
    std::size_t n = 0;
    for (const auto& f : fields_) n += boost::beast::iequals(piece(f.name), name);
    return n;
}

void request_parser::on_request_impl(http::verb method, string_view method_str, string_view target,
                                     int version, error_code&) {
    req_.method_ = method;
    req_.method_at_ = req_.keep(method_str);
    req_.target_at_ = req_.keep(target);
    req_.version_ = static_cast<unsigned>(version);
}

void request_parser::on_field_impl(http::field, string_view name, string_view value, error_code&) {
    const auto n = req_.keep(name);
    req_.fields_.push_back({n, req_.keep(value)});
}

void request_parser::on_body_init_impl(const boost::optional<std::uint64_t>& length,
                                       error_code& ec) {
    // Beast has refused a length above body_limit (max_request_bytes) already.
    if (!length) return;
    if (*length > req_.body_.max_size()) {
        ec = http::error::buffer_overflow;
        return;
    }
    req_.body_.reserve(static_cast<std::size_t>(*length));
}

request_reader::request_reader(std::size_t max_header_bytes, std::size_t max_request_bytes,
                               bool fast_heads)
    : max_header_bytes_(max_header_bytes),
      max_request_bytes_(max_request_bytes),
      fast_heads_(fast_heads) {}

request_parser& request_reader::beast() {
    if (!parser_) {
        parser_.emplace(req_);
        parser_->header_limit(static_cast<std::uint32_t>(
            std::min<std::size_t>(max_header_bytes_, std::numeric_limits<std::uint32_t>::max())));
        parser_->body_limit(max_request_bytes_);
        parser_->eager(true);
    }
    return *parser_;
}

boost::optional<std::uint64_t> request_reader::content_length() const {
    if (!fast_) return parser_ ? parser_->content_length() : boost::none;
    if (!length_) return boost::none;
    return *length_;
}

bool request_reader::read_head_fast(std::string_view head) {
    // Within Beast's header limit with room to spare: a head near it is Beast's to judge.
    if (head.size() + 64 > max_header_bytes_) return false;
    const char* p = head.data();
    const char* const end = p + head.size();
    http::verb verb;
    std::string_view method;
    if (head.starts_with("POST ")) {
        verb = http::verb::post;
        method = head.substr(0, 4);
    } else if (head.starts_with("GET ")) {
        verb = http::verb::get;
        method = head.substr(0, 3);
    } else {
        return false;
    }
    p += method.size() + 1;
    // request-target: printable ASCII but SP (Beast's is_pathchar, without obs-text).
    const char* const target_begin = p;
    p = core::bytes::find_unprintable(p, end, '!');
    if (p == target_begin || end - p < 11 || *p != ' ') return false;
    const std::string_view target(target_begin, static_cast<std::size_t>(p - target_begin));
    ++p;
    if (std::string_view(p, 7) != "HTTP/1." || (p[7] != '0' && p[7] != '1') || p[8] != '\r' ||
        p[9] != '\n')
        return false;
    const unsigned version = p[7] == '1' ? 11 : 10;
    p += 10;

    req_.text_.reserve(head.size());
    req_.method_at_ = req_.keep(method);
    req_.target_at_ = req_.keep(target);
    namespace hf = core::http_fields;
    hf::framing f;
    const auto decline = [&] {
        req_.text_.clear();
        req_.fields_.clear();
        req_.method_at_ = req_.target_at_ = {};
        return false;
    };
    for (;;) {
        std::string_view name, value;
        const auto l = hf::next_field(p, end, name, value);
        if (l == hf::line::end) break;
        // Transfer-Encoding, in any form, is Beast's (it refuses what does not end in
        // chunked, and de-chunks the rest).
        if (l != hf::line::field || !hf::note_framing(name, value, f, /*chunked_ok=*/false))
            return decline();
        const auto n = req_.keep(name);
        req_.fields_.push_back({n, req_.keep(value)});
    }
    // The head ends at its first empty line; a body longer than allowed is Beast's to refuse.
    if (p != end || (f.length && *f.length > max_request_bytes_)) return decline();
    req_.method_ = verb;
    req_.version_ = version;
    req_.keep_alive_ = f.keeps_alive(version == 11);
    fast_ = true;
    length_ = f.length;
    body_left_ = f.length.value_or(0);
    if (body_left_ > 0) req_.body_.reserve(static_cast<std::size_t>(body_left_));
    return true;
}

std::size_t request_reader::take_body(std::string_view buf) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(body_left_, buf.size()));
    req_.body_.append(buf.data(), n);
    body_left_ -= n;
    return n;
}

request_reader::step request_reader::head(std::string_view buf, std::size_t& consumed) {
    consumed = 0;
    // Gathered whole first, checked for obs-fold as a whole, then given to the parser in
    // one piece. (Fed piecewise, the parser takes complete header lines as they come and a
    // check on what is left would see only the tail of the head.)
    std::size_t head_end = std::string_view::npos;
    if (const auto p = buf.find("\r\n\r\n", scanned_); p != std::string_view::npos) {
        head_end = p + 4;
    } else if (buf.find("\n\n") == std::string_view::npos) {  // bare LF: the parser refuses it
        if (buf.size() > max_header_bytes_) {
            ec_ = http::error::header_limit;
            return step::failed;
        }
        scanned_ = buf.size() >= 3 ? buf.size() - 3 : 0;
        return step::read_more;
    }
    if (head_end != std::string_view::npos && fast_heads_ &&
        read_head_fast(buf.substr(0, head_end))) {
        // As Beast's eager parser: the body bytes already buffered are taken with the head.
        consumed = head_end + take_body(buf.substr(head_end));
        return step::head_ready;
    }
    if (head_end != std::string_view::npos && head_has_obs_fold(buf.substr(0, head_end))) {
        ec_ = http::error::bad_field;
        return step::failed;
    }
    auto& parser = beast();
    if (head_end != std::string_view::npos) parser.reserve_head(head_end);
    consumed = parser.put(asio::buffer(buf.data(), buf.size()), ec_);
    if (ec_ == http::error::need_more) ec_ = {};
    if (!ec_ && !parser.is_header_done()) ec_ = http::error::bad_line_ending;
    // RFC 9112 §6.3: a request whose Transfer-Encoding does not end in chunked has no
    // length anyone can agree on (Beast would read no body and take what follows for the
    // next request): refused.
    if (!ec_ && req_.count("transfer-encoding") && !parser.chunked())
        ec_ = http::error::bad_transfer_encoding;
    return ec_ ? step::failed : step::head_ready;
}

request_reader::step request_reader::body(std::string_view buf, std::size_t& consumed) {
    consumed = 0;
    if (fast_) {
        consumed = take_body(buf);
        return body_left_ == 0 ? step::done : step::read_more;
    }
    auto& parser = *parser_;
    // Right after the head, read first only if nothing is buffered; after a read, always
    // give the parser what there is. Then read whenever it cannot go on with what is
    // buffered (a partial chunk header leaves bytes that put() does not consume).
    bool need_read = !body_started_ && buf.empty();
    body_started_ = true;
    while (!parser.is_done()) {
        if (need_read) {
            if (buf.size() >= max_header_bytes_ + body_read_size) {
                ec_ = http::error::bad_chunk;  // a chunk header that never ends
                return step::failed;
            }
            return step::read_more;
        }
        const auto used = parser.put(asio::buffer(buf.data(), buf.size()), ec_);
        buf.remove_prefix(used);
        consumed += used;
        if (ec_ == http::error::need_more) ec_ = {};
        if (ec_) return step::failed;
        need_read = used == 0 || buf.empty();
    }
    return step::done;
}

core::errc read_error(const boost::system::error_code& ec) {
    if (ec == http::error::header_limit) return core::errc::headers_too_large;
    if (ec == http::error::body_limit) return core::errc::request_too_large;
    return core::errc::bad_framing;
}

bool head_has_obs_fold(std::string_view buf) {
    const auto end = buf.find("\r\n\r\n");
    const std::string_view head = buf.substr(0, end == std::string_view::npos ? buf.size() : end);
    for (std::size_t i = head.find('\n'); i != std::string_view::npos && i + 1 < head.size();
         i = head.find('\n', i + 1))
        if (head[i + 1] == ' ' || head[i + 1] == '\t') return true;
    return false;
}

bool valid_request_id(std::string_view id) {
    if (id.empty() || id.size() > 200) return false;
    for (unsigned char c : id)
        if (c <= 0x20 || c >= 0x7f) return false;
    return true;
}

route classify(http::verb method, std::string_view path, core::endpoint& ep) {
    struct entry {
        std::string_view path;
        http::verb method;
        route r;
        core::endpoint ep;
    };
    static constexpr entry table[] = {
        {"/v1/chat/completions", http::verb::post, route::api, core::endpoint::chat_completions},
        {"/v1/embeddings", http::verb::post, route::api, core::endpoint::embeddings},
        {"/v1/messages", http::verb::post, route::api, core::endpoint::messages},
        {"/v1/models", http::verb::get, route::api, core::endpoint::models},
        {"/v1/responses", http::verb::post, route::api, core::endpoint::responses},
        {"/healthz", http::verb::get, route::healthz, core::endpoint::chat_completions},
        {"/readyz", http::verb::get, route::readyz, core::endpoint::chat_completions},
    };
    for (const auto& e : table) {
        if (e.path != path) continue;
        ep = e.ep;
        if (method == e.method) return e.r;
        return route::bad_method;
    }
    return route::not_found;
}

}  // namespace tollgate::server
