#include "gateway/upstream/response_parser.hpp"

#include <boost/beast/http/field.hpp>

#include <algorithm>

namespace tollgate::upstream {

void response_parser::on_field_impl(boost::beast::http::field name, string_view, string_view value,
                                    error_code&) {
    using boost::beast::http::field;
    if (name == field::content_type) {
        content_type_.assign(value.data(), std::min<std::size_t>(value.size(), 200));
        std::string lower = content_type_;
        std::transform(lower.begin(), lower.end(), lower.begin(), ::tolower);
        event_stream_ = lower.find("text/event-stream") != std::string::npos;
    } else if (name == field::retry_after) {
        retry_after_.assign(value.data(), std::min<std::size_t>(value.size(), 64));
    }
}

}  // namespace tollgate::upstream
