#pragma once
// RESP2, the Redis wire protocol: commands out, replies in. Sans-io.
//
// Commands are arrays of bulk strings (binary-safe). Replies are parsed incrementally:
// feed() takes whatever bytes arrived and yields each complete reply; a reply split
// across reads is resumed on the next feed. Limits keep a hostile or broken peer from
// making us allocate without bound: a bulk string over 512 MiB (Redis's own maximum) or
// an array nested deeper than 8 levels is a protocol error.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tollgate::state {

struct resp_value {
    enum class kind { simple, error, integer, bulk, nil, array };
    kind type = kind::nil;
    std::string str;  // simple, error, bulk
    std::int64_t integer = 0;
    std::vector<resp_value> elements;  // array

    bool is_error() const noexcept { return type == kind::error; }
    // Integer replies, and bulk/simple strings holding a decimal integer (Lua returns
    // numbers as integers, but a script may return strings).
    std::optional<std::int64_t> as_int() const noexcept;
};

// Appends one command (*N\r\n$len\r\narg\r\n...) to `out`.
void append_command(std::string& out, const std::vector<std::string>& args);
// The same in parts: the array's header (*N\r\n), then each of its N bulk strings.
void append_array_header(std::string& out, std::size_t n);
void append_bulk(std::string& out, std::string_view arg);

class resp_parser {
  public:
    enum class status { more, ready, error };

    // Consumes bytes from `in` (advancing it) until one whole reply is ready (`ready`,
    // take it with take()), the input is used up (`more`), or the stream is not RESP
    // (`error`: the connection must be dropped).
    status feed(std::string_view& in);
    resp_value take();

  private:
    struct frame {
        resp_value value;
        std::int64_t remaining = 0;  // array elements still to come
    };
    status finish(resp_value v);

    std::string line_;             // a header line being gathered
    std::int64_t bulk_left_ = -1;  // >= 0: reading a bulk body (+CRLF) of this many bytes
    resp_value bulk_;
    std::vector<frame> stack_;
    std::optional<resp_value> ready_;
};

}  // namespace tollgate::state
