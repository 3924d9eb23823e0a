#include "gateway/upstream/response_parser.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string_view>

#include "gateway/core/http_fields.hpp"

namespace tollgate::upstream {

void response_parser::on_field_impl(boost::beast::http::field name, string_view, string_view value,
                                    error_code&) {
    using boost::beast::http::field;
    if (name == field::content_type)
        keep_content_type(value);
    else if (name == field::retry_after)
        keep_retry_after(value);
}

void response_parser::keep_content_type(std::string_view value) {
    content_type_.assign(value.data(), std::min<std::size_t>(value.size(), 200));
    // "text/event-stream" anywhere in it, in any case (no lower-cased copy).
    static constexpr std::string_view sse = "text/event-stream";
    const std::string_view v = content_type_;
    event_stream_ = false;
    for (std::size_t i = 0; !event_stream_ && i + sse.size() <= v.size(); ++i)
        event_stream_ = boost::beast::iequals(v.substr(i, sse.size()), sse);
}

void response_parser::keep_retry_after(std::string_view value) {
    retry_after_.assign(value.data(), std::min<std::size_t>(value.size(), 64));
}

bool response_parser::put_own_head(const char* data, std::size_t size, std::size_t& used,
                                   error_code& ec) {
    const auto eoh = std::string_view(data, size).find("\r\n\r\n");
    // Not whole yet: Beast's put() looks at it (put_all).
    if (eoh == std::string_view::npos) return false;
    if (eoh + 4 + 64 > head_limit_ || !read_own_head(std::string_view(data, eoh + 4))) {
        own_ = own_state::beast;
        return false;
    }
    used = eoh + 4;
    used += chunked_ ? put_chunks(data + used, size - used, ec)
                     : put_length(data + used, size - used, ec);
    return true;
}

bool response_parser::read_own_head(std::string_view head) {
    namespace hf = core::http_fields;
    // HTTP/1.x SP 3DIGIT SP reason CRLF
    if (head.size() < 15 || !head.starts_with("HTTP/1.") || (head[7] != '0' && head[7] != '1') ||
        head[8] != ' ' || head[12] != ' ')
        return false;
    int status = 0;
    for (std::size_t i = 9; i < 12; ++i) {
        if (head[i] < '0' || head[i] > '9') return false;
        status = status * 10 + (head[i] - '0');
    }
    // 1xx, 204 and 304 have no body, whatever the fields say: Beast's.
    if (status < 200 || status > 599 || status == 204 || status == 304) return false;
    const bool http11 = head[7] == '1';
    const char* p = head.data() + 13;
    const char* const end = head.data() + head.size();
    p = hf::printable_run(p, end);
    if (end - p < 2 || p[0] != '\r' || p[1] != '\n') return false;
    p += 2;

    // Checked whole before anything is kept: a head declined here leaves no trace.
    hf::framing f;
    std::optional<std::string_view> content_type, retry_after;  // the last of each, as Beast
    for (;;) {
        std::string_view name, value;
        const auto l = hf::next_field(p, end, name, value);
        if (l == hf::line::end) {
            if (p != end) return false;
            break;
        }
        if (l != hf::line::field || !hf::note_framing(name, value, f, /*chunked_ok=*/true))
            return false;
        if (name.size() == 12 && hf::is_named(name, "content-type"))
            content_type = value;
        else if (name.size() == 11 && hf::is_named(name, "retry-after"))
            retry_after = value;
    }
    // One framing, and a length within the limit: a body to the close, both framings or a
    // length past the limit are Beast's to read or refuse.
    if (f.chunked == f.length.has_value()) return false;
    if (f.length && *f.length > 0 && limit_ && *f.length > *limit_) return false;

    if (content_type) keep_content_type(*content_type);
    if (retry_after) keep_retry_after(*retry_after);
    status_ = status;
    own_keep_alive_ = f.keeps_alive(http11);
    own_ = own_state::body;
    if (f.chunked) {
        chunked_ = true;
        chunk_ = chunk_state::size_line;
    } else {
        length_left_ = *f.length;
    }
    return true;
}

std::size_t response_parser::put_length(const char* data, std::size_t size, error_code& ec) {
    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(length_left_, size));
    body_.append(data, n);
    length_left_ -= n;
    ec = length_left_ > 0 ? boost::beast::http::error::need_more : error_code{};
    return n;
}

namespace {

using boost::beast::http::error;

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// A control character other than HTAB (not allowed in extensions or fields).
bool is_ctl(char c) noexcept {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
}

// The '\n' ending the CRLF line at p, within `limit` bytes of it; or nullptr with `ec` set:
// need_more while the line may still end, `too_long` once it cannot, bad_line_ending for
// a '\n' without its '\r'.
const char* crlf_line(const char* p, const char* end, std::size_t limit, error too_long,
                      boost::system::error_code& ec) noexcept {
    const std::size_t room = std::min<std::size_t>(static_cast<std::size_t>(end - p), limit + 1);
    const auto* lf = static_cast<const char*>(std::memchr(p, '\n', room));
    if (!lf) {
        ec = static_cast<std::size_t>(end - p) > limit ? too_long : error::need_more;
        return nullptr;
    }
    if (lf == p || lf[-1] != '\r') {
        ec = error::bad_line_ending;
        return nullptr;
    }
    return lf;
}

}  // namespace

// After a chunk's size line: its data next, or the trailer section after the last one.
bool response_parser::start_chunk(std::uint64_t size, error_code& ec) noexcept {
    if (size == 0) {
        chunk_ = chunk_state::trailer;
    } else if (limit_ && size > *limit_ - decoded_) {
        ec = error::body_limit;
        return false;
    } else {
        chunk_left_ = size;
        chunk_ = chunk_state::data;
    }
    return true;
}

// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112, 7.1)
// chunk = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
std::size_t response_parser::put_chunks(const char* data, std::size_t size, error_code& ec) {
    const char* p = data;
    const char* const end = data + size;
    const auto used = [&] { return static_cast<std::size_t>(p - data); };
    ec = {};
    while (chunk_ != chunk_state::done) {
        if (p == end) {
            ec = error::need_more;
            return used();
        }
        switch (chunk_) {
            case chunk_state::size_line: {
                // Nearly always hex digits and CRLF: read as such, without a search.
                const char* q = p;
                std::uint64_t n = 0;
                for (int d; q < end && q - p < 16 && (d = hex_value(*q)) >= 0; ++q)
                    n = n << 4 | static_cast<std::uint64_t>(d);
                if (q != p && end - q >= 2 && q[0] == '\r' && q[1] == '\n') {
                    p = q + 2;
                    if (!start_chunk(n, ec)) return used();
                    break;
                }
                const char* lf = crlf_line(p, end, max_chunk_line, error::bad_chunk, ec);
                if (!lf) return used();
                q = p;
                n = 0;
                for (int d; q < lf && (d = hex_value(*q)) >= 0; ++q) {
                    if (n > (UINT64_MAX >> 4)) {
                        ec = error::bad_chunk;
                        return used();
                    }
                    n = n << 4 | static_cast<std::uint64_t>(d);
                }
                if (q == p) {
                    ec = error::bad_chunk;
                    return used();
                }
                // chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS value ] ): ignored, but only
                // after a ';' and without control characters.
                const char* ext = q;
                while (ext < lf - 1 && (*ext == ' ' || *ext == '\t')) ++ext;
                if (ext < lf - 1 && *ext != ';') {
                    ec = error::bad_chunk_extension;
                    return used();
                }
                if (std::any_of(ext, lf - 1, is_ctl)) {
                    ec = error::bad_chunk_extension;
                    return used();
                }
                p = lf + 1;
                if (!start_chunk(n, ec)) return used();
                break;
            }
            case chunk_state::data: {
                const std::size_t take = static_cast<std::size_t>(
                    std::min<std::uint64_t>(chunk_left_, static_cast<std::uint64_t>(end - p)));
                body_.append(p, take);
                p += take;
                chunk_left_ -= take;
                decoded_ += take;
                if (chunk_left_ == 0) chunk_ = chunk_state::data_end;
                break;
            }
            case chunk_state::data_end:
                if (p[0] != '\r' || (end - p >= 2 && p[1] != '\n')) {
                    ec = error::bad_chunk;
                    return used();
                }
                if (end - p < 2) {
                    ec = error::need_more;
                    return used();
                }
                p += 2;
                chunk_ = chunk_state::size_line;
                break;
            case chunk_state::trailer: {
                // trailer-section = *( field-line CRLF ), then CRLF: the fields are not kept.
                const char* lf =
                    crlf_line(p, end, max_trailer - trailer_bytes_, error::header_limit, ec);
                if (!lf) return used();
                const std::string_view line(p, static_cast<std::size_t>(lf - 1 - p));
                if (!line.empty()) {
                    // A field, or the continuation of the one before (obs-fold: a line
                    // that begins with whitespace).
                    const bool folded = trailer_bytes_ > 0 && (line[0] == ' ' || line[0] == '\t');
                    const auto colon = line.find(':');
                    if ((!folded && (colon == 0 || colon == std::string_view::npos)) ||
                        std::any_of(line.begin(), line.end(), is_ctl)) {
                        ec = error::bad_field;
                        return used();
                    }
                }
                trailer_bytes_ += static_cast<std::size_t>(lf + 1 - p);
                p = lf + 1;
                if (line.empty()) chunk_ = chunk_state::done;
                break;
            }
            case chunk_state::done:
                break;
        }
    }
    return used();
}

}  // namespace tollgate::upstream
