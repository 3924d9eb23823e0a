#pragma once
// Splits a Server-Sent Events byte stream into complete events (sans-io).
//
// Bytes arrive in arbitrary pieces: an event, a line, or a "\r\n" may be split across
// reads. Complete events that lie wholly inside one piece are handed out as views into
// that piece (no copy); only an incomplete tail is kept. Lines end in "\n", "\r\n" or
// "\r"; a lone '\r' at the end of a piece waits for the next byte. Not thread-safe.

#include <cstddef>
#include <cstring>
#include <string>
#include <string_view>

#include "gateway/core/byte_scan.hpp"
#include "gateway/core/policy.hpp"

namespace tollgate::core {

class sse_framer {
  public:
    explicit sse_framer(std::size_t max_event_bytes) : max_event_bytes_(max_event_bytes) {}

    // Feeds one piece; calls on_event(const sse_event&) for every event completed by it.
    // Returns false if an event grew past max_event_bytes (the stream is then unusable).
    template <class F>
    bool feed(std::string_view piece, F&& on_event) {
        if (pending_.empty()) {
            const std::size_t used = scan(piece, on_event);
            pending_.assign(piece.substr(used));
        } else {
            pending_.append(piece);
            const std::size_t used = scan(pending_, on_event);
            pending_.erase(0, used);
        }
        return pending_.size() <= max_event_bytes_;
    }

    // End of stream: an event left without its blank line is dispatched if it has data.
    template <class F>
    void finish(F&& on_event) {
        if (pending_.empty()) return;
        std::string tail = std::move(pending_);
        pending_.clear();
        tail += "\n\n";
        scan(tail, [&](const sse_event& e) {
            if (e.has_data) on_event(e);
        });
    }

    std::size_t pending_bytes() const noexcept { return pending_.size(); }

  private:
    // Dispatches complete events in `buf`; returns the number of bytes consumed.
    template <class F>
    std::size_t scan(std::string_view buf, F&& on_event) {
        std::size_t event_start = 0, pos = 0;
        reset_event();
        // Lines almost always end in "\n" alone: without a '\r' in the buffer, memchr
        // (libc's, 32 bytes or more a step) finds them.
        const bool any_cr = std::memchr(buf.data(), '\r', buf.size()) != nullptr;
        const char* const end = buf.data() + buf.size();
        while (pos < buf.size()) {
            // Find the end of the line starting at pos.
            // (The blank line after each event is found without a search.)
            const char* at = buf[pos] == '\n' ? buf.data() + pos
                             : any_cr ? bytes::find_either(buf.data() + pos, end, '\n', '\r')
                                      : static_cast<const char*>(
                                            std::memchr(buf.data() + pos, '\n', buf.size() - pos));
            if (!at) at = end;
            const std::size_t eol = static_cast<std::size_t>(at - buf.data());
            if (eol == buf.size()) break;  // incomplete line
            std::size_t next = eol + 1;
            if (buf[eol] == '\r') {
                if (next == buf.size()) break;  // "\r" at the end: maybe "\r\n"
                if (buf[next] == '\n') ++next;
            }
            const std::string_view line = buf.substr(pos, eol - pos);
            pos = next;
            if (line.empty()) {
                if (event_has_fields_) {
                    sse_event ev;
                    ev.raw = buf.substr(event_start, pos - event_start);
                    ev.event = event_name_;
                    ev.has_data = has_data_;
                    ev.data = multi_line_ ? std::string_view(joined_) : data_;
                    on_event(ev);
                }
                event_start = pos;
                reset_event();
                continue;
            }
            field(line);
        }
        return event_start;
    }

    void reset_event() {
        event_has_fields_ = false;
        has_data_ = false;
        multi_line_ = false;
        event_name_ = {};
        data_ = {};
    }

    void field(std::string_view line) {
        event_has_fields_ = true;
        if (line[0] == ':') return;  // comment
        std::string_view name, value;
        if (line.starts_with("data:")) {  // most lines: no search for the colon
            name = line.substr(0, 4);
            value = line.substr(5);
        } else {
            const auto colon = line.find(':');
            name = line.substr(0, colon);
            if (colon != std::string_view::npos) value = line.substr(colon + 1);
        }
        if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
        if (name == "data") {
            if (!has_data_) {
                data_ = value;
                has_data_ = true;
            } else {
                if (!multi_line_) {
                    joined_.assign(data_);
                    multi_line_ = true;
                }
                joined_ += '\n';
                joined_.append(value);
            }
        } else if (name == "event") {
            event_name_ = value;
        }
    }

    std::size_t max_event_bytes_;
    std::string pending_;
    std::string joined_;  // multi-line data
    std::string_view event_name_, data_;
    bool event_has_fields_ = false, has_data_ = false, multi_line_ = false;
};

}  // namespace tollgate::core
