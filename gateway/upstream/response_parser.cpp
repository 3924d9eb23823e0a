#include "gateway/upstream/response_parser.hpp"

#include <boost/beast/core/string.hpp>
#include <boost/beast/http/field.hpp>

#include <algorithm>
#include <string_view>

namespace tollgate::upstream {

void response_parser::on_field_impl(boost::beast::http::field name, string_view, string_view value,
                                    error_code&) {
    using boost::beast::http::field;
    if (name == field::content_type) {
        content_type_.assign(value.data(), std::min<std::size_t>(value.size(), 200));
        // "text/event-stream" anywhere in it, in any case (no lower-cased copy).
        static constexpr std::string_view sse = "text/event-stream";
        const std::string_view v = content_type_;
        event_stream_ = false;
        for (std::size_t i = 0; !event_stream_ && i + sse.size() <= v.size(); ++i)
            event_stream_ = boost::beast::iequals(v.substr(i, sse.size()), sse);
    } else if (name == field::retry_after) {
        retry_after_.assign(value.data(), std::min<std::size_t>(value.size(), 64));
    }
}

}  // namespace tollgate::upstream
