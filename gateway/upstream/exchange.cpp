#include "gateway/upstream/exchange.hpp"

#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>

#include <algorithm>
#include <tuple>

#include "gateway/core/coarse_clock.hpp"

namespace tollgate::upstream {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using core::attempt_error;
using core::attempt_kind;
using core::attempt_source;

namespace {

// Heads and SSE streams are read in 4 KiB pieces, a stream's growing to 64 KiB while
// reads fill them (a waiting stream holds no buffer); non-streamed bodies in 16 KiB ones.
// A head read that fills its 4 KiB takes what else has arrived at once (up to 28 KiB), so
// that an answer written at once is usually all there with its head (and a stream then
// goes out in one write).
constexpr std::size_t head_read_chunk = 4 * 1024;
// A streamed request's head is read into 512 bytes: what a stream waiting for its first
// token (seconds, for a large model) holds meanwhile. An SSE head is smaller; a bigger one
// fills it and the rest is taken at once, as below.
constexpr std::size_t stream_head_read = 512;
constexpr std::size_t head_read_more = 28 * 1024;  // a head's buffer stays within 32 KiB
constexpr std::size_t stream_read_min = 4 * 1024;
constexpr std::size_t stream_read_max = 64 * 1024;
constexpr std::size_t body_read_chunk = 16 * 1024;
// A stream whose last two reads came less than stream_hot_gap apart keeps its read buffer
// for the next one, for up to stream_hold: each event is then one recv into it, as it
// comes (Asio knows a short read drained the socket, and waits for the next readiness
// without trying again). Other streams, and one that stays quiet that long, hold no buffer
// while they wait (a 1-byte read, then the rest: three recvs an event). LLM streams send a
// token every 10-50 ms while they generate; 10,000 streams waiting seconds between events
// hold nothing. The hold is longer than the gap so that the read timer, which a hot stream
// pushes forward with every event, fires (and is armed again) once every 50 ms at most.
constexpr auto stream_hot_gap = std::chrono::milliseconds(25);
constexpr auto stream_hold = std::chrono::milliseconds(50);
constexpr std::size_t head_limit = 64 * 1024;

}  // namespace

bool is_timeout(const boost::system::error_code& ec) noexcept {
    return ec == beast::error::timeout || ec == asio::error::timed_out;
}

asio::awaitable<attempt_error> exchange::open(pool& p, std::span<const asio::const_buffer> request,
                                              core::request_context& ctx) {
    bool fresh = false;
    for (;;) {
        // An idle connection at once (the usual case), else acquire()'s wait or connect.
        lease conn = fresh ? lease{} : p.take_idle_now();
        if (!conn) {
            auto [aerr, opened] = co_await p.acquire(fresh);
            if (watch_.gone) co_return attempt_error::gone();
            if (!aerr.ok()) co_return aerr;
            conn = std::move(opened);
        } else if (watch_.gone) {
            co_return attempt_error::gone();
        }
        conn_ = std::move(conn);
        ctx.forwarded = true;
        watch_.upstream = &conn_.stream();
        parser_.emplace();
        buf_.clear();
        streamed_ = ctx.req.stream;
        parser_->body_limit(pc_.max_response_bytes);
        sent_at_ = core::clock::now();
        std::size_t sent = 0;
        auto ec = conn_.stream().write_now(request, sent);
        if (!ec && sent < asio::buffer_size(request))
            ec = co_await conn_.stream().write_rest(request, sent, pc_.idle_timeout);
        if (!ec) ctx.meter.mark_sent();
        std::size_t bytes_in = 0;
        if (!ec) ec = co_await read_head(bytes_in);
        if (watch_.gone && (!drain_ || ec)) {
            watch_.upstream = nullptr;
            co_return attempt_error::gone();
        }
        if (!ec) {
            head_at_ = core::clock::now();
            co_return attempt_error{};
        }
        watch_.upstream = nullptr;
        // A kept-alive connection the upstream had closed: try once on a new one.
        if (conn_.reused() && bytes_in == 0 && !is_timeout(ec) && !fresh) {
            conn_.release(false);
            fresh = true;
            continue;
        }
        co_return head_failure(ec);
    }
}

attempt_error exchange::head_failure(const error_code& ec) const {
    if (is_timeout(ec))
        return attempt_error::fail(
            attempt_source::head, attempt_kind::timeout,
            "provider " + pc_.name + ": no answer within first_byte_timeout");
    return attempt_error::fail(
        attempt_source::head, attempt_kind::io,
        "provider " + pc_.name + ": connection failed (" + ec.message() + ")");
}

// Reads and parses until the head is complete, within first_byte_timeout.
asio::awaitable<boost::system::error_code> exchange::read_head(std::size_t& bytes_in) {
    const auto deadline = core::coarse_now() + pc_.first_byte_timeout;
    error_code ec;
    parser_->header_limit(head_limit);
    parser_->eager(true);
    for (;;) {
        if (buf_.size() > 0) {
            const auto used = parser_->put_all(buf_.data(), ec);
            buf_.consume(used);
            if (parser_->is_header_done()) co_return error_code{};
            if (ec && ec != http::error::need_more) co_return ec;
        }
        const auto left = deadline - core::coarse_now();
        if (left <= core::clock::duration::zero()) co_return beast::error::timeout;
        const std::size_t room = streamed_ ? stream_head_read : head_read_chunk;
        auto [rec, n] = co_await conn_.stream().read_some(buf_.prepare(room), left);
        if (rec) co_return rec;
        bytes_in += n;
        buf_.commit(n);
        // A head that came with more than its read could take: the answer is arriving as
        // fast as it can be read (a burst), so a stream's first read takes all it can.
        stream_read_ = n == room ? stream_read_max : stream_read_min;
        if (n == room) {
            // What else has arrived, without waiting (plain TCP; an error or the end is
            // met again by the next read).
            error_code more;
            const auto m = conn_.stream().read_ready(buf_.prepare(head_read_more), more);
            buf_.commit(m);
            bytes_in += m;
        }
    }
}

namespace {

// A body piece from what `buf` already holds, into the parser (parser.body() gets the
// de-chunked bytes). True when that is the piece (body bytes, the end) or an error, in
// `ec`; false when a read is needed.
bool piece_from_buffer(response_parser& parser, beast::flat_buffer& buf,
                       boost::system::error_code& ec) {
    ec = {};
    if (buf.size() == 0) return false;
    const auto used = parser.put_all(buf.data(), ec);
    buf.consume(used);
    if (ec != http::error::need_more && ec) return true;
    ec = {};
    return !parser.body().empty() || parser.is_done();
}

// Where a body read goes: an idle stream (its buffer given back between events) waits for
// its next event with a 1-byte read into `first`, then takes what has arrived into a
// buffer (after_body_read), so that a stream waiting for its upstream holds no read buffer.
bool idle_read(const net::byte_stream& s, const beast::flat_buffer& buf) {
    return buf.capacity() <= exchange::idle_buffer && !s.is_tls();
}

// After a body read of `n` bytes (or `rec`): into the parser. A close-delimited body's end
// is success. `got`: the bytes this read brought.
boost::system::error_code after_body_read(net::byte_stream& s, response_parser& parser,
                                          beast::flat_buffer& buf, std::size_t chunk, bool idle,
                                          char first, boost::system::error_code rec, std::size_t n,
                                          std::size_t& got) {
    boost::system::error_code ec;
    got = 0;
    if (idle && !rec && n == 1) {
        const auto b = buf.prepare(chunk);
        static_cast<char*>(b.data())[0] = first;
        boost::system::error_code more_ec;  // met again by the next read, if any
        n += s.read_ready(asio::mutable_buffer(static_cast<char*>(b.data()) + 1, b.size() - 1),
                          more_ec);
    }
    if (rec == asio::error::eof || (rec == asio::ssl::error::stream_truncated)) {
        if (parser.need_eof()) {
            parser.put_eof(ec);
            return ec;
        }
        return http::error::partial_message;
    }
    if (rec) return rec;
    got = n;
    buf.commit(n);
    const auto used = parser.put_all(buf.data(), ec);
    buf.consume(used);
    if (ec == http::error::need_more) ec = {};
    return ec;
}

// One piece of a body: from the buffer, else one read (read_piece does the same inline,
// without this coroutine).
asio::awaitable<boost::system::error_code> read_body_piece(net::byte_stream& s,
                                                           response_parser& parser,
                                                           beast::flat_buffer& buf,
                                                           core::clock::duration timeout,
                                                           std::size_t chunk, std::size_t& got) {
    boost::system::error_code ec;
    got = 0;
    if (piece_from_buffer(parser, buf, ec)) co_return ec;
    const bool idle = idle_read(s, buf);
    char first = 0;
    // The target is chosen before the co_await: in a conditional inside its operand, GCC 12
    // evaluates both arms (prepare() would give every idle stream its buffer back).
    asio::mutable_buffer target(&first, 1);
    if (!idle) target = buf.prepare(chunk);
    auto [rec, n] = co_await s.read_some(target, timeout);
    co_return after_body_read(s, parser, buf, chunk, idle, first, rec, n, got);
}

}  // namespace

asio::awaitable<boost::system::error_code> exchange::read_piece(core::clock::duration timeout) {
    auto& s = conn_.stream();
    error_code ec;
    // What the last read brought beyond the last piece first.
    if (piece_from_buffer(*parser_, buf_, ec)) co_return ec;
    // One recv an event (plain TCP): a hot stream holds its read for stream_hold, so that
    // a short read drained the socket. Not for a body that ends at the close, whose end
    // must be seen at once. TLS: a stream that times out is closed (Beast), so there is no
    // holding read; its buffers go back after every event (release_between_events).
    bool hold = !s.is_tls() && hot_ && buf_.capacity() > idle_buffer && timeout > stream_hold &&
                !parser_->need_eof();
    for (;;) {
        // A stream that went quiet waits without a buffer (others gave theirs back after
        // their last event).
        if (!hold && !s.is_tls() && buf_.capacity() > idle_buffer && buf_.size() <= idle_buffer)
            shrink_buffer();
        const bool idle = idle_read(s, buf_);
        char first = 0;
        // Chosen before the co_await (see read_body_piece).
        asio::mutable_buffer target(&first, 1);
        if (!idle) target = buf_.prepare(stream_read_);
        const auto wait = hold ? stream_hold : timeout;
        auto [rec, n] = co_await s.read_some(target, wait, /*short_read_drains=*/hold);
        std::size_t got = 0;
        ec = after_body_read(s, *parser_, buf_, stream_read_, idle, first, rec, n, got);
        if (hold && is_timeout(ec)) {
            // A client that left during the hold: the watch's cancel may have ended this
            // read as the hold's timeout. The relay looks at watch.gone again (and stops,
            // or drains).
            if (watch_.gone) co_return error_code{};
            // Nothing for stream_hold: the stream idles. No bytes were taken (the read was
            // cancelled before it ran); what it waited for is waited for again, after one
            // look without waiting (byte_stream::read_some) for a FIN that came with the
            // last bytes.
            timeout -= stream_hold;
            hold = false;
            continue;
        }
        note_read(got);
        co_return ec;
    }
}

void exchange::note_read(std::size_t got) noexcept {
    if (got == stream_read_)
        stream_read_ = std::min(stream_read_ * 2, stream_read_max);
    else if (got > 0 && got < stream_read_ / 4)
        stream_read_ = std::max(stream_read_ / 2, stream_read_min);
    if (got == 0) return;
    const auto now = core::coarse_now();
    hot_ = now - last_data_at_ < stream_hot_gap;
    last_data_at_ = now;
}

void exchange::release_between_events() {
    // A hot stream on plain TCP keeps its buffers for its next event (read_piece).
    if ((conn_.stream().is_tls() || !hot_) && buf_.size() <= idle_buffer) shrink_buffer();
}

std::optional<attempt_error> exchange::read_body_now(std::string& body) {
    if (!parser_->is_done()) return std::nullopt;
    // read_body() with nothing left to read.
    body += parser_->body();
    parser_->body().clear();
    watch_.upstream = nullptr;
    if (watch_.gone) return attempt_error::gone();
    return attempt_error{};
}

asio::awaitable<attempt_error> exchange::read_body(std::string& body,
                                                   core::clock::duration drain_limit) {
    body += parser_->body();
    parser_->body().clear();
    error_code ec;
    std::optional<core::clock::time_point> drain_deadline;
    while (!parser_->is_done()) {
        auto timeout = std::chrono::duration_cast<core::clock::duration>(pc_.idle_timeout);
        if (watch_.gone) {
            if (!drain_) break;
            if (!drain_deadline) drain_deadline = core::coarse_now() + drain_limit;
            const auto left = *drain_deadline - core::coarse_now();
            if (left <= core::clock::duration::zero()) break;
            timeout = std::min(timeout, left);
        }
        std::size_t got = 0;
        ec =
            co_await read_body_piece(conn_.stream(), *parser_, buf_, timeout, body_read_chunk, got);
        body += parser_->body();
        parser_->body().clear();
        if (ec) break;
    }
    watch_.upstream = nullptr;
    if (watch_.gone) co_return attempt_error::gone();
    if (!ec) co_return attempt_error{};
    if (is_timeout(ec))
        co_return attempt_error::fail(attempt_source::body, attempt_kind::timeout,
                                      "provider " + pc_.name + ": answer stalled");
    if (ec == http::error::body_limit)
        co_return attempt_error::fail(
            attempt_source::body, attempt_kind::too_large,
            "provider " + pc_.name + ": answer larger than max_response_bytes");
    co_return attempt_error::fail(
        attempt_source::body, attempt_kind::io,
        "provider " + pc_.name + ": answer cut short (" + ec.message() + ")");
}

void exchange::finish(bool complete) noexcept {
    watch_.upstream = nullptr;
    // Bytes past the end of the answer: the connection is out of step (a broken
    // Content-Length); reusing it could hand them to another client as its answer.
    conn_.release(complete && parser_ && parser_->keep_alive() && buf_.size() == 0);
}

}  // namespace tollgate::upstream
